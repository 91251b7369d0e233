// SPDX-License-Identifier: Apache-2.0
// otp/receive.cpp - what a receive (receive.hpp) asks of the runtime:
// suspend waiting (with its timeout armed), match, time out, clean up.
#include "otp/receive.hpp"

#include "otp/scheduler.hpp"

namespace otp::detail {

std::coroutine_handle<> receive_prepare_suspend(process& p, receive_waiter* w, std::coroutine_handle<> h,
                                                timer_node* timer,
                                                std::optional<std::chrono::steady_clock::duration> timeout) {
  p.resume = h;
  p.waiter = w;
  p.state = proc_state::waiting;
  scheduler* s = p.home();
  if (timeout && *timeout > std::chrono::steady_clock::duration::zero())
    s->add_timer_after(timer, *timeout);
  if (p.has_pending_signals())
    s->make_ready(&p);
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
