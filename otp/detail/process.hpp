// SPDX-License-Identifier: Apache-2.0
// otp/detail/process.hpp - a process's control block.
#pragma once

#include "otp/detail/item.hpp"
#include "otp/detail/mailbox.hpp"
#include "otp/detail/small_map.hpp"
#include "otp/pid.hpp"

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace otp::detail {

struct send_timer;
struct timer_node;

enum class proc_state : std::uint8_t {
  created,   // spawned, not yet adopted by its scheduler
  runnable,  // will be resumed when popped from the ready queue
  running,   // on its scheduler's thread right now
  waiting,   // suspended in receive until a message matches (or a timeout)
  suspended, // suspended in an Asio operation or similar; resumed by its completion
  exiting,   // its frame is being destroyed and its links told
  dead,      // closed; the control block waits to be recycled
};

// Why a process is in its scheduler's ready queue, for load shedding.
enum class ready_kind : std::uint8_t {
  other,   // yielded, or its timeout fired: moves if its scheduler has more to run
  spawned, // has not run yet: moves to a hungry scheduler even alone
  stays,   // woken by a message (it talks), or it just moved: not shed
};

// What a suspended receive offers the scheduler: "does anything new match?"
struct receive_waiter {
  bool (*try_match)(receive_waiter* self, process& p) noexcept;
  // Its timeout while one is armed (receive_prepare_suspend), else null:
  // a waiter that moves to another scheduler takes it along.
  timer_node* timer = nullptr;
  // A call's callee: woken from another scheduler, the waiter moves to the
  // callee's (the caller follows the callee, scheduler.cpp).
  const pid* follow = nullptr;
};

// Rarely used state, allocated on first use so idle processes stay small.
struct process_extras {
  // Links by peer: 0 while active; while this side's unlink waits for its
  // ack, the unlink's id (OTP's link protocol: a crossing link/unlink
  // leaves both sides agreeing).
  small_map<pid, std::uint64_t> links;
  small_map<monitor_ref, pid> monitors;     // monitors this process holds
  small_map<monitor_ref, pid> monitored_by; // monitors held on this process
  send_timer* timers = nullptr; // send_after timers aimed at this process (same scheduler)
  // send_after timers this process started that are pending: while any is,
  // the process stays on their scheduler, so that cancel_timer is exact.
  std::uint32_t timers_started = 0;
  std::vector<std::shared_ptr<std::promise<exit_reason>>> exit_watchers; // node::spawn_watch
  std::vector<exit_hook> exit_hooks;                                      // add_exit_hook
  std::exception_ptr crash; // what escaped the top frame
  // One reply slot per outstanding call (OTP's alias): the call's monitor
  // ref, and what arrived for it (null until then; a reply_message, or a
  // down_msg message if the callee exited first). Several calls may be
  // outstanding at once; each takes only its own reply. Here, not in the
  // block: a caller has extras anyway, for the monitor.
  small_map<std::uint64_t, message*, 1> calls;
  // Replies in a row from one other scheduler (follow_callee): a caller
  // follows its callee only after several, so one that calls servers on
  // two schedulers in turn does not move at every call.
  scheduler* replies_from = nullptr;
  std::uint32_t replies_in_a_row = 0;
  // When the periodic balance check last moved it (steady_clock ns): not
  // again for a while, so that a server whose callers follow it is not
  // swapped back and forth with all of them every period.
  std::int64_t balanced_at_ns = 0;

  static void* operator new(std::size_t n) { return pool_allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { pool_deallocate(p, n); }
};

// The control block of one process.
//
// Blocks are type-stable: pooled per scheduler and freed only with the node,
// so a pid's raw pointer is always safe to inspect; `id` says whether the
// block still holds that pid's process. Everything below `owner thread only`
// is touched only on the home scheduler's thread. Other threads reach a
// process only through `refs` (a hold that keeps the block from being
// recycled while they push), `inbox` and `notified`.
struct alignas(64) process {
  static constexpr std::uint64_t closed_bit = std::uint64_t{1} << 63;

  // --- shared with other threads ---
  std::atomic<std::uint64_t> refs{closed_bit}; // remote senders' holds | closed_bit
  std::atomic<item*> inbox{nullptr};           // LIFO stack of remote items
  std::atomic<bool> notified{false};           // on the home's remote-ready stack
  // Owner-thread fields packed into this line's padding: the owner touches
  // the line on every hop anyway (measured: fewer lines per hop is faster).
  bool in_ready = false;
  proc_state state = proc_state::dead;
  bool trap_exit : 1 = false;
  // Stays on its scheduler for life: spawn_opt's scheduler, or it touched
  // its scheduler's io_context (this_scheduler(), an Asio wait).
  bool bound : 1 = false;
  // Remote wake-ups in a row from one scheduler, with no local one between
  // (scheduler::follow_waker), up to wake_streak_max.
  std::uint8_t wake_streak : 4 = 0;
  // Sent by its spawner to another scheduler's count (node::place_spawn),
  // not adopted there yet.
  bool placed : 1 = false;
  // Does its I/O here (this_scheduler(), an Asio wait; bound for life, or
  // an otp::follow object's), and so counted in its scheduler's io_bound
  // until it exits or moves.
  bool io_bound : 1 = false;
  std::uint16_t io_seq : 15 = 0; // bumped per Asio wait; with `id`, rejects stale completions
  // It sent to another scheduler since follow_waker last judged it (set by
  // remote_push, taken by follow_waker): a process woken from another
  // scheduler follows its waker only if it talks back; a chain's member
  // passes the token on here. Not cleared by local sends: they stay cheap.
  bool sent_away : 1 = false;
  // Why it is in the ready queue, for load shedding (scheduler.cpp).
  ready_kind ready_as = ready_kind::other;
  // Written by the remote sender that set `notified`, read by the drain:
  // 1 + the index of that sender's scheduler (0: unknown, or index past
  // 126), and `woken_again` if the remote wake-up before came from it too.
  std::uint8_t woken_by = 0;
  static constexpr std::uint8_t woken_again = 0x80;
  static constexpr unsigned wake_streak_max = 15;
  std::atomic<std::uint64_t> id{0};            // the pid this block holds now
  process* remote_next = nullptr;              // link in the remote-ready stack
  // The scheduler that runs the process now. Written (release) only by the
  // thread that owns the process, when it spawns or hands it over (then
  // `notified` is held, so no sender enqueues it meanwhile); a thread that
  // reads itself here (acquire) owns the process and sees its state.
  std::atomic<scheduler*> home_{nullptr};

  // --- owner thread only ---
  process* ready_next = nullptr;
  std::coroutine_handle<> top;    // outermost frame: destroyed on exit
  std::coroutine_handle<> resume; // innermost suspended frame: resumed next
  // Messages, in arrival order, and their count; `live_index` sits in its
  // tail padding (a mailbox is 24 bytes, 20 of them used).
  [[no_unique_address]] detail::mailbox mailbox;
  std::uint32_t live_index = 0;
  item_list signals;              // local signals, and messages queued behind them
  receive_waiter* waiter = nullptr;
  process_extras* extras = nullptr;


  [[nodiscard]] scheduler* home() const noexcept { return home_.load(std::memory_order_acquire); }
  [[nodiscard]] pid self() const noexcept {
    return pid{const_cast<process*>(this), id.load(std::memory_order_relaxed)};
  }
  [[nodiscard]] process_extras& ext() {
    if (extras == nullptr)
      extras = new process_extras;
    return *extras;
  }
  // Takes a reply into the slot if it answers the active call; drops it
  // otherwise (a late reply, after a timeout). Returns whether it was taken.
  bool offer_reply(item* it) noexcept {
    auto* r = static_cast<reply_message*>(it);
    if (extras != nullptr && !extras->calls.empty()) {
      if (message** slot = extras->calls.find(r->tag); slot != nullptr && *slot == nullptr) {
        *slot = r;
        return true;
      }
    }
    r->destroy();
    return false;
  }
  [[nodiscard]] bool has_pending_signals() const noexcept {
    return !signals.empty() || inbox.load(std::memory_order_relaxed) != nullptr;
  }
};

// The scheduler whose thread this is, and the process it is running.
struct thread_state {
  scheduler* sched = nullptr;
  process* current = nullptr;
};
extern constinit thread_local thread_state this_thread;

[[nodiscard]] inline process* current_process() noexcept { return this_thread.current; }

[[noreturn]] void throw_not_in_process(const char* what);

// Asks p's waiting receive whether a new message matches. Its predicates run
// as p (self() names p), whoever's turn it is: a sender's, or the scheduler's.
[[nodiscard]] inline bool match_waiting(process& p) noexcept {
  process* caller = this_thread.current;
  this_thread.current = &p;
  const bool matched = p.waiter->try_match(p.waiter, p);
  this_thread.current = caller;
  return matched;
}

// The calling process; throws system_error(not_in_process) outside one.
[[nodiscard]] inline process& require_process(const char* what) {
  if (auto* p = this_thread.current) [[likely]]
    return *p;
  throw_not_in_process(what);
}

} // namespace otp::detail

// Two cache lines, the first holding what remote senders touch: a layout that
// does not depend on where the allocator puts a chunk (measured: cross-core
// ping-pong varied 0.4-1.4 us with a 136-byte block).
static_assert(sizeof(otp::detail::process) == 128);
