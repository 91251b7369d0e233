// SPDX-License-Identifier: Apache-2.0
// otp/receive.cpp - waiting for a message: what a receive (receive.hpp)
// asks of the runtime (suspend with its timeout armed, match, time out,
// clean up), and the call slot (call.hpp): a call's one-shot reply slot,
// its monitor and timeout, and the error a failed call reports. One
// translation unit: a call waits through the receive helpers, inlined.
#include "otp/receive.hpp"

#include "otp/call.hpp"
#include "otp/process.hpp"
#include "otp/scheduler.hpp"

#include <chrono>
#include <string>
#include <utility>

namespace otp::detail {

std::coroutine_handle<> receive_prepare_suspend(process& p, receive_waiter* w, std::coroutine_handle<> h,
                                                timer_node* timer,
                                                std::optional<std::chrono::steady_clock::duration> timeout) {
  p.resume = h;
  p.waiter = w;
  p.state = proc_state::waiting;
  scheduler* s = p.home();
  w->timer = nullptr;
  if (timeout && *timeout > std::chrono::steady_clock::duration::zero()) {
    s->add_timer_after(timer, *timeout);
    w->timer = timer;
  }
  if (p.has_pending_signals()) {
    // A call's reply (or DOWN) pushed from the callee's scheduler before we
    // suspended: the drain that takes the wake-up moves us to the callee
    // (follow_callee), as if it had come a moment later.
    const bool drain_follows = w->follow != nullptr && p.signals.empty()
                               && p.notified.load(std::memory_order_acquire) && s->follow_target(p) != nullptr;
    if (!drain_follows)
      s->make_ready(&p, true); // woken by what came, as by a message; and waiting, so not movable
  }
  return s->handoff();
}

void receive_cleanup(process& p, receive_waiter* w, timer_node* timer) noexcept {
  if (p.waiter == w)
    p.waiter = nullptr;
  if (timer != nullptr)
    p.home()->cancel_timer(timer);
}

bool receive_timeout_fired(process& p, receive_waiter* w, scheduler& s) noexcept {
  if (p.state != proc_state::waiting || p.waiter != w)
    return false;
  p.waiter = nullptr;
  p.state = proc_state::runnable;
  if (!p.in_ready)
    s.make_ready(&p);
  return true;
}

void receive_matched(process& p, timer_node* timer) noexcept {
  p.waiter = nullptr;
  if (timer != nullptr)
    p.home()->cancel_timer(timer);
}

} // namespace otp::detail

// -------------------------------------------------------------- the call slot

namespace otp::detail {

namespace {
// Closes a call's slot, dropping what arrived for it.
void drop_call_slot(process_extras& x, monitor_ref ref) noexcept {
  if (message** slot = x.calls.find(ref.value())) {
    if (*slot != nullptr)
      (*slot)->destroy();
    x.calls.erase(ref.value());
  }
}
} // namespace

call_wait::call_wait(process& p, monitor_ref ref, const pid& callee, const class timeout& t) noexcept
  : receive_waiter{&try_match_thunk}, proc_(&p), ref_(ref), callee_(callee), limit_(t.duration()), armed_(true) {
  this->fire = &fire_thunk;
  this->follow = &callee_;
}

call_wait::call_wait(error e) noexcept : receive_waiter{&try_match_thunk}, early_(std::move(e)) {}

call_wait::~call_wait() {
  if (!armed_)
    return;
  // Never awaited to the end (the process was killed while waiting, or the
  // awaiter was dropped): close the slot so nothing lands there later.
  receive_cleanup(*proc_, this, this);
  process_extras* x = proc_->extras;
  if (x == nullptr)
    return;
  drop_call_slot(*x, ref_);
  if (x->monitors.find(ref_) != nullptr && this_thread.current == proc_)
    (void)otp::demonitor(ref_);
}

message* call_wait::arrived() const noexcept {
  if (proc_->extras == nullptr)
    return nullptr;
  message* const* slot = proc_->extras->calls.find(ref_.value());
  return slot != nullptr ? *slot : nullptr;
}

bool call_wait::ready() const noexcept {
  if (early_)
    return true;
  // Pending signals (a DOWN for this call among them) are the scheduler's to handle first.
  return !proc_->has_pending_signals() && arrived() != nullptr;
}

std::coroutine_handle<> call_wait::suspend(std::coroutine_handle<> h) {
  if (limit_ && *limit_ <= std::chrono::steady_clock::duration::zero()) {
    // A zero timeout still lets what is queued be handled first.
    limit_ = std::chrono::steady_clock::duration{1};
  }
  return receive_prepare_suspend(*proc_, this, h, this, limit_);
}

bool call_wait::try_match_thunk(receive_waiter* self, process&) noexcept {
  auto* w = static_cast<call_wait*>(self);
  if (w->arrived() == nullptr)
    return false;
  receive_matched(*w->proc_, w);
  return true;
}

void call_wait::fire_thunk(timer_node* t, scheduler& s) noexcept {
  auto* w = static_cast<call_wait*>(static_cast<receive_timeout*>(t));
  (void)receive_timeout_fired(*w->proc_, w, s);
}

message_ptr call_wait::finish() noexcept {
  armed_ = false;
  process& p = *proc_;
  receive_cleanup(p, this, this);
  message_ptr m;
  if (process_extras* x = p.extras) {
    if (message** slot = x->calls.find(ref_.value())) {
      m.reset(*slot);
      x->calls.erase(ref_.value());
    }
  }
  // A DOWN for the call ended its monitor; otherwise drop the monitor now
  // (a DOWN already on its way is then discarded on arrival).
  if (m == nullptr || m->kind == item_kind::reply)
    (void)otp::demonitor(ref_);
  return m;
}

error call_wait::failure(message* down) const {
  if (down == nullptr) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit_.value_or(std::chrono::steady_clock::duration{}));
    return error{errc::timeout, "no reply from " + callee_.to_string() + " within " + std::to_string(ms.count()) + " ms"};
  }
  const exit_reason& why = payload<down_msg>(down).reason;
  if (why.which() == exit_reason::kind::noproc)
    return error{errc::noproc, callee_.to_string() + " is not alive", why};
  return error{errc::exited, callee_.to_string() + " exited with " + why.to_string() + " before it replied", why};
}

error call_wait::wrong_reply_type() const {
  return error{errc::invalid_argument, "the reply from " + callee_.to_string() + " is not of the type the call expects"};
}

void arm_call(process& me, monitor_ref ref) { (void)me.ext().calls.insert(ref.value(), nullptr); }

monitor_ref begin_call(process& me, const pid& to) {
  const monitor_ref ref = otp::monitor(to);
  arm_call(me, ref);
  return ref;
}

void abandon_call(process& me, monitor_ref ref) noexcept {
  if (process_extras* x = me.extras)
    drop_call_slot(*x, ref);
  try {
    (void)otp::demonitor(ref, true);
  } catch (...) {
  }
}

error call_refused(const pid& me, const pid& to) {
  if (!to)
    return error{errc::noproc, "call to an empty pid"};
  if (to == me)
    return error{errc::calling_self, me.to_string() + " called itself"};
  return error{errc::noproc, to.to_string() + " is not alive", exit_reason::noproc()};
}

} // namespace otp::detail
