// SPDX-License-Identifier: Apache-2.0
// otp/call.hpp - request and reply through a one-shot reply slot (OTP's aliases).
#pragma once

#include "otp/detail/runtime.hpp"
#include "otp/error.hpp"
#include "otp/process.hpp"
#include "otp/receive.hpp"

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <ratio>
#include <string>
#include <type_traits>
#include <utility>

namespace otp {

/// Tag type of otp::infinity.
struct infinity_t {
  explicit constexpr infinity_t() = default;
};
/// No time limit (Erlang's `infinity`).
inline constexpr infinity_t infinity{};

/// A time limit that may be infinite: a duration or otp::infinity.
class timeout {
public:
  /// A duration too long for the clock (hours::max()) is infinity.
  template <class Rep, class Period>
  constexpr timeout(std::chrono::duration<Rep, Period> d) // NOLINT: implicit on purpose
    : d_(saturate(d)) {}
  constexpr timeout(infinity_t) noexcept {} // NOLINT: implicit on purpose

  [[nodiscard]] constexpr bool infinite() const noexcept { return !d_.has_value(); }
  /// Returns the duration, or nothing for infinity.
  [[nodiscard]] constexpr std::optional<std::chrono::steady_clock::duration> duration() const noexcept { return d_; }

private:
  template <class Rep, class Period>
  static constexpr std::optional<std::chrono::steady_clock::duration> saturate(std::chrono::duration<Rep, Period> d) {
    using clock_duration = std::chrono::steady_clock::duration;
    if constexpr (std::ratio_greater_equal_v<Period, clock_duration::period>) {
      // Compared in d's own (coarser) unit, where the clock's limit fits.
      if (d > std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(clock_duration::max()))
        return std::nullopt;
    }
    return std::chrono::duration_cast<clock_duration>(d);
  }

  std::optional<std::chrono::steady_clock::duration> d_;
};

namespace detail {
// The stored type of a reply of type R: void replies travel as an empty struct.
struct void_reply {};
template <class R>
using reply_storage_t = std::conditional_t<std::is_void_v<R>, void_reply, R>;
// The reply of a process that refuses a request it cannot handle (e.g. a
// gen_server given another module's request): the call fails with `why`
// at once, whatever its reply type.
struct call_refusal {
  error why;
};
} // namespace detail

/// Where the reply to one call goes (gen_server's `From`): the caller and
/// the call's tag. Copyable, and usable from any process or thread; a call
/// takes the first reply, and one that comes after it gave up is dropped.
template <class R>
class from {
public:
  from() = default;
  from(const pid& caller, std::uint64_t tag) noexcept : caller_(caller), tag_(tag) {}

  /// Returns the calling process.
  [[nodiscard]] const pid& caller() const noexcept { return caller_; }
  /// Returns the call's tag (its monitor reference).
  [[nodiscard]] std::uint64_t tag() const noexcept { return tag_; }
  explicit operator bool() const noexcept { return tag_ != 0; }
  friend bool operator==(const from&, const from&) = default;

private:
  pid caller_;
  std::uint64_t tag_ = 0;
};

/// Sends `value` as the reply to a call (gen_server:reply/2).
template <class R, class V>
  requires(!std::is_void_v<R> && std::is_constructible_v<R, V &&>)
void reply(const from<R>& to, V&& value) {
  detail::deliver(to.caller(), detail::make_reply<R>(to.tag(), std::forward<V>(value)));
}

/// Answers a call whose reply type is void.
inline void reply(const from<void>& to) {
  detail::deliver(to.caller(), detail::make_reply<detail::void_reply>(to.tag()));
}

namespace detail {

// The part of a call's wait that does not depend on the reply type.
class call_wait : protected receive_waiter, protected receive_timeout {
protected:
  // Waits on the slot armed with `ref` (a monitor on `callee`).
  call_wait(process& p, monitor_ref ref, const pid& callee, const class timeout& t) noexcept;
  // Resumes at once with `e` (the call failed before anything was sent).
  explicit call_wait(error e) noexcept;
  call_wait(const call_wait&) = delete;
  call_wait& operator=(const call_wait&) = delete;
  ~call_wait();

  [[nodiscard]] bool ready() const noexcept;
  // What arrived in this call's slot so far (null: nothing yet).
  [[nodiscard]] message* arrived() const noexcept;
  std::coroutine_handle<> suspend(std::coroutine_handle<> h);
  // Disarms the slot and returns what came: a reply, a down_msg, or null on timeout.
  [[nodiscard]] message_ptr finish() noexcept;
  // The error for a down_msg or a timeout.
  [[nodiscard]] error failure(message* down) const;
  [[nodiscard]] error wrong_reply_type() const;

  std::optional<error> early_;

private:
  static bool try_match_thunk(receive_waiter* self, process& p) noexcept;
  static void fire_thunk(timer_node* t, scheduler& s) noexcept;

  process* proc_ = nullptr;
  monitor_ref ref_;
  pid callee_;
  std::optional<std::chrono::steady_clock::duration> limit_;
  bool armed_ = false;
};

template <class R>
struct call_value {
  using type = result<R>;
};
// A reply that is itself a result is not wrapped again: the call's own
// errors and the server's share one result.
template <class T>
struct call_value<outcome::std_result<T, error>> {
  using type = outcome::std_result<T, error>;
};

// Awaits the reply to a call: result<R> (or R itself when R is a result),
// or an error (timeout, noproc, the callee's exit reason). Constructed by
// the function that sent the request.
template <class R>
class [[nodiscard]] call_awaiter final : call_wait {
public:
  using value_type = typename call_value<R>::type;

  call_awaiter(process& p, monitor_ref ref, const pid& callee, const class timeout& t) noexcept
    : call_wait(p, ref, callee, t) {}
  explicit call_awaiter(error e) noexcept : call_wait(std::move(e)) {}

  [[nodiscard]] bool await_ready() const noexcept { return ready(); }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) { return suspend(h); }
  value_type await_resume() {
    if (early_)
      return std::move(*early_);
    message_ptr m = finish();
    if (m == nullptr || m->kind != item_kind::reply)
      return failure(m.get());
    using stored = reply_storage_t<R>;
    if (m->type == reply_tag_of<call_refusal>())
      return std::move(reply_payload<call_refusal>(m.get()).why);
    if (m->type != reply_tag_of<stored>())
      return wrong_reply_type();
    if constexpr (std::is_void_v<R>)
      return outcome::success();
    else
      return std::move(reply_payload<stored>(m.get()));
  }
};

// Arms the caller's reply slot for replies tagged `ref` (a monitor the
// caller holds already, e.g. from spawn_options::monitor_as).
void arm_call(process& me, monitor_ref ref);
// Monitors `to` and arms the caller's reply slot with the monitor's ref.
[[nodiscard]] monitor_ref begin_call(process& me, const pid& to);
// Disarms the slot and drops the monitor of a call that could not be sent.
void abandon_call(process& me, monitor_ref ref) noexcept;
[[nodiscard]] error call_refused(const pid& me, const pid& to);

// Sends the request `make(from<R>)` builds to `to` and returns the awaiter
// of its reply. A call to self, to nobody or to a dead process fails at once.
template <class R, class MakeRequest>
call_awaiter<R> call_process(const pid& to, const class timeout& t, MakeRequest&& make) {
  process& me = require_process("call");
  const pid mine = me.self();
  if (!to || to == mine)
    return call_awaiter<R>(call_refused(mine, to));
  const monitor_ref ref = begin_call(me, to);
  message* request = nullptr;
  try {
    request = make(from<R>{mine, ref.value()});
  } catch (...) {
    abandon_call(me, ref);
    throw;
  }
  if (!push_item(to, request)) {
    abandon_call(me, ref);
    return call_awaiter<R>(call_refused(mine, to));
  }
  return call_awaiter<R>(me, ref, to, t);
}

} // namespace detail

} // namespace otp
