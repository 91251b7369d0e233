// SPDX-License-Identifier: Apache-2.0
// otp/scheduler.cpp - the loop: ready queue, remote wake-ups, load balancing,
// stepping a process, timer heap, zombies and recycling, node shutdown.
// What a signal does when it arrives, and exit_process, are in signals.cpp.
#include "otp/scheduler.hpp"

#include "otp/crash_report.hpp"
#include "otp/detail/runtime.hpp"
#include "otp/node.hpp"
#include "otp/process.hpp"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <limits>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#define OTP_CPU_RELAX() __builtin_ia32_pause()
#else
#define OTP_CPU_RELAX() ((void)0)
#endif

namespace {
// A cycle counter, read without ordering: on a wake-up from the idle spin it
// dates the end of the idle period for about a third of a clock read's cost,
// which is on the path of every cross-core hop (steady_clock there made
// ping_pong_cross_ns 299 -> 331 ns). Where there is no such counter, the
// clock itself (ticks are then nanoseconds).
inline std::uint64_t ticks() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_ia32_rdtsc();
#elif defined(__aarch64__)
  std::uint64_t v;
  asm volatile("mrs %0, cntvct_el0" : "=r"(v));
  return v;
#else
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}
} // namespace

namespace otp {

using detail::item;
using detail::item_kind;
using detail::message;
using detail::proc_state;
using detail::process;

// ---------------------------------------------------------------- timer heap

namespace detail {

void timer_heap::push(timer_node* t) {
  heap_.push_back(t);
  t->heap_index = static_cast<std::uint32_t>(heap_.size() - 1);
  sift_up(heap_.size() - 1);
}

void timer_heap::erase(timer_node* t) noexcept {
  std::size_t i = t->heap_index;
  timer_node* last = heap_.back();
  heap_.pop_back();
  t->heap_index = timer_node::npos;
  if (last == t)
    return;
  place(i, last);
  sift_up(i);
  sift_down(last->heap_index);
}

void timer_heap::sift_up(std::size_t i) noexcept {
  timer_node* t = heap_[i];
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (!(t->deadline < heap_[parent]->deadline))
      break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, t);
}

void timer_heap::sift_down(std::size_t i) noexcept {
  timer_node* t = heap_[i];
  const std::size_t n = heap_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= n)
      break;
    if (child + 1 < n && heap_[child + 1]->deadline < heap_[child]->deadline)
      ++child;
    if (!(heap_[child]->deadline < t->deadline))
      break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, t);
}

struct scheduler_io {
  asio::io_context context{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{asio::make_work_guard(context)};
  asio::steady_timer wake_timer{context};
};

} // namespace detail

// ------------------------------------------------------------ construction

scheduler::scheduler(node& n, unsigned index)
  : node_(n), index_(index), io_(std::make_unique<detail::scheduler_io>()) {}

scheduler::~scheduler() { join(); }

asio::io_context& scheduler::context() noexcept { return io_->context; }

std::chrono::steady_clock::time_point scheduler::now() const noexcept {
  return node_.deterministic() ? node_.now() : std::chrono::steady_clock::now();
}

namespace {
// `t + d`, saturated: a duration too long to add ("forever") gives
// time_point::max(), which never falls due.
std::chrono::steady_clock::time_point saturating_add(std::chrono::steady_clock::time_point t,
                                                     std::chrono::steady_clock::duration d) noexcept {
  if (d > std::chrono::steady_clock::time_point::max() - t)
    return std::chrono::steady_clock::time_point::max();
  return t + d;
}
std::int64_t ns_of(std::chrono::steady_clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
} // namespace

std::chrono::steady_clock::time_point scheduler::deadline_after(std::chrono::steady_clock::duration d) const noexcept {
  // The precise clock: the coarse one lags it by more than its stated
  // resolution on a tickless kernel, which made timeouts fire early.
  return saturating_add(now(), d);
}

process* scheduler::allocate_block() {
  if (free_blocks_ == nullptr) {
    if (spill_blocks_ != nullptr) {
      free_blocks_ = std::exchange(spill_blocks_, nullptr);
      free_count_ = std::exchange(spill_count_, 0);
    } else {
      free_blocks_ = node_.take_block_batch(free_count_);
    }
  }
  process* p = free_blocks_;
  free_blocks_ = p->remote_next;
  p->remote_next = nullptr;
  --free_count_;
  return p;
}

// ------------------------------------------------------------- ready queue

void scheduler::enqueue(process* p, detail::ready_kind why) noexcept {
  // A bound new process never moves: it waits in the queue, as one that stays.
  if (why != detail::ready_kind::spawned || p->bound) {
    make_ready(p, why == detail::ready_kind::stays);
    return;
  }
  ++movable_ready_;
  ++spawned_ready_;
  p->in_ready = true;
  p->ready_as = why;
  p->ready_next = nullptr;
  ++ready_count_;
  // A new process goes on the stack; with no memory for a longer stack, it
  // waits in the queue.
  if (fresh_first_ && (fresh_.size() != fresh_.capacity() || grow_fresh())) {
    fresh_.push_back(p);
    return;
  }
  append_ready(p);
}

// Room for one more on the stack: false when there is no memory for it.
bool scheduler::grow_fresh() noexcept {
  if (fresh_bottom_ != 0) {
    // Sheds took from the bottom: close the gap before growing.
    fresh_.erase(fresh_.begin(), fresh_.begin() + static_cast<std::ptrdiff_t>(fresh_bottom_));
    fresh_bottom_ = 0;
    return true;
  }
  try {
    fresh_.reserve(std::max<std::size_t>(64, 2 * fresh_.capacity()));
  } catch (...) {
    return false;
  }
  return true;
}

// The stack's top, or (`oldest`) its bottom.
process* scheduler::pop_fresh(bool oldest) noexcept {
  process* p = nullptr;
  if (oldest) {
    p = fresh_[fresh_bottom_++];
  } else {
    p = fresh_.back();
    fresh_.pop_back();
  }
  settle_fresh();
  uncount_ready(*p);
  return p;
}

// Where the next pick comes from: the one rule that pop_ready_slow and
// handoff_slow follow (handoff_slow peeks, then takes what it saw).
// spawned_ready_ first: it is on the hop's cache line, and a process woken
// by a message takes no look at the stack. When the queue's turn finds it
// empty, the oldest new process goes instead, so that a chain of spawns
// cannot keep one waiting for ever.
scheduler::ready_source scheduler::next_source() const noexcept {
  if (spawned_ready_ != 0 && fresh_count() != 0) {
    if (fresh_next())
      return ready_source::newest;
    if (ready_head_ == nullptr)
      return ready_source::oldest;
  }
  return ready_source::queue;
}

// What take_ready(from) takes (without a seed).
process* scheduler::peek_ready(ready_source from) const noexcept {
  switch (from) {
    case ready_source::newest: return fresh_.back();
    case ready_source::oldest: return fresh_[fresh_bottom_];
    case ready_source::queue: break;
  }
  return ready_head_;
}

process* scheduler::take_ready(ready_source from) noexcept {
  switch (from) {
    case ready_source::newest:
      ++picks_since_queue_;
      return pop_fresh(false);
    case ready_source::oldest:
      picks_since_queue_ = 0;
      return pop_fresh(true);
    case ready_source::queue:
      // The queue's turn while new processes wait. (Its picks while the
      // stack is empty do not reset the count: on a hop's path; a turn
      // that comes early is harmless.)
      if (fresh_count() != 0)
        picks_since_queue_ = 0;
      break;
  }
  if (ready_head_ == nullptr)
    return nullptr;
  process* prev = nullptr;
  process* p = ready_head_;
  if (rng_ && ready_count_ > 1) {
    // Deterministic mode with a seed: a reproducible shuffle of ready order.
    auto k = (*rng_)() % ready_count_;
    for (; k > 0; --k) {
      prev = p;
      p = p->ready_next;
    }
  }
  unlink_ready(p, prev);
  return p;
}

void scheduler::remote_enqueue_chain(process* first, process* last) noexcept {
  process* head = remote_ready_.load(std::memory_order_relaxed);
  do {
    last->remote_next = head;
  } while (!remote_ready_.compare_exchange_weak(head, first, std::memory_order_seq_cst,
                                                std::memory_order_relaxed));
  // Pairs with sleep_until_work(): either it sees our push, or we see it asleep.
  if (sleeping_.load(std::memory_order_seq_cst) && sleeping_.exchange(false, std::memory_order_seq_cst))
    asio::post(io_->context, [] {});
}

bool scheduler::drain_remote() noexcept {
  process* list = remote_ready_.exchange(nullptr, std::memory_order_acquire);
  if (list == nullptr)
    return false;
  process* fifo = nullptr;
  while (list != nullptr) {
    process* next = list->remote_next;
    list->remote_next = fifo;
    fifo = list;
    list = next;
  }
  while (fifo != nullptr) {
    process* p = fifo;
    fifo = p->remote_next;
    p->remote_next = nullptr;
    if (scheduler* home = p->home(); home != this) {
      // A sender read p's old home before it moved. We hold `notified`, so
      // p cannot move again meanwhile: pass the wake-up on to its home.
      home->remote_enqueue(p);
      continue;
    }
    if (p->state == proc_state::waiting && !p->in_ready && p->waiter != nullptr
        && (leave_with(p) || compact_woken(p) || (p->waiter->follow != nullptr ? follow_callee(p) : follow_waker(p))))
      continue;
    // Cleared before the inbox is drained (in step): a push after the drain
    // sees notified == false and enqueues the process again.
    p->notified.store(false, std::memory_order_seq_cst);
    if (p->state == proc_state::created) {
      if (p->placed)
        unplace(p);
      adopt(p);
    } else if (p->state < proc_state::exiting && !p->in_ready && p->state != proc_state::running)
      make_ready(p, true); // woken by a message: it talks, leave it here (measured: docs/design.md)
  }
  return true;
}

void scheduler::adopt(process* p) {
  add_live(p);
  if (p->waiter != nullptr) {
    // A caller that followed its callee (follow_callee): it still waits,
    // with its timeout, and was woken (a runnable process has no waiter).
    p->state = proc_state::waiting;
    if (detail::timer_node* t = p->waiter->timer; t != nullptr && t->heap_index == detail::timer_node::moving)
      timers_.push(t);
    enqueue(p, detail::ready_kind::stays);
    return;
  }
  p->state = proc_state::runnable;
  // A process that just moved runs here before it moves again.
  enqueue(p, p->ready_as == detail::ready_kind::stays ? detail::ready_kind::stays : detail::ready_kind::spawned);
}

void scheduler::remove_live(process* p) noexcept {
  if (p->io_bound) { // it exits, or moves (an otp::follow object's, counted again at its next wait)
    p->io_bound = false;
    io_load_.fetch_sub(1, std::memory_order_relaxed);
  }
  process* last = live_.back();
  live_[p->live_index] = last;
  last->live_index = p->live_index;
  live_.pop_back();
  live_len_.store(live_.size(), std::memory_order_relaxed);
}

// ---------------------------------------------------------- load balancing
//
// An idle scheduler says it is hungry; a busy one, between two steps,
// claims that hunger and hands over half of its movable ready processes in
// one push. The victim moves them itself, so everything a process keeps
// "owner thread only" changes hands through one release/acquire pair (the
// hungry scheduler's remote-ready stack) and never needs a lock.

bool scheduler::take_hunger() noexcept {
  if (!hungry_.exchange(false, std::memory_order_acq_rel))
    return false;
  node_.count_hungry(-1);
  return true;
}

void scheduler::advertise_hunger() noexcept {
  if (!hungry_.exchange(true, std::memory_order_acq_rel))
    node_.count_hungry(1);
}

void scheduler::retract_hunger() noexcept {
  if (hungry_.load(std::memory_order_relaxed))
    (void)take_hunger();
}

namespace {
// Send_after timers tie a process to this scheduler, aimed at it or started
// by it and pending: cancel_timer must find them here to answer exactly.
bool holds_timers(const process& p) noexcept {
  return p.extras != nullptr && (p.extras->timers != nullptr || p.extras->timers_started != 0);
}
// Tied to this scheduler whatever it is doing: bound (spawn_opt's
// scheduler, or its I/O), or holding send_after timers here.
bool tied_here(const process& p) noexcept { return p.bound || holds_timers(p); }
// What the balance check may send away at time `t`: not one tied here, not
// a caller about to take its reply (it would go back to its callee's
// scheduler after a few calls), nor one the check moved within
// `balance_again_ns` (a server would be swapped with its callers).
bool check_may_send(const process& p, std::int64_t t, std::int64_t again_ns) noexcept {
  return !tied_here(p)
         && (p.extras == nullptr
             || (p.extras->calls.empty() && (p.extras->balanced_at_ns == 0 || t - p.extras->balanced_at_ns >= again_ns)));
}
} // namespace

bool scheduler::can_migrate(const process& p) const noexcept {
  // Only between two runs, with nothing that ties it to this thread: no
  // timeout armed in our heap (a waiting process may have one), no send_after
  // timer of ours aimed at it or started by it, no io_context of ours.
  return !tied_here(p) && p.ready_as != detail::ready_kind::stays && p.state == proc_state::runnable;
}

// Hands `to` up to `want` ready processes that `may` move, looking at
// `look` at most, in one push; returns how many.
template <class May>
std::size_t scheduler::hand_over(scheduler* to, std::size_t want, std::size_t look, May may) noexcept {
  // The chain is built newest first: the receiver reverses its stack, so
  // the processes keep their ready order there.
  process* first = nullptr;
  process* last = nullptr;
  std::size_t moved = 0;
  std::size_t looked = 0;
  auto chain = [&](process* p) {
    p->remote_next = first;
    first = p;
    if (last == nullptr)
      last = p;
    ++moved;
  };
  // New processes first, oldest first: the bottom of their stack, where
  // the roots of the largest subtrees of work wait.
  std::size_t i = fresh_bottom_;
  std::size_t keep = fresh_bottom_;
  for (; i < fresh_.size() && moved < want && looked < look; ++i, ++looked) {
    process* p = fresh_[i];
    if (may(std::as_const(*p)) && !p->notified.exchange(true, std::memory_order_seq_cst)) {
      uncount_ready(*p);
      detach(p, to);
      chain(p);
    } else {
      fresh_[keep++] = p;
    }
  }
  fresh_.erase(fresh_.begin() + static_cast<std::ptrdiff_t>(keep), fresh_.begin() + static_cast<std::ptrdiff_t>(i));
  settle_fresh();
  process* prev = nullptr;
  for (process* p = ready_head_; p != nullptr && moved < want && looked < look; ++looked) {
    process* next = p->ready_next;
    // `notified` held, no sender can put p on a remote-ready stack, and p's
    // home stays what we write until the receiver clears it.
    if (may(std::as_const(*p)) && !p->notified.exchange(true, std::memory_order_seq_cst)) {
      detach_ready(p, prev, to);
      chain(p);
    } else {
      prev = p;
    }
    p = next;
  }
  if (moved != 0) {
    migrated_out_.store(migrated_out_.load(std::memory_order_relaxed) + moved, std::memory_order_relaxed);
    to->migrated_in_.fetch_add(moved, std::memory_order_relaxed);
    to->remote_enqueue_chain(first, last);
  }
  return moved;
}

void scheduler::shed_load() noexcept {
  if (node_.stopping())
    return; // the receiver may have torn its processes down already
  // A new process (an acceptor's connection, most often) may bind on its
  // first run, for life: it goes only where not more processes are bound by
  // I/O than here (new_may_go), else an acceptor's connections piled up on
  // whichever scheduler went idle after each (50 of 50, with 2 or 4
  // schedulers), or were taken along with other work.
  const bool only_lone_new = movable_ready_ == 1 && spawned_ready_ == 1;
  scheduler* to = node_.claim_hungry(*this, only_lone_new ? io_load() : node::any_load);
  if (to == nullptr)
    return;
  const bool news_may_go = new_may_go(*to);
  const std::size_t want = std::min((movable_ready_ + 1) / 2, max_shed);
  const std::size_t moved = hand_over(to, want, 4 * want + 64, [&](const process& p) {
    return can_migrate(p) && (news_may_go || p.ready_as != detail::ready_kind::spawned);
  });
  if (moved == 0) {
    // Nothing could move (timers, waits): let another feed it, and do not
    // walk this queue again at every step.
    to->advertise_hunger();
    shed_pause_ = shed_retry_steps;
  }
}

// A scheduler whose core another busy thread wants (a load generator, a
// second server: core_contended) takes that thread's time with every step,
// and each message to it waits for the core. So, on a node that leaves
// shared cores (node_options::leave_shared_cores), and as the BEAM compacts
// load onto fewer schedulers, it hands every ready process that may move to a
// scheduler whose core is its own, those woken by messages too, and asks
// for no work until its core is free again; placement and the balance
// check pass it over. Processes bound to it stay (spawn_opt's, or bound by
// their I/O; otp::follow's sockets move with theirs). Measured: kvstore on
// 2 cores beside redis-benchmark, docs/design.md ("Leaving a shared core").
void scheduler::give_away() noexcept {
  if (node_.stopping())
    return;
  scheduler* to = node_.uncontended(*this);
  if (to == nullptr)
    return; // every core is shared: nothing better than here
  constexpr auto all = static_cast<std::size_t>(-1);
  (void)hand_over(to, all, all, [](const process& p) {
    return !tied_here(p) && p.state == proc_state::runnable;
  });
}

// A process woken by a message from another scheduler while this one is
// leaving its core (give_away) goes to a free one before it runs, its
// receive's timeout with it: a server fed only by messages (kvstore's
// shards) is never runnable here, so give_away alone never moved it.
// Called from drain_remote, with `notified` held, as follow_callee.
bool scheduler::leave_with(process* p) noexcept {
  if (!leaving_.load(std::memory_order_relaxed) || tied_here(*p) || node_.stopping())
    return false;
  scheduler* to = node_.uncontended(*this);
  if (to == nullptr)
    return false;
  move_waiting(p, to);
  return true;
}

// One of the processes compaction's last look left because it was being
// woken (compact_load) goes to the scheduler that look chose, as its
// wake-up is drained here. Called from drain_remote, with `notified` held.
bool scheduler::compact_woken(process* p) noexcept {
  if (compact_woken_left_ == 0)
    return false;
  scheduler* to = compact_woken_to_;
  // Within two periods of the look: later, its reading of the load is old.
  const bool fresh = ns_of_ticks(static_cast<std::int64_t>(ticks() - compact_woken_at_ticks_)) < 2 * balance_period_ns;
  if (!fresh || to->leaving() || to->backlogged() || node_.stopping()) {
    compact_woken_left_ = 0;
    return false;
  }
  if (tied_here(*p) || balanced_lately(*p, compact_woken_at_ns_))
    return false;
  --compact_woken_left_;
  to->compacted_in_ns_.store(compact_woken_at_ns_, std::memory_order_relaxed);
  p->wake_streak = 0;
  move_waiting(p, to);
  compacted_out_.store(compacted_out_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return true;
}

// Takes `p` (after `prev` in the ready queue) out of this scheduler for
// `to`; the caller holds `notified`, so no sender enqueues it meanwhile.
void scheduler::detach_ready(process* p, process* prev, scheduler* to) noexcept {
  unlink_ready(p, prev);
  detach(p, to);
}

// The rest of a move, for a process out of the ready queue or stack.
void scheduler::detach(process* p, scheduler* to) noexcept {
  p->in_ready = false;
  remove_live(p);
  p->state = proc_state::created; // adopted by the receiver, as a spawn
  // Not movable there until it has run: a hungry receiver that passed it
  // straight on would bounce it between idle schedulers for ever.
  p->ready_as = detail::ready_kind::stays;
  p->wake_streak = 0;
  p->home_.store(to, std::memory_order_release);
}

// Active time up to `t`, the stretch under way included; read from any
// thread, by the balance check and compaction.
std::int64_t scheduler::active_ns_at(std::int64_t t) const noexcept {
  const std::int64_t since = active_since_ns_.load(std::memory_order_relaxed);
  return active_ns_.load(std::memory_order_relaxed) + (since != 0 && t > since ? t - since : 0);
}

// The periodic balance check (the BEAM's, in spirit): sheds above move only
// new, yielded and timed-out processes, so processes woken by messages
// (servers, pairs, a pool) stay where they were first placed, and a
// placement made while a scheduler was busy or not running stays skewed
// for good. Once per `balance_period_ns`, a scheduler that was busy nine
// tenths of the period, with two or more processes ready, gives one of
// them (woken by a message or not) to the scheduler that was active least,
// if that one was busy a quarter of the period less; with none it may
// send, the next server to reach its fair-share yield (send_emigrant). One
// a period: a pair it splits joins up again (follow_waker). Measured:
// docs/design.md.
void scheduler::check_balance() noexcept {
  const auto t = ns_of(std::chrono::steady_clock::now());
  const std::int64_t window = t - balance_checked_ns_;
  if (window < balance_period_ns)
    return;
  emigrate_to_ = nullptr; // asked again below if still so
  emigrant_ = nullptr;
  const bool sampled = balance_checked_ns_ != 0;
  balance_checked_ns_ = t;
  const unsigned n = node_.scheduler_count();
  seen_active_ns_.resize(n, 0);
  mostly_idle_.resize(n, false);
  scheduler* idlest = nullptr;
  std::int64_t least = window;
  std::int64_t ours = 0;
  for (unsigned i = 0; i < n; ++i) {
    scheduler& s = node_.get_scheduler(i);
    const std::int64_t active = s.active_ns_at(t);
    const std::int64_t busy = active - seen_active_ns_[i];
    seen_active_ns_[i] = active;
    mostly_idle_[i] = sampled && busy * 2 <= window;
    if (&s == this)
      ours = busy;
    else if (busy < least && !s.leaving()) { // it idles to leave its core
      least = busy;
      idlest = &s;
    }
  }
  // Busy nine tenths of the period or more (a pool's scheduler idles for
  // moments, when all its callers wait on the other one), against one busy
  // a quarter of the period less (a pool split 10:6 showed 100% against 58%).
  if (!sampled || idlest == nullptr || 4 * (ours - least) < window || ours * 10 < window * 9 || node_.stopping())
    return;
  // The first that may move (check_may_send).
  process* pick = nullptr;
  process* pick_prev = nullptr;
  process* prev = nullptr;
  unsigned looked = 0;
  // Alone ready, it runs as soon here as there: moved, it only made the
  // chain it belongs to cross cores (a ring gathered on a scheduler it
  // kept busy was spread again, one member a period).
  for (process* p = ready_count_ >= 2 ? ready_head_ : nullptr; p != nullptr && looked < 64;
       prev = p, p = p->ready_next, ++looked) {
    if (p->state != proc_state::runnable || !check_may_send(*p, t, balance_again_ns))
      continue;
    if (p->ready_as == detail::ready_kind::spawned && !new_may_go(*idlest))
      continue; // as in shed_load: it may bind on its first run
    // Woken from another scheduler and not run yet: its waker holds it here.
    if (p->notified.exchange(true, std::memory_order_seq_cst))
      continue;
    pick = p;
    pick_prev = prev;
    break;
  }
  if (pick == nullptr) {
    emigrate_to_ = idlest; // the next server to yield goes instead (send_emigrant)
    return;
  }
  pick->ext().balanced_at_ns = t;
  send_ready(pick, pick_prev, idlest);
}

// Moves `p` (after `prev` in the ready queue, `notified` held) to `to`.
void scheduler::send_ready(process* p, process* prev, scheduler* to) noexcept {
  detach_ready(p, prev, to);
  migrated_out_.store(migrated_out_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  to->migrated_in_.fetch_add(1, std::memory_order_relaxed);
  to->remote_enqueue(p);
}

// At the end of a batch, the server noted at its fair-share yield while the
// last check asked for one (note_busy_server) goes where the check said, if
// it is still ours: from the ready queue, or waiting for its next message
// (its receive's timeout with it). One that is running is tried at the next
// batch's end; one the check may not send (check_may_send) gives way to the
// next server to yield.
void scheduler::send_emigrant() noexcept {
  process* p = emigrant_;
  if (p->id.load(std::memory_order_relaxed) != emigrant_id_ || p->home() != this
      || p->state == proc_state::exiting || p->state == proc_state::dead) {
    emigrant_ = nullptr; // gone: moved, ending, or its block reused
    return;
  }
  const bool waits = p->state == proc_state::waiting && !p->in_ready && p->waiter != nullptr;
  const bool queued = p->state == proc_state::runnable && p->in_ready && p->ready_as != detail::ready_kind::spawned;
  if (!waits && !queued)
    return;
  const auto t = ns_of(std::chrono::steady_clock::now());
  if (!check_may_send(*p, t, balance_again_ns) || node_.stopping() || emigrate_to_->leaving()) {
    emigrant_ = nullptr;
    return;
  }
  process* prev = nullptr;
  if (queued) {
    process* q = ready_head_;
    for (; q != nullptr && q != p; q = q->ready_next)
      prev = q;
    if (q == nullptr)
      return;
  }
  if (p->notified.exchange(true, std::memory_order_seq_cst))
    return; // a sender is waking it here: it runs here first
  p->ext().balanced_at_ns = t;
  scheduler* to = std::exchange(emigrate_to_, nullptr);
  emigrant_ = nullptr;
  if (queued) {
    send_ready(p, prev, to);
  } else {
    p->wake_streak = 0;
    move_waiting(p, to);
  }
}

// Compaction of load (the BEAM's, +scl): placement and sheds spread a
// burst over every hungry scheduler, and processes woken by messages then
// stay where they landed. A chain that passes one token (a ring) or a
// light load split that way runs at the speed of its cross-core hops and
// wake-ups (ring_hop_ns 21 -> 34 ns at two schedulers). So a scheduler
// that goes idle looks, once a period, at what every scheduler did in it:
// if it was the least busy, and its work fits beside the busiest one that
// has room for it (nine tenths of the period in all), it hands that one
// its waiting processes and runs nothing until work comes again. The
// busy one keeps them: check_balance gives work away only from a
// scheduler busy nine tenths of a period, and then only with two or more
// ready (a gathered chain has one: the token's holder).
bool scheduler::compact_load(std::int64_t t) noexcept {
  const std::int64_t window = t - compact_checked_ns_;
  // After a sleep the period is mostly idleness, and says nothing of the
  // load: only a scheduler that keeps coming back to the idle path (a
  // chain's hops) compacts.
  const bool sampled = compact_checked_ns_ != 0 && window <= 4 * balance_period_ns;
  compact_checked_ns_ = t;
  const unsigned n = node_.scheduler_count();
  if (compact_read_.size() != n)
    return false; // a node that started no threads (deterministic)
  std::int64_t ours = 0;
  for (unsigned i = 0; i < n; ++i) {
    scheduler& s = node_.get_scheduler(i);
    compact_reading& r = compact_read_[i];
    const std::int64_t active = s.active_ns_at(t);
    const std::int64_t link = s.link_ns_.load(std::memory_order_relaxed);
    const std::int64_t tail = s.link_tail_ns_.load(std::memory_order_relaxed);
    r.busy = active - r.active_seen;
    r.tail = std::min(tail - r.tail_seen, r.busy);
    r.link = std::min(link - r.link_seen, r.busy - r.tail);
    r.active_seen = active;
    r.link_seen = link;
    r.tail_seen = tail;
    if (&s == this)
      ours = r.busy;
  }
  if (!sampled || live_.empty() || node_.stopping())
    return false;
  // The rest of a move that left processes behind, being woken here as it
  // looked: they follow without a second look at the room. A ring's token
  // holder was left at each move, and alone it read too little to matter
  // while its ring, gathered, kept the other scheduler busy: the ring
  // crossed cores twice a lap for good.
  scheduler* to = std::exchange(compact_rest_to_, nullptr);
  if (to != nullptr && (t > compact_rest_until_ns_ || to->leaving() || to->backlogged()))
    to = nullptr;
  if (to == nullptr)
    to = compact_target(t, window, ours);
  if (to == nullptr)
    return false;
  std::size_t moved = 0, left = 0;
  // From the back: remove_live moves the last process into the slot it
  // empties, and that one has been looked at already.
  for (std::size_t i = live_.size(); i > 0 && moved < max_compact; --i) {
    process* p = live_[i - 1];
    if (p->state != proc_state::waiting || p->in_ready || p->waiter == nullptr || tied_here(*p))
      continue;
    if (balanced_lately(*p, t))
      continue; // the balance check sent it here lately
    if (p->notified.exchange(true, std::memory_order_seq_cst)) {
      ++left; // a sender is waking it here: it runs here first
      continue;
    }
    // Before the first move: the receiver, once it takes the process, sees
    // it (its look could otherwise hand the process straight back).
    if (moved == 0)
      to->compacted_in_ns_.store(t, std::memory_order_relaxed);
    p->wake_streak = 0;
    move_waiting(p, to);
    ++moved;
  }
  if (left != 0 && moved != 0) {
    compact_rest_to_ = to;
    compact_rest_until_ns_ = t + 2 * balance_period_ns;
  }
  // Those being woken as it looked go as their wake-ups are drained here
  // (compact_woken). A ring of 3 split 2 to 1: the lone member's token came
  // back from the other side's two hops before each look had read the
  // schedulers' loads, so the look found it being woken every time, moved
  // nothing, and the ring stayed split (120 ns a hop, 22 gathered).
  compact_woken_to_ = left != 0 ? to : nullptr;
  compact_woken_left_ = left;
  compact_woken_at_ns_ = t;
  compact_woken_at_ticks_ = ticks();
  compacted_out_.store(compacted_out_.load(std::memory_order_relaxed) + moved, std::memory_order_relaxed);
  return moved != 0;
}

// compact_load's choice: the busiest scheduler with room for our work
// beside its own, if we were the least busy and were not handed work by
// compaction lately; nullptr if none.
scheduler* scheduler::compact_target(std::int64_t t, std::int64_t window, std::int64_t ours) const noexcept {
  const unsigned n = node_.scheduler_count();
  const std::int64_t room = window * 9 / 10;
  const compact_reading& we = compact_read_[index_];
  std::int64_t least_other = std::numeric_limits<std::int64_t>::max();
  scheduler* to = nullptr;
  std::int64_t to_busy = -1;
  for (unsigned i = 0; i < n; ++i) {
    scheduler& s = node_.get_scheduler(i);
    if (&s == this || s.leaving())
      continue;
    const compact_reading& r = compact_read_[i];
    least_other = std::min(least_other, r.busy);
    // Active without a break for a quarter of the period or more: it has
    // no room now, whatever the period's sum says. One that idled at the
    // start of the period and was busy since (work just placed there, or
    // its thread kept off its core by another program) read 30-84% busy,
    // was sent a worker, and the balance check sent it back.
    const std::int64_t since = s.active_since_ns_.load(std::memory_order_relaxed);
    if (since != 0 && 4 * (t - since) >= window)
      continue;
    // Its last batch ran its full length and left two or more ready: a
    // backlog now. One kept off its core for most of the period (by
    // another program, or asleep until woken late) read 1-10% busy, and
    // active too briefly for the rule above. A gathered chain leaves one.
    if (s.backlogged())
      continue;
    // Room: a tenth of the period to spare, for work that may run at the
    // same time as ours; none for a chain's links, which take turns, and
    // their tails do not count (on one scheduler, a local wake-up instead).
    // A short chain's halves, counted whole, read 100-120% busy together
    // in a g++ 12 build, and gathered only by chance dips below 90%.
    const std::int64_t links = r.link + we.link;
    const std::int64_t tails = r.tail + we.tail;
    if (r.busy + ours - tails - links / 10 <= room && r.busy > to_busy) {
      to_busy = r.busy;
      to = &s;
    }
  }
  if (to == nullptr || ours > least_other)
    return nullptr;
  // Handed work by compaction within the last second: two light schedulers
  // about as busy, each the less busy in turn, handed a caller of servers
  // on both to each other every period.
  return t - compacted_in_ns_.load(std::memory_order_relaxed) >= balance_again_ns ? to : nullptr;
}

// A caller woken from another scheduler while it waits for a call's reply
// goes to its callee's scheduler, so that the calls that follow are local:
// clients of one server gather on the server's core instead of paying two
// cross-core hops a call for good (measured: docs/design.md).
scheduler* scheduler::follow_target(const process& p) const noexcept {
  const pid& callee = *p.waiter->follow;
  const process* c = callee.control_block();
  if (c == nullptr || c->id.load(std::memory_order_relaxed) != callee.id())
    return nullptr; // a hint only: the callee may be gone, its block reused
  scheduler* to = c->home();
  if (to == nullptr || to == this || tied_here(p) || node_.stopping() || to->leaving())
    return nullptr;
  return to;
}

// Called from drain_remote, with `notified` held: the move is a shed of one.
bool scheduler::follow_callee(process* p) noexcept {
  scheduler* to = follow_target(*p);
  if (to == nullptr)
    return false;
  // Only after `follow_after` wake-ups in a row from that scheduler, with no
  // local reply between: a caller of servers on two schedulers used to
  // move at every call, a third cross-core hop per call (measured:
  // docs/design.md). A process waiting in a call has extras (its slot).
  detail::process_extras& x = p->ext();
  if (x.replies_from != to) {
    x.replies_from = to;
    x.replies_in_a_row = 0;
  }
  if (++x.replies_in_a_row < follow_after)
    return false;
  x.replies_in_a_row = 0;
  move_waiting(p, to);
  return true;
}

// A process woken only from one other scheduler, `follow_after` times in a
// row with no message from here between, goes there when that scheduler is
// idle: a pair split by check_balance joins up again. A worker fed from a
// busy scheduler stays, so that a pool does not collapse onto one core.
// Called from drain_remote with `notified` held, as follow_callee.
bool scheduler::follow_waker(process* p) noexcept {
  const bool talks_back = p->sent_away;
  p->sent_away = false;
  const std::uint8_t tag = p->woken_by;
  const unsigned from = tag & ~process::woken_again;
  if (from == 0 || from - 1 == index_ || (tag & process::woken_again) == 0) {
    p->wake_streak = from == 0 || from - 1 == index_ ? 0 : 1;
    return false;
  }
  if (p->wake_streak < process::wake_streak_max)
    ++p->wake_streak;
  // Only one that talks back (it sent to another scheduler since its last
  // wake-up from there): a chain's member, woken from there and passing
  // the token on here, moved the chain's boundary by one each time, and a
  // chain gathered by compaction spread out again (under TSan, a ring of
  // 4000 went back from 1 member to 428 in 18 s).
  if (p->wake_streak < follow_after || !talks_back || tied_here(*p) || node_.stopping()
      || from > node_.scheduler_count())
    return false;
  scheduler* to = &node_.get_scheduler(from - 1);
  // Only to a scheduler idle now, and idle half the last balance period
  // or more as this one measured it (check_balance): a worker of a busy
  // pool, woken from a scheduler that is idle for a moment, stays.
  if (!to->hungry_.load(std::memory_order_relaxed) || to->leaving() || from > mostly_idle_.size() || !mostly_idle_[from - 1]
      || ns_of(std::chrono::steady_clock::now()) - balance_checked_ns_ > 2 * balance_period_ns)
    return false;
  p->wake_streak = 0;
  move_waiting(p, to);
  return true;
}

// Hands a waiting process to `to`, its receive's timeout with it (the
// receiver's heap takes it, same deadline). `notified` is held.
void scheduler::move_waiting(process* p, scheduler* to) noexcept {
  if (detail::timer_node* t = p->waiter->timer; t != nullptr && t->armed()) {
    // The wait's timeout keeps its deadline; the receiver's heap takes it.
    if (t->heap_index == detail::timer_node::pending) {
      unlink_pending(t);
      t->deadline = saturating_add(now(), t->pending_for);
    } else {
      timers_.erase(t);
    }
    if (t->deadline != std::chrono::steady_clock::time_point::max())
      t->heap_index = detail::timer_node::moving;
  }
  remove_live(p);
  // Senders on the receiver's thread see it local from now on: `created`
  // makes their pushes only queue until the receiver adopts it.
  p->state = proc_state::created;
  p->home_.store(to, std::memory_order_release);
  migrated_out_.store(migrated_out_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  to->migrated_in_.fetch_add(1, std::memory_order_relaxed);
  to->remote_enqueue(p);
}

scheduler_stats scheduler::stats() const noexcept {
  const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now().time_since_epoch()).count();
  scheduler_stats st;
  st.index = index_;
  std::int64_t active = active_ns_.load(std::memory_order_relaxed);
  if (const auto since = active_since_ns_.load(std::memory_order_relaxed); since != 0 && now_ns > since)
    active += now_ns - since;
  const auto started = started_ns_.load(std::memory_order_relaxed);
  st.active = std::chrono::nanoseconds{active};
  st.total = std::chrono::nanoseconds{started != 0 ? now_ns - started : 0};
  st.chain_links = std::chrono::nanoseconds{link_ns_.load(std::memory_order_relaxed)};
  st.chain_tails = std::chrono::nanoseconds{link_tail_ns_.load(std::memory_order_relaxed)};
  st.run_queue = run_queue_len_.load(std::memory_order_relaxed);
  st.io_bound = io_load_.load(std::memory_order_relaxed);
  st.cpu = cpu_.load(std::memory_order_relaxed);
  st.processes = live_len_.load(std::memory_order_relaxed);
  st.migrated_out = migrated_out_.load(std::memory_order_relaxed);
  st.migrated_in = migrated_in_.load(std::memory_order_relaxed);
  st.compacted_out = compacted_out_.load(std::memory_order_relaxed);
  st.contended = contended_.load(std::memory_order_relaxed);
  st.others_on_core = node_.others_on_core(index_);
  st.leaving = leaving_.load(std::memory_order_relaxed);
  st.hungry = hungry_.load(std::memory_order_relaxed);
  return st;
}

// ---------------------------------------------------------------- stepping

void scheduler::step(process* p) noexcept {
  p->in_ready = false;
  if (p->has_pending_signals() && !process_signals(p))
    return;
  switch (p->state) {
    case proc_state::runnable: run(p); break;
    case proc_state::waiting:
      if (detail::match_waiting(*p)) {
        p->state = proc_state::runnable;
        run(p);
      }
      break;
    case proc_state::created:
    case proc_state::running:
    case proc_state::suspended:
    case proc_state::exiting:
    case proc_state::dead: break;
  }
}

std::coroutine_handle<> scheduler::handoff() noexcept {
  // A hop's path: no new process waits (the next pick is the queue's head)
  // and no seed shuffles the order. The general case is handoff_slow.
  if (spawned_ready_ != 0 || rng_) [[unlikely]]
    return handoff_slow();
  process* q = ready_head_;
  if (!may_hand_to(q))
    return std::noop_coroutine();
  unlink_ready(q, nullptr);
  return handed_to(q);
}

// The rest of a hand-off, once q is out of the ready queue.
std::coroutine_handle<> scheduler::handed_to(process* q) noexcept {
  --handoffs_left_;
  q->in_ready = false;
  q->state = proc_state::running;
  detail::this_thread.current = q;
  return q->resume;
}

std::coroutine_handle<> scheduler::handoff_slow() noexcept {
  if (rng_)
    return std::noop_coroutine(); // a seeded order: through step()
  const ready_source from = next_source();
  process* q = peek_ready(from);
  if (!may_hand_to(q))
    return std::noop_coroutine();
  // A new process waits beside other work and a scheduler is hungry: back
  // to the loop, which sheds between two steps. Else a burst ran its first
  // 16 here before any could move (64 pairs split 36:28), and, newest first,
  // a supervisor's children each ran at once and stayed. A new process with
  // nothing else ready runs here: a spawn and a wait for its end stays
  // local (spawn_exit_ns went from 250 to 700-1,250 ns when it moved;
  // measured: docs/design.md).
  if (spawned_ready_ != 0 && ready_count_ >= 2 && shed_pause_ == 0 && node_.anyone_hungry())
    return std::noop_coroutine();
  (void)take_ready(from); // without a seed, takes q
  return handed_to(q);
}

void scheduler::run(process* first) noexcept {
  first->state = proc_state::running;
  handoffs_left_ = handoff_budget;
  process* prev = std::exchange(detail::this_thread.current, first);
  first->resume.resume();
  // Hand-offs may have passed the thread along: `p` is whoever ran last.
  process* p = std::exchange(detail::this_thread.current, prev);
  if (p->top.done()) {
    // A signal it sent itself (exit(self(), kill) and then the end of the
    // body) takes effect before the body's own outcome, as in Erlang.
    if (p->has_pending_signals() && !process_signals(p))
      return;
    const bool crashed = p->extras != nullptr && p->extras->crash;
    exit_reason why = crashed ? exit_reason::from_exception(p->extras->crash) : exit_reason::normal();
    if (crashed)
      detail::report_process_crash(*p, p->extras->crash, why); // proc_lib's crash report
    exit_process(p, why);
  } else if (p->state == proc_state::running) {
    // Suspended on an awaitable that is not the runtime's: only that
    // awaitable can resume it now.
    p->state = proc_state::suspended;
  }
}

// ------------------------------------------------------- zombies, shutdown

void scheduler::reap_zombies() noexcept {
  std::size_t keep = 0;
  for (std::size_t i = 0; i < zombies_.size(); ++i) {
    process* z = zombies_[i];
    if (z->refs.load(std::memory_order_acquire) == process::closed_bit
        && !z->notified.load(std::memory_order_acquire)) {
      reclaim(z);
    } else {
      zombies_[keep++] = z;
    }
  }
  zombies_.resize(keep);
}

void scheduler::reclaim(process* p) noexcept {
  const pid me = p->self();
  for (item* it = p->inbox.exchange(nullptr, std::memory_order_acq_rel); it != nullptr;) {
    item* next = it->next;
    detail::bounce(me, it);
    it = next;
  }
  if (free_count_ < kept_blocks) {
    p->remote_next = free_blocks_;
    free_blocks_ = p;
    ++free_count_;
    return;
  }
  // A scheduler that runs processes others spawned frees more blocks than
  // it takes: past those kept for its own spawns, it fills a batch and
  // hands it to the node, where spawners find it (no walk down a list of
  // cold blocks to cut it).
  p->remote_next = spill_blocks_;
  spill_blocks_ = p;
  if (++spill_count_ == node::block_batch) {
    node_.give_block_batch(std::exchange(spill_blocks_, nullptr));
    spill_count_ = 0;
  }
}

void scheduler::terminate_all() noexcept {
  auto* prev = std::exchange(detail::this_thread.sched, this);
  do {
    drain_remote();
    while (!live_.empty())
      teardown(live_.back());
    ready_head_ = ready_tail_ = nullptr;
    fresh_.clear();
    fresh_bottom_ = 0;
    ready_count_ = movable_ready_ = spawned_ready_ = 0;
  } while (remote_ready_.load(std::memory_order_acquire) != nullptr);
  detail::this_thread.sched = prev;
}

void scheduler::final_cleanup() noexcept {
  auto* prev = std::exchange(detail::this_thread.sched, this);
  // Processes spawned here from other threads while the node was stopping.
  process* list = remote_ready_.exchange(nullptr, std::memory_order_acquire);
  while (list != nullptr) {
    process* p = list;
    list = p->remote_next;
    p->notified.store(false, std::memory_order_relaxed);
    if (p->state == proc_state::created) {
      if (p->placed)
        unplace(p);
      add_live(p);
      teardown(p);
    }
  }
  // Processes that moved here after terminate_all (a shed that raced the
  // shutdown): no thread runs now, and none of them holds Asio objects.
  while (!live_.empty())
    teardown(live_.back());
  ready_head_ = ready_tail_ = nullptr;
  fresh_.clear();
  fresh_bottom_ = 0;
  ready_count_ = movable_ready_ = spawned_ready_ = 0;
  for (process* z : zombies_)
    detail::discard_all(z->self(), z->inbox.exchange(nullptr, std::memory_order_acq_rel));
  zombies_.clear();
  while (!send_timers_.empty()) {
    detail::send_timer* t = send_timers_.begin()->second;
    forget_send_timer(t);
    detail::destroy_item(t->msg);
    delete t;
  }
  free_blocks_ = spill_blocks_ = nullptr;
  free_count_ = spill_count_ = 0;
  io_->wake_timer.cancel();
  io_->work.reset();
  detail::this_thread.sched = prev;
}

// ------------------------------------------------------------------- loop

bool scheduler::fire_timers(std::chrono::steady_clock::time_point t_now) noexcept {
  bool fired = false;
  while (auto* t = timers_.top()) {
    if (t_now < t->deadline)
      break;
    timers_.erase(t);
    t->fire(t, *this);
    fired = true;
  }
  return fired;
}

void scheduler::arm_pending_timers(std::chrono::steady_clock::time_point t_now) noexcept {
  while (detail::timer_node* t = pending_timers_) {
    unlink_pending(t);
    t->deadline = saturating_add(t_now, t->pending_for);
    if (t->deadline != std::chrono::steady_clock::time_point::max()) // else forever: never armed
      timers_.push(t);
  }
}

bool scheduler::run_batch() {
  bool did = drain_remote();
  if (pending_timers_ != nullptr || !timers_.empty()) {
    const auto t_now = now(); // one clock reading a batch
    arm_pending_timers(t_now);
    did |= fire_timers(t_now);
  }
  if (ready_count_ != 0 && leaving_.load(std::memory_order_relaxed)) [[unlikely]]
    give_away();
  // A bounded batch, so that I/O and other cores' wake-ups are not starved
  // by two processes that keep each other busy.
  unsigned n = 0;
  while (n < 256) {
    // Between two steps: the one place a process of ours is certainly not
    // running, and a cheap look (nothing movable, or nobody hungry).
    // A process that has run moves only if we have more to run; a new one
    // (its placement is for life once it binds) even alone.
    if (movable_ready_ != 0 && (ready_count_ >= 2 || spawned_ready_ != 0) && node_.anyone_hungry()) {
      if (shed_pause_ == 0)
        shed_load();
      else
        --shed_pause_;
    }
    process* p = pop_ready();
    if (p == nullptr)
      break;
    step_woke_remote_ = 0;
    step(p);
    n += 1 + handoff_budget - handoffs_left_; // hand-offs count against the batch
    handoffs_left_ = handoff_budget;
  }
  did |= n > 0;
  // The clock is read once per 256 steps at most, and only while another
  // scheduler is idle: a batch of long steps (a pool's work) is
  // milliseconds, so a count of batches alone came round every 100+ ms.
  // Whatever is left ready: a pool's batches end when its queue empties
  // (its workers run by hand-off), and the check then never ran.
  if ((steps_since_balance_ += n) >= 256) {
    steps_since_balance_ = 0;
    if (node_.anyone_hungry())
      check_balance();
  }
  if (emigrant_ != nullptr) [[unlikely]]
    send_emigrant();
  if (!zombies_.empty())
    reap_zombies();
  if (io_pending_ > 0 || ++batches_since_poll_ >= 64) {
    batches_since_poll_ = 0;
    did |= io_->context.poll() > 0;
  }
  publish_stats();
  return did;
}

void scheduler::sleep_until_work() {
  sleeping_.store(true, std::memory_order_seq_cst);
  if (remote_ready_.load(std::memory_order_seq_cst) != nullptr || stop_.load(std::memory_order_acquire)) {
    sleeping_.store(false, std::memory_order_relaxed);
    return;
  }
  auto wake_at = std::chrono::steady_clock::time_point::max();
  if (auto* t = timers_.top())
    wake_at = t->deadline;
  // A zombie that a sender still held at the last reap may have items in
  // its inbox that only its reaping answers (a link's noproc, a monitor's
  // DOWN): the sender does not wake us when it lets go, so look again soon.
  if (!zombies_.empty())
    wake_at = std::min(wake_at, std::chrono::steady_clock::now() + zombie_retry);
  if (wake_at != std::chrono::steady_clock::time_point::max() && wake_at != wake_armed_) {
    wake_armed_ = wake_at;
    io_->wake_timer.expires_at(wake_at);
    io_->wake_timer.async_wait([this](const asio::error_code& ec) {
      if (!ec)
        wake_armed_ = {};
    });
  }
  io_->context.run_one();
  sleeping_.store(false, std::memory_order_relaxed);
}

// A spin on a core that another busy thread wants (a load generator, a
// second server) takes that thread's time: the kernel shares the core, and
// every microsecond we poll is one it does not run. So once a window, when
// idle, the scheduler asks the kernel whether anyone else is waiting for
// this core: it yields it (sched_yield). Alone, the call returns within
// microseconds; with a runnable neighbour, the neighbour runs first. A yield
// that took longer than `contention_probe` marks the core contended, and a
// contended scheduler sleeps at once when idle, until a hold time passes
// without such a probe. Signals tried first, and why not: our thread being
// preempted (a thread that spins and sleeps stays under its fair share and
// is rarely preempted: it is the neighbour that loses its time), and our
// own wait for the core (schedstat's run_delay: our wake-ups preempt the
// neighbour, so it stayed low while the neighbour lost its time).
// Measured, kvstore on 2 cores beside redis-benchmark: docs/design.md.
// A node that leaves shared cores has a steadier reading, for busy and
// idle schedulers alike (detail::core_watch): it is used instead.
bool scheduler::core_contended(std::chrono::steady_clock::time_point t) noexcept {
  if (node_.watches_cores()) {
    node_.look_at_cores();
    return contended_.load(std::memory_order_relaxed);
  }
  if (t - contention_checked_ >= contention_window) {
    ::sched_yield();
    const auto after = std::chrono::steady_clock::now();
    if (after - t >= contention_probe)
      spin_off_until_ = after + contention_hold;
    contention_checked_ = after;
  }
  const bool contended = t < spin_off_until_;
  set_contended(contended);
  return contended;
}

void scheduler::note_remote_wake() noexcept {
  step_woke_remote_ = ticks();
}

void scheduler::run_loop(int cpu, std::chrono::microseconds spin) {
  detail::this_thread.sched = this;
  node_.attach_to_watch(index_);
  if (cpu >= 0 && cpu < CPU_SETSIZE) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0)
      cpu_.store(cpu, std::memory_order_relaxed);
  }
  const bool balance = node_.scheduler_count() > 1;
  auto active_since = std::chrono::steady_clock::now();
  started_ns_.store(ns_of(active_since), std::memory_order_relaxed);
  active_since_ns_.store(ns_of(active_since), std::memory_order_relaxed);
  unsigned batches = 0; // that did something, in this active period
  while (!stop_.load(std::memory_order_acquire)) {
    if (run_batch()) {
      ++batches;
      if (balance)
        retract_hunger();
      continue;
    }
    // Idle: poll briefly before sleeping; a wake-up costs far more. The
    // clock reading that bounds the spin also closes the active period.
    auto t = std::chrono::steady_clock::now();
    auto t_ticks = ticks();
    // Not below 0: a period that began on a spin's wake-up was dated by the
    // cycle counter, whose rate is an estimate.
    const std::int64_t period = std::max<std::int64_t>(ns_of(t) - ns_of(active_since), 0);
    active_ns_.store(active_ns_.load(std::memory_order_relaxed) + period, std::memory_order_relaxed);
    if (batches == 1 && step_woke_remote_ != 0 && ps_per_tick_ != 0) {
      const auto tail = std::clamp<std::int64_t>(
          ns_of_ticks(static_cast<std::int64_t>(t_ticks - step_woke_remote_)), 0, period);
      link_ns_.store(link_ns_.load(std::memory_order_relaxed) + period - tail, std::memory_order_relaxed);
      link_tail_ns_.store(link_tail_ns_.load(std::memory_order_relaxed) + tail, std::memory_order_relaxed);
    }
    batches = 0;
    step_woke_remote_ = 0;
    active_since_ns_.store(0, std::memory_order_relaxed);
    if (balance && ns_of(t) - compact_checked_ns_ >= balance_period_ns && compact_load(ns_of(t)))
      continue;
    const bool contended = core_contended(t);
    // Leaving its shared core (give_away, when another's is free): it asks
    // for no work, and does not spin on that core.
    const bool leaving = leaving_.load(std::memory_order_relaxed);
    if (leaving)
      retract_hunger();
    const auto until = contended || leaving ? t : t + spin;
    bool woke = false;
    unsigned k = 1;
    for (;; ++k) {
      if (remote_ready_.load(std::memory_order_relaxed) != nullptr || stop_.load(std::memory_order_relaxed)) {
        woke = true;
        break;
      }
      if ((k & 63) == 0) {
        const auto before = t;
        const auto before_ticks = t_ticks;
        t = std::chrono::steady_clock::now();
        t_ticks = ticks();
        time_ticks(ns_of(t) - ns_of(before), t_ticks - before_ticks);
        // Hungry only once idle for a few polls: a scheduler that waits a
        // moment for a reply from another core is not short of work.
        if (k == 64) {
          if (balance && !leaving)
            advertise_hunger();
          if (!idle_once_.load(std::memory_order_relaxed)) {
            idle_once_.store(true, std::memory_order_release); // the node's constructor waits for it
            idle_once_.notify_all();
          }
        }
        if (t >= until)
          break;
        if ((io_pending_ > 0 && io_->context.poll() > 0) || (!timers_.empty() && timers_.top()->deadline <= t)) {
          woke = true;
          break;
        }
      }
      OTP_CPU_RELAX();
    }
    if (!woke) {
      sleep_until_work();
      t = std::chrono::steady_clock::now();
    } else {
      // Woken within the spin: the time since the last clock reading is
      // idle too, dated by the cycle counter. Else a chain's schedulers,
      // each woken by the other within a few polls, read busy all the time
      // and the chain never gathered (docs/design.md, "A chain's spin is
      // idle"). The bound keeps a counter that jumped from counting more
      // than the 64 polls between readings can last.
      t += std::chrono::nanoseconds(
          std::clamp<std::int64_t>(ns_of_ticks(static_cast<std::int64_t>(ticks() - t_ticks)), 0, 1'000'000));
    }
    active_since = t;
    active_since_ns_.store(ns_of(t), std::memory_order_relaxed);
  }
  detail::this_thread.sched = nullptr;
}

void scheduler::start_thread(int cpu, std::chrono::microseconds spin) {
  // Sized here, on the node's thread: compact_load's, allocated by the
  // scheduler's own thread at its first look, made ping_pong_cross_ns
  // 300 -> 400 ns for the rest of the run (two bound processes, which
  // compaction never moves; the mechanism is not understood, the effect is
  // repeatable). check_balance's are sized here for the same reason.
  const unsigned n = node_.scheduler_count();
  compact_read_.assign(n, compact_reading{});
  seen_active_ns_.assign(n, 0);
  mostly_idle_.assign(n, false);
  fresh_.reserve(256);
  fresh_first_ = true;
  thread_ = std::thread([this, cpu, spin] { run_loop(cpu, spin); });
}

void scheduler::request_stop() noexcept {
  stop_.store(true, std::memory_order_release);
  asio::post(io_->context, [] {});
}

void scheduler::join() noexcept {
  if (thread_.joinable())
    thread_.join();
}

} // namespace otp
