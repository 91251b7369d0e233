// SPDX-License-Identifier: Apache-2.0
// otp/timers.cpp - send_after timers: start, fire, cancel (cancel_timer),
// and the scheduler's bookkeeping of them (forget_send_timer, and
// cancel_send_timers when their target exits). The heap itself is the
// scheduler's (scheduler.cpp).
#include "otp/detail/runtime.hpp"
#include "otp/process.hpp"
#include "otp/scheduler.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <system_error>
#include <utility>

namespace otp {

using detail::item;
using detail::proc_state;
using detail::process;

namespace detail {

namespace {

void fire_send_timer(timer_node* node, scheduler& s) noexcept {
  auto* t = static_cast<send_timer*>(node);
  s.forget_send_timer(t);
  item* m = std::exchange(t->msg, nullptr);
  const pid to = t->target;
  delete t;
  deliver(to, m);
}

bool cancel_here(scheduler& s, std::uint64_t ref) noexcept {
  auto found = s.send_timers().find(ref);
  if (found == s.send_timers().end())
    return false;
  send_timer* t = found->second;
  s.forget_send_timer(t);
  destroy_item(t->msg);
  delete t;
  return true;
}

} // namespace

timer_ref start_send_timer(std::chrono::steady_clock::duration d, const pid& to, message* m) {
  scheduler* s = this_thread.sched;
  if (s == nullptr) {
    destroy_item(m);
    throw std::system_error(make_error_code(errc::not_in_process),
                            "send_after must be called from a process (or a scheduler thread)");
  }
  auto* t = new send_timer;
  t->deadline = s->deadline_after(d);
  t->fire = &fire_send_timer;
  t->target = to;
  t->msg = m;
  t->ref = make_ref(s->owner());
  process* tp = to.control_block();
  if (tp != nullptr && is_local(tp, to) && tp->id.load(std::memory_order_relaxed) == to.id()
      && tp->state < proc_state::exiting) {
    // Cancelled with its target, like Erlang's timers to a local pid.
    auto& x = tp->ext();
    t->owner = tp;
    t->next = x.timers;
    if (x.timers != nullptr)
      x.timers->prev = t;
    x.timers = t;
  }
  s->send_timers().emplace(t->ref, t);
  s->add_timer(t);
  if (process* me = this_thread.current) {
    // Keeps the starter here while the timer is pending: its cancel_timer
    // then finds the timer on its own scheduler, synchronously.
    try {
      ++me->ext().timers_started;
      t->starter = me->self();
    } catch (...) {
      // No memory for the extras: the timer still runs, unaccounted.
    }
  }
  return timer_ref{t->ref};
}

} // namespace detail

bool cancel_timer(timer_ref ref) {
  scheduler* s = detail::this_thread.sched;
  const auto owner = static_cast<unsigned>(ref.value() >> 56);
  if (owner == 0 || s == nullptr)
    return false;
  if (owner - 1 == s->index())
    return detail::cancel_here(*s, ref.value());
  if (owner - 1 < s->owner().scheduler_count()) {
    scheduler& other = s->owner().get_scheduler(owner - 1);
    asio::post(other.context(), [&other, v = ref.value()] { detail::cancel_here(other, v); });
  }
  return false;
}

void scheduler::forget_send_timer(detail::send_timer* t) noexcept {
  send_timers_.erase(t->ref);
  cancel_timer(t);
  if (process* o = std::exchange(t->owner, nullptr)) {
    if (t->prev != nullptr)
      t->prev->next = t->next;
    else if (o->extras != nullptr)
      o->extras->timers = t->next;
    if (t->next != nullptr)
      t->next->prev = t->prev;
  }
  // The starter cannot have moved while this was pending: if it is alive,
  // it is ours.
  if (process* s = t->starter.control_block();
      s != nullptr && s->id.load(std::memory_order_relaxed) == t->starter.id() && s->home() == this
      && s->state < proc_state::exiting && s->extras != nullptr && s->extras->timers_started > 0)
    --s->extras->timers_started;
}

void scheduler::cancel_send_timers(detail::process_extras& x) noexcept {
  while (auto* t = x.timers) {
    x.timers = t->next; // the process's extras are already detached
    t->prev = nullptr;
    forget_send_timer(t);
    detail::destroy_item(t->msg);
    delete t;
  }
}

} // namespace otp
