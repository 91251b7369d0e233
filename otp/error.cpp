// SPDX-License-Identifier: Apache-2.0
#include "otp/error.hpp"

namespace otp {

namespace {

class category final : public std::error_category {
public:
  const char* name() const noexcept override { return "otp"; }
  std::string message(int c) const override {
    switch (static_cast<errc>(c)) {
      case errc::noproc: return "no such process";
      case errc::timeout: return "timeout";
      case errc::already_started: return "already started";
      case errc::calling_self: return "calling self";
      case errc::not_in_process: return "not called from a process";
      case errc::invalid_argument: return "invalid argument";
      case errc::node_stopped: return "node stopped";
      case errc::invalid_child_spec: return "invalid child spec";
      case errc::exited: return "the process exited";
      case errc::ignored: return "start ignored";
      case errc::registry_failed: return "registry failed";
      case errc::not_found: return "not found";
      case errc::running: return "running";
      case errc::bad_request: return "bad request";
    }
    return "unknown otp error";
  }
};

} // namespace

const std::error_category& otp_category() noexcept {
  static const category c;
  return c;
}

std::string error::message() const {
  return context.empty() ? code.message() : code.message() + ": " + context;
}

void outcome_throw_as_system_error_with_payload(const error& e) {
  throw std::system_error(e.code, e.context);
}

} // namespace otp
