// SPDX-License-Identifier: Apache-2.0
// otp/spawn.cpp - spawn_frame: a new process's control block, its pid, its
// link or monitor to the parent, and the scheduler it starts on.
#include "otp/detail/runtime.hpp"
#include "otp/process.hpp"
#include "otp/scheduler.hpp"

#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace otp::detail {

spawn_result spawn_frame(node* n, const spawn_options& o, std::coroutine_handle<> top,
                         std::shared_ptr<std::promise<exit_reason>> watcher) {
  struct frame_guard {
    std::coroutine_handle<> h;
    ~frame_guard() {
      if (h)
        h.destroy();
    }
  } guard{top};
  process* parent = this_thread.current;
  scheduler* cur = this_thread.sched;
  if (cur != nullptr && &cur->owner() != n)
    cur = nullptr;
  if (parent != nullptr && cur == nullptr)
    parent = nullptr; // a process of another node: it cannot link across nodes
  const bool monitor = o.monitor || o.monitor_as.has_value();
  if ((o.link || monitor) && parent == nullptr)
    throw std::system_error(make_error_code(errc::not_in_process),
                            "spawn_opt: link and monitor need a calling process of this node");
  if (o.scheduler && *o.scheduler >= n->scheduler_count())
    throw std::invalid_argument("spawn_opt: scheduler " + std::to_string(*o.scheduler)
                                + " does not exist (the node has " + std::to_string(n->scheduler_count())
                                + ")");
  // From outside the node's schedulers, shutdown waits for this spawn to
  // finish, so the process is torn down with the others, never lost.
  struct foreign_spawn {
    node* n = nullptr;
    ~foreign_spawn() {
      if (n != nullptr)
        n->end_foreign_spawn();
    }
  } in_flight;
  if (cur == nullptr ? !n->begin_foreign_spawn() : n->stopping()) {
    if (watcher)
      watcher->set_value(exit_reason::noproc());
    return {};
  }
  if (cur == nullptr)
    in_flight.n = n;
  // What may throw (out of memory) comes before the block is taken, or is
  // undone with it: a spawn that fails leaves no half-made process, link or
  // monitor behind, and its frame is destroyed (the guard still holds it).
  std::unique_ptr<process_extras> extras;
  monitor_ref mref{};
  if (o.link || monitor || watcher) {
    extras.reset(new process_extras);
    if (o.link)
      extras->links.insert(parent->self(), 0);
    if (monitor) {
      mref = o.monitor_as ? *o.monitor_as : monitor_ref{make_ref(*n)};
      extras->monitored_by.insert(mref, parent->self());
    }
    if (watcher)
      extras->exit_watchers.push_back(std::move(watcher));
  }
  if (o.link || monitor)
    (void)parent->ext();
  process* p = cur != nullptr ? cur->allocate_block() : n->take_block();

  // A plain spawn starts here and moves when load is shed (sending it
  // straight to a hungry scheduler measured worse: docs/design.md), unless
  // more processes are bound here by their I/O than elsewhere, or this
  // scheduler is leaving its core (node::place_spawn; two loads of our own
  // counters when neither).
  scheduler* target = cur;
  if (o.scheduler)
    target = &n->get_scheduler(*o.scheduler);
  else if (cur == nullptr)
    target = &n->pick_scheduler();
  else if (cur->io_load() >= 2 || cur->leaving()) [[unlikely]]
    target = &n->place_spawn(*cur);

  const std::uint64_t id = (std::uint64_t{target->index()} << pid::serial_bits) | target->next_serial();
  p->home_.store(target, std::memory_order_relaxed);
  p->state = proc_state::created;
  // A recycled block carries the last process's flags: start afresh. (Its
  // queues, the mailbox's count with it, extras and waiter were emptied
  // when that process exited.)
  p->trap_exit = false;
  p->bound = o.scheduler.has_value();
  // `placed` and `io_bound` were cleared when the block's last process
  // arrived and exited (scheduler::unplace, remove_live).
  if (target != cur && !o.scheduler && cur != nullptr)
    p->placed = true; // place_spawn counted it there
  p->wake_streak = 0;
  p->woken_by = 0; // closed: no sender writes it now
  p->ready_as = ready_kind::spawned;
  p->in_ready = false;
  p->waiter = nullptr;
  p->id.store(id, std::memory_order_relaxed);
  const pid child = p->self();
  spawn_result r{child, mref};
  if (o.link || monitor) {
    // The parent's half: a map past its inline room allocates.
    try {
      if (o.link)
        parent->extras->links.insert(child, 0);
      if (monitor)
        parent->extras->monitors.insert(mref, child);
    } catch (...) {
      parent->extras->links.erase(child);
      if (p->placed)
        target->unplace(p);
      cur->reclaim(p); // a parent is a process of this node: cur is its scheduler
      throw;
    }
  }
  p->extras = extras.release();
  p->top = p->resume = std::exchange(guard.h, {});
  // Open for remote senders: they read `id` and `home` only after seeing this.
  p->refs.fetch_and(~process::closed_bit, std::memory_order_release);
  if (target == cur) {
    cur->adopt(p);
  } else {
    p->notified.store(true, std::memory_order_relaxed);
    target->remote_enqueue(p);
  }
  return r;
}

} // namespace otp::detail
