// SPDX-License-Identifier: Apache-2.0
#include "otp/exit_reason.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <ostream>
#include <typeinfo>

namespace otp {

namespace {

std::string demangle(const char* mangled) {
  int status = 0;
  char* out = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string name = (status == 0 && out != nullptr) ? out : mangled;
  std::free(out); // NOLINT(cppcoreguidelines-no-malloc): __cxa_demangle's contract
  return name;
}

} // namespace

exit_reason exit_reason::shutdown(std::string detail) {
  return {kind::shutdown, std::make_shared<const payload>(payload{{}, std::move(detail)})};
}

exit_reason exit_reason::error(std::string term) {
  return {kind::error, std::make_shared<const payload>(payload{{}, std::move(term)})};
}

exit_reason exit_reason::exception(std::string type, std::string what) {
  return {kind::exception,
          std::make_shared<const payload>(payload{std::move(type), std::move(what)})};
}

exit_reason exit_reason::from_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const exit_exception& x) {
    return x.reason();
  } catch (const std::exception& x) {
    return exception(demangle(typeid(x).name()), x.what());
  } catch (...) {
    auto* t = abi::__cxa_current_exception_type();
    return exception(t != nullptr ? demangle(t->name()) : "unknown", "");
  }
}

std::string_view exit_reason::detail() const noexcept {
  return payload_ ? std::string_view{payload_->text} : std::string_view{};
}

std::string_view exit_reason::exception_type() const noexcept {
  return payload_ ? std::string_view{payload_->type} : std::string_view{};
}

std::string exit_reason::to_string() const {
  switch (kind_) {
    case kind::normal: return "normal";
    case kind::shutdown:
      return payload_ ? "{shutdown," + payload_->text + "}" : "shutdown";
    case kind::kill: return "kill";
    case kind::killed: return "killed";
    case kind::noproc: return "noproc";
    case kind::noconnection: return "noconnection";
    case kind::error: return payload_ ? payload_->text : "error";
    case kind::exception:
      return "{exception," + payload_->type + ",\"" + payload_->text + "\"}";
  }
  return "?";
}

bool operator==(const exit_reason& a, const exit_reason& b) noexcept {
  if (a.kind_ != b.kind_)
    return false;
  return a.detail() == b.detail() && a.exception_type() == b.exception_type();
}

std::ostream& operator<<(std::ostream& os, const exit_reason& r) {
  return os << r.to_string();
}

} // namespace otp
