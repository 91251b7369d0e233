// SPDX-License-Identifier: Apache-2.0
// otp/scheduler.hpp - one io_context, one (pinned) thread, its ready queue and timers.
#pragma once

#include "otp/detail/process.hpp"
#include "otp/fwd.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

// Asio stays out of this header: a file that only sends, calls or
// supervises does not parse it. otp/asio.hpp brings it in.
namespace asio {
class io_context;
} // namespace asio

namespace otp {

namespace detail {

struct scheduler_io; // the io_context and its wake-up timer (scheduler.cpp)

// A deadline in a scheduler's timer heap. Receive timeouts embed one in the
// awaiting frame (no allocation); send_after timers own theirs.
struct timer_node {
  std::chrono::steady_clock::time_point deadline{};
  std::uint32_t heap_index = npos;
  void (*fire)(timer_node* self, scheduler& s) noexcept = nullptr;
  // While pending (not yet in the heap): the timeout, and the pending list.
  std::chrono::steady_clock::duration pending_for{};
  timer_node* pending_prev = nullptr;
  timer_node* pending_next = nullptr;
  static constexpr std::uint32_t npos = ~std::uint32_t{0};
  static constexpr std::uint32_t pending = npos - 1;
  // Travelling with its waiting process to another scheduler, whose heap
  // takes it (deadline unchanged) when it adopts the process.
  static constexpr std::uint32_t moving = npos - 2;
  // In the heap, or pending its deadline.
  [[nodiscard]] bool armed() const noexcept { return heap_index != npos; }
};

// A binary min-heap of timer nodes that know their index: O(log n) insert
// and cancel, so a receive that matches before its timeout leaves nothing behind.
class timer_heap {
public:
  void push(timer_node* t);
  void erase(timer_node* t) noexcept;
  [[nodiscard]] timer_node* top() const noexcept { return heap_.empty() ? nullptr : heap_.front(); }
  [[nodiscard]] bool empty() const noexcept { return heap_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return heap_.size(); }

private:
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  void place(std::size_t i, timer_node* t) noexcept {
    heap_[i] = t;
    t->heap_index = static_cast<std::uint32_t>(i);
  }
  std::vector<timer_node*> heap_;
};

struct send_timer : timer_node {
  std::uint64_t ref = 0;
  pid target;
  message* msg = nullptr;
  send_timer* prev = nullptr; // in the target's extras list, when local
  send_timer* next = nullptr;
  process* owner = nullptr;   // the local target whose death cancels it
  pid starter;                // the process that started it, if any
};

} // namespace detail

/// Counters of one scheduler (cf. erlang:statistics(scheduler_wall_time)).
struct scheduler_stats {
  unsigned index = 0;
  /// Time spent running processes, timers and I/O (not idle: not spinning
  /// for work, not asleep), and wall time since it started.
  std::chrono::nanoseconds active{};
  std::chrono::nanoseconds total{};
  /// Of active: the periods between two idle moments that were one batch
  /// ending in a step that woke a process on another scheduler (a chain's
  /// links, which take turns with the links they wake), up to that
  /// wake-up; and the rest of those periods, after it. Compaction needs no
  /// room to spare for links, and does not count tails (docs/design.md,
  /// "A chain's links take turns").
  std::chrono::nanoseconds chain_links{};
  std::chrono::nanoseconds chain_tails{};
  /// Ready processes and live processes, as of its last batch.
  std::size_t run_queue = 0;
  std::size_t processes = 0;
  /// Processes handed to other schedulers, and taken from them.
  std::uint64_t migrated_out = 0;
  std::uint64_t migrated_in = 0;
  /// Of migrated_out: waiting processes it handed to a busier scheduler
  /// when it had little to do (compaction of load, the BEAM's +scl).
  std::uint64_t compacted_out = 0;
  /// Whether it found its core wanted by another busy thread (as of its last
  /// idle moment, or, on a node that leaves shared cores, of the last
  /// reading of others_on_core): then it sleeps when idle instead of
  /// spinning (docs/design.md, "Spinning on a shared core").
  bool contended = false;
  /// On a node that leaves shared cores (node_options::leave_shared_cores):
  /// the share of its core's time that other threads than the node's
  /// schedulers took lately, from 0 to 1, or negative while unknown (its
  /// thread is not pinned to one core, the option is off, or the kernel does
  /// not say); and whether its core is shared because of that: then it
  /// takes no work from the others, and hands its processes to one whose
  /// core is free, if there is one (docs/design.md, "Leaving a shared core").
  double others_on_core = -1;
  bool leaving = false;
  /// Whether it is idle and asks for work: a busy scheduler hands it ready
  /// processes that may move (docs/design.md, "Load balancing").
  bool hungry = false;
  /// Live processes that do their I/O here: bound for life (they asked for
  /// this_scheduler() or awaited Asio operations), or holding otp::follow
  /// objects since their last wait here. spawn_opt's scheduler alone does not
  /// count; such a process that does I/O does. Plain spawns start where
  /// fewer are (docs/design.md, "Where a new process starts").
  std::size_t io_bound = 0;
  /// The CPU its thread is pinned to, or -1 (node_options::pin_threads off,
  /// or the kernel refused).
  int cpu = -1;
};

/// One core's worth of the runtime: an `asio::io_context` run by one thread.
///
/// A process runs on one scheduler at a time, and only on its thread. Its own
/// ready queue (not `asio::post`) resumes processes; Asio runs the I/O and
/// the completions of operations that processes `co_await`. When it runs
/// out of work it says it is hungry, polls for `spin` and then sleeps in the
/// io_context; a busy scheduler hands half of its movable ready processes
/// to a hungry one (docs/design.md, "Load balancing").
///
/// @par Thread safety
/// Use from other threads only through the runtime (send, spawn, exit).
class scheduler {
public:
  scheduler(node& n, unsigned index);
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;
  ~scheduler();

  /// Returns this scheduler's position in its node (0-based).
  [[nodiscard]] unsigned index() const noexcept { return index_; }
  /// Returns the io_context whose thread runs this scheduler's processes.
  [[nodiscard]] asio::io_context& context() noexcept;
  /// Returns an executor for Asio objects used by this scheduler's
  /// processes (include otp/asio.hpp, which defines asio::io_context).
  template <class Context = asio::io_context>
  [[nodiscard]] typename Context::executor_type get_executor() noexcept {
    Context& c = context();
    return c.get_executor();
  }
  /// Returns the node this scheduler belongs to.
  [[nodiscard]] otp::node& owner() noexcept { return node_; }
  /// Returns the number of live processes on this scheduler. Safe from any
  /// thread (exact on its own thread, and when the node is quiescent).
  [[nodiscard]] std::size_t process_count() const noexcept { return live_len_.load(std::memory_order_relaxed); }
  /// Returns whether the scheduler's thread is asleep in its io_context
  /// (idle past its spin). Safe from any thread; for tests and monitoring.
  [[nodiscard]] bool sleeping() const noexcept { return sleeping_.load(std::memory_order_acquire); }
  /// Returns the scheduler's clock: steady_clock, or the node's manual clock.
  [[nodiscard]] std::chrono::steady_clock::time_point now() const noexcept;
  /// Returns the deadline `d` from now, never early; time_point::max()
  /// (never) when `d` is too long to add to now.
  [[nodiscard]] std::chrono::steady_clock::time_point deadline_after(std::chrono::steady_clock::duration d) const noexcept;

  /// Returns this scheduler's counters; safe from any thread.
  [[nodiscard]] scheduler_stats stats() const noexcept;

  // ---- runtime internals (public for the runtime's free functions) ----
  /// @private `stays`: woken by a message (not shed to others).
  /// Inline: a local wake-up is on every hop's path (enqueue, out of line,
  /// is for new and moved processes).
  void make_ready(detail::process* p, bool stays = false) noexcept {
    const bool moves = !stays && !p->bound; // a bound one never moves: pop_ready need not look
    movable_ready_ += moves ? 1 : 0;
    p->in_ready = true;
    p->ready_as = moves ? detail::ready_kind::other : detail::ready_kind::stays;
    p->ready_next = nullptr;
    ++ready_count_;
    append_ready(p);
  }
  /// @private A server at its fair-share yield (yield_awaiter's `stay`):
  /// busy by definition. When the last balance check asked for one, it is
  /// the one this scheduler gives away at the end of the batch (send_emigrant).
  void note_busy_server(detail::process& p) noexcept {
    if (emigrate_to_ != nullptr && emigrant_ == nullptr) [[unlikely]] {
      emigrant_ = &p;
      emigrant_id_ = p.id.load(std::memory_order_relaxed);
    }
  }
  /// @private A process run here woke one on another scheduler (the
  /// sender's thread only): a chain's link, if it was the batch's last step.
  void note_remote_wake() noexcept;
  /// @private
  void remote_enqueue(detail::process* p) noexcept { remote_enqueue_chain(p, p); }
  /// @private Pushes a chain linked through remote_next, `last` at its end.
  void remote_enqueue_chain(detail::process* first, detail::process* last) noexcept;
  /// @private For a process waiting in a call (`waiter->follow`): the
  /// callee's scheduler if the process would follow it there, else null.
  [[nodiscard]] scheduler* follow_target(const detail::process& p) const noexcept;
  /// @private Whether this scheduler asked for work and nobody gave it yet.
  [[nodiscard]] bool hungry() const noexcept { return hungry_.load(std::memory_order_relaxed); }
  /// @private Another busy thread wants its core (scheduler_stats::contended).
  [[nodiscard]] bool contended() const noexcept { return contended_.load(std::memory_order_relaxed); }
  /// @private Its core shared, on a node that leaves shared cores: no work
  /// goes to it, and its own goes to a free core if there is one
  /// (scheduler_stats::leaving; set by node::look_at_cores).
  [[nodiscard]] bool leaving() const noexcept { return leaving_.load(std::memory_order_relaxed); }
  /// @private
  void set_contended(bool on) noexcept { store_if_changed(contended_, on); }
  /// @private
  void set_leaving(bool on) noexcept { store_if_changed(leaving_, on); }
  /// @private Blocks until the thread's loop has first run out of work
  /// (and, with others to share with, said it is hungry).
  void wait_until_idle_once() const noexcept { idle_once_.wait(false, std::memory_order_acquire); }
  /// @private Claims this scheduler's hunger, to hand it work; false if another did.
  [[nodiscard]] bool take_hunger() noexcept;
  /// @private
  void advertise_hunger() noexcept;
  /// @private (timers.cpp) Ends `p`'s send_after timer `t` (fired or cancelled): out of
  /// the index, the heap and the target's list; the starter's count drops.
  void forget_send_timer(detail::send_timer* t) noexcept;
  /// @private Arms `t` at `t->deadline`.
  void add_timer(detail::timer_node* t) { timers_.push(t); }
  /// @private Arms `t` to fire `d` after the clock's next reading, at the
  /// start of the next batch: never early, and a wait that ends within
  /// this batch (a call answered through a hand-off) costs no clock read
  /// and no heap operation.
  void add_timer_after(detail::timer_node* t, std::chrono::steady_clock::duration d) noexcept {
    t->pending_for = d;
    t->heap_index = detail::timer_node::pending;
    t->pending_prev = nullptr;
    t->pending_next = pending_timers_;
    if (pending_timers_ != nullptr)
      pending_timers_->pending_prev = t;
    pending_timers_ = t;
  }
  /// @private Counts co_awaited Asio operations still pending on this scheduler.
  void io_started() noexcept { ++io_pending_; }
  /// @private
  void io_finished() noexcept { --io_pending_; }
  /// @private
  void cancel_timer(detail::timer_node* t) noexcept {
    if (t->heap_index == detail::timer_node::pending)
      unlink_pending(t);
    else if (t->heap_index == detail::timer_node::moving)
      t->heap_index = detail::timer_node::npos;
    else if (t->armed())
      timers_.erase(t);
  }
  /// @private
  [[nodiscard]] std::uint64_t next_serial() noexcept {
    return serial_.fetch_add(1, std::memory_order_relaxed);
  }
  /// @private
  [[nodiscard]] std::uint64_t next_local_ref() noexcept { return ++local_ref_; }
  /// @private Process `p`, running here, binds for life to our io_context:
  /// counted for the placement of plain spawns (node::place_spawn).
  void bind_for_io(detail::process& p) noexcept {
    p.bound = true;
    if (!p.io_bound)
      count_io(p);
  }
  /// @private Process `p`, running here, does I/O here (bound or not, an
  /// otp::follow object): counted until it exits or moves (remove_live).
  void count_io(detail::process& p) noexcept {
    p.io_bound = true;
    io_load_.fetch_add(1, std::memory_order_relaxed);
  }
  /// @private Processes bound here by their I/O, and plain spawns sent here
  /// that have not started yet (they may bind when they do).
  [[nodiscard]] std::uint32_t io_load() const noexcept { return io_load_.load(std::memory_order_relaxed); }
  /// @private A plain spawn sent here by node::place_spawn, counted until adopted.
  void count_placed() noexcept { io_load_.fetch_add(1, std::memory_order_relaxed); }
  /// @private A spawn placed here arrives (from now on it counts only if it
  /// binds), or its spawn failed.
  void unplace(detail::process* p) noexcept {
    p->placed = false;
    io_load_.fetch_sub(1, std::memory_order_relaxed);
  }
  /// @private
  [[nodiscard]] detail::process* allocate_block();
  /// @private
  std::unordered_map<std::uint64_t, detail::send_timer*>& send_timers() noexcept { return send_timers_; }
  /// @private Runs ready processes, due timers and I/O once; returns whether anything ran.
  bool run_batch();
  /// @private The thread's loop: batches, spin, sleep, until stop.
  void run_loop(int cpu, std::chrono::microseconds spin);
  /// @private
  void request_stop() noexcept;
  /// @private Destroys every process (node shutdown), on this scheduler's thread.
  void terminate_all() noexcept;
  /// @private Frees everything left once no thread runs (node shutdown).
  void final_cleanup() noexcept;
  /// @private
  void start_thread(int cpu, std::chrono::microseconds spin); // cpu -1: not pinned
  /// @private
  void join() noexcept;
  /// @private
  void set_order_seed(std::uint64_t seed) { if (seed != 0) rng_.emplace(seed); }
  /// @private
  void reclaim(detail::process* p) noexcept;
  /// @private
  void adopt(detail::process* p);
  /// @private The earliest pending timer's deadline, if any.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> next_deadline() const noexcept {
    if (auto* t = timers_.top())
      return t->deadline;
    return std::nullopt;
  }
  /// @private From a suspending process: the next ready process to resume
  /// directly (symmetric transfer), or noop_coroutine() to return to the loop.
  [[nodiscard]] std::coroutine_handle<> handoff() noexcept;

  // Signals (defined in signals.cpp, with everything else a signal does).
  /// @private Ends `p` with `why`: destroys its frame, tells its links and monitors.
  void exit_process(detail::process* p, const exit_reason& why) noexcept;
  /// @private Handles `p`'s queued signals; returns false if `p` died.
  bool process_signals(detail::process* p) noexcept;

private:
  // Read by other schedulers between steps: written only when it changes,
  // so that their cached copy of the line stays valid.
  static void store_if_changed(std::atomic<bool>& flag, bool on) noexcept {
    if (on != flag.load(std::memory_order_relaxed))
      flag.store(on, std::memory_order_relaxed);
  }
  // signals.cpp: one signal taking effect; ending a process at shutdown.
  bool handle_signal(detail::process* p, detail::signal* s) noexcept;
  void teardown(detail::process* p) noexcept;
  void destroy_frame(detail::process* p) noexcept;

  void step(detail::process* p) noexcept;
  void run(detail::process* p) noexcept;
  void cancel_send_timers(detail::process_extras& x) noexcept; // timers.cpp
  // The live list and its published length (node::process_count sums the
  // lengths: a node-wide counter took an atomic add on a shared line at
  // every spawn and exit, measured: docs/design.md).
  void add_live(detail::process* p) {
    p->live_index = static_cast<std::uint32_t>(live_.size());
    live_.push_back(p);
    live_len_.store(live_.size(), std::memory_order_relaxed);
  }
  void remove_live(detail::process* p) noexcept;
  // The next process to run: the queue's head, inline, when no new process
  // waits and no seed shuffles the order (a hop's path); else pop_ready_slow.
  [[nodiscard]] detail::process* pop_ready() noexcept {
    detail::process* p = ready_head_;
    if (spawned_ready_ != 0 || rng_ || p == nullptr) [[unlikely]]
      return pop_ready_slow();
    unlink_ready(p, nullptr);
    return p;
  }
  [[nodiscard]] detail::process* pop_ready_slow() noexcept { return take_ready(next_source()); }
  enum class ready_source : std::uint8_t { queue, newest, oldest };
  [[nodiscard]] ready_source next_source() const noexcept;
  [[nodiscard]] detail::process* peek_ready(ready_source from) const noexcept;
  [[nodiscard]] detail::process* take_ready(ready_source from) noexcept;
  // handoff's general case (a new process waits, or a seed is set), and
  // the rest of a hand-off once the process is out of the ready queue.
  [[nodiscard]] std::coroutine_handle<> handoff_slow() noexcept;
  [[nodiscard]] std::coroutine_handle<> handed_to(detail::process* q) noexcept;
  // Only the simple case is handed the thread: a runnable process with no
  // signal to handle first. Everything else goes through step().
  [[nodiscard]] bool may_hand_to(const detail::process* q) const noexcept {
    return handoffs_left_ != 0 && q != nullptr && q->state == detail::proc_state::runnable && !q->has_pending_signals();
  }
  // Takes `p`, which follows `prev` (null: the head), out of the ready queue.
  void unlink_ready(detail::process* p, detail::process* prev) noexcept {
    if (prev != nullptr)
      prev->ready_next = p->ready_next;
    else
      ready_head_ = p->ready_next;
    if (ready_tail_ == p)
      ready_tail_ = prev;
    uncount_ready(*p);
    p->ready_next = nullptr;
  }
  void uncount_ready(const detail::process& p) noexcept {
    --ready_count_;
    if (p.ready_as != detail::ready_kind::stays) {
      --movable_ready_;
      spawned_ready_ -= p.ready_as == detail::ready_kind::spawned ? 1 : 0;
    }
  }
  // The new processes' stack (fresh_, below): how many it holds, whether
  // the next pick takes its top, and making room for one more (false: no
  // memory for it, it goes to the queue instead).
  [[nodiscard]] std::size_t fresh_count() const noexcept { return fresh_.size() - fresh_bottom_; }
  [[nodiscard]] bool fresh_next() const noexcept {
    return ready_count_ - fresh_count() < queue_first_at && picks_since_queue_ < queue_every;
  }
  bool grow_fresh() noexcept;
  detail::process* pop_fresh(bool oldest) noexcept;
  // An emptied stack starts again at the front of its vector.
  void settle_fresh() noexcept {
    if (fresh_.size() == fresh_bottom_) {
      fresh_.clear();
      fresh_bottom_ = 0;
    }
  }
  bool drain_remote() noexcept;
  void enqueue(detail::process* p, detail::ready_kind why) noexcept;
  void append_ready(detail::process* p) noexcept {
    if (ready_tail_ != nullptr)
      ready_tail_->ready_next = p;
    else
      ready_head_ = p;
    ready_tail_ = p;
  }
  void shed_load() noexcept;
  // On a contended core: hands every ready process that may move to a
  // scheduler whose core is its own (scheduler.cpp).
  void give_away() noexcept;
  bool leave_with(detail::process* p) noexcept;
  bool compact_woken(detail::process* p) noexcept;
  // Whether the balance check sent p here within balance_again_ns of t:
  // compaction leaves it where it is.
  [[nodiscard]] static bool balanced_lately(const detail::process& p, std::int64_t t) noexcept {
    return p.extras != nullptr && p.extras->balanced_at_ns != 0 && t - p.extras->balanced_at_ns < balance_again_ns;
  }
  template <class May>
  std::size_t hand_over(scheduler* to, std::size_t want, std::size_t look, May may) noexcept;
  // Whether our new processes, which may bind on their first run, may go to
  // `to`: a lone one not where more processes are bound by their I/O than
  // here, a burst not where three more are (placement keeps schedulers
  // closer than that, so a fan-out of work is shed as before).
  [[nodiscard]] bool new_may_go(const scheduler& to) const noexcept {
    return to.io_load() <= io_load() + (spawned_ready_ == 1 ? 0 : 2);
  }
  bool follow_callee(detail::process* p) noexcept;
  bool follow_waker(detail::process* p) noexcept;
  void move_waiting(detail::process* p, scheduler* to) noexcept;
  void detach_ready(detail::process* p, detail::process* prev, scheduler* to) noexcept;
  void detach(detail::process* p, scheduler* to) noexcept;
  void check_balance() noexcept;
  [[nodiscard]] std::int64_t active_ns_at(std::int64_t t_ns) const noexcept;
  std::uint64_t step_woke_remote_ = 0; // when the current step last did, in ticks; 0: it did not
  void send_emigrant() noexcept;
  void send_ready(detail::process* p, detail::process* prev, scheduler* to) noexcept;
  static constexpr std::int64_t balance_period_ns = 10'000'000; // 10 ms
  static constexpr std::int64_t balance_again_ns = 1'000'000'000; // a process it moved stays 1 s
  unsigned steps_since_balance_ = 0;
  std::int64_t balance_checked_ns_ = 0;
  std::vector<std::int64_t> seen_active_ns_; // each scheduler's active time at the last check
  std::vector<bool> mostly_idle_;            // each scheduler, over the period before that check
  // Compaction of load (the BEAM's +scl): a scheduler that goes idle
  // looks once a period; if it was the least busy, and its work fits
  // beside another's, it hands that one its waiting processes
  // (scheduler.cpp, compact_load). Its state is below, away from the
  // fields a hop touches.
  bool compact_load(std::int64_t t_ns) noexcept;
  [[nodiscard]] scheduler* compact_target(std::int64_t t_ns, std::int64_t window, std::int64_t ours) const noexcept;
  // Its last batch ran its full length and left two or more ready: it has
  // a backlog now (compaction sends it nothing).
  [[nodiscard]] bool backlogged() const noexcept { return run_queue_len_.load(std::memory_order_relaxed) >= 2; }
  static constexpr std::size_t max_compact = 4096; // moved per look at most
  // Wake-ups in a row from the callee's scheduler before a caller follows.
  static constexpr std::uint32_t follow_after = 8;
  [[nodiscard]] bool can_migrate(const detail::process& p) const noexcept;
  void retract_hunger() noexcept;
  void publish_stats() noexcept {
    run_queue_len_.store(ready_count_, std::memory_order_relaxed);
  }
  bool fire_timers(std::chrono::steady_clock::time_point t_now) noexcept;
  void arm_pending_timers(std::chrono::steady_clock::time_point t_now) noexcept;
  void unlink_pending(detail::timer_node* t) noexcept {
    if (t->pending_prev != nullptr)
      t->pending_prev->pending_next = t->pending_next;
    else
      pending_timers_ = t->pending_next;
    if (t->pending_next != nullptr)
      t->pending_next->pending_prev = t->pending_prev;
    t->heap_index = detail::timer_node::npos;
  }
  void reap_zombies() noexcept;
  void sleep_until_work();
  // Picoseconds per tick of the cycle counter (scheduler.cpp, ticks()),
  // from the spin's clock readings (every 64 polls; an average of eight):
  // how long a spin woken between readings was idle, without a clock read
  // on the wake-up path. 0 until the first reading.
  std::int64_t ps_per_tick_ = 0;
  void time_ticks(std::int64_t ns, std::uint64_t counted) noexcept {
    if (counted == 0 || ns <= 0 || ns > 1'000'000'000'000)
      return;
    // At most 10 us a tick (a 100 kHz counter): a bogus reading cannot
    // make ns_of_ticks overflow.
    const auto ps = static_cast<std::int64_t>(std::min<std::uint64_t>(static_cast<std::uint64_t>(ns) * 1000 / counted, 10'000'000));
    ps_per_tick_ = ps_per_tick_ == 0 ? ps : ps_per_tick_ + (ps - ps_per_tick_) / 8;
  }
  // Ticks as nanoseconds; a count out of any period's range (a counter
  // out of step between cores, as a difference, is huge) saturates.
  [[nodiscard]] std::int64_t ns_of_ticks(std::int64_t counted) const noexcept {
    constexpr std::int64_t most = std::int64_t{1} << 40;
    return std::clamp(counted, -most, most) * ps_per_tick_ / 1000;
  }
  // Whether to skip the idle spin: another thread wanted this core at a
  // probe within the hold time (scheduler.cpp).
  [[nodiscard]] bool core_contended(std::chrono::steady_clock::time_point t) noexcept;
  static constexpr std::chrono::milliseconds contention_window{10};
  static constexpr std::chrono::milliseconds contention_hold{100};
  static constexpr std::chrono::microseconds contention_probe{20};
  std::chrono::steady_clock::time_point contention_checked_{};
  std::chrono::steady_clock::time_point spin_off_until_{};

  node& node_;
  unsigned index_;
  std::unique_ptr<detail::scheduler_io> io_;
  std::chrono::steady_clock::time_point wake_armed_{};

  // Ready queue: intrusive FIFO through process::ready_next.
  detail::process* ready_head_ = nullptr;
  detail::process* ready_tail_ = nullptr;
  std::size_t ready_count_ = 0;
  std::size_t movable_ready_ = 0; // in the queue, neither bound nor `stays`
  std::size_t spawned_ready_ = 0; // of which not run yet
  // At most this many processes go to a hungry scheduler at once.
  static constexpr std::size_t max_shed = 1024;
  // After a shed that found nothing movable, steps until the next try.
  static constexpr unsigned shed_retry_steps = 256;
  unsigned shed_pause_ = 0;
  // A process that suspends hands the thread straight to the next ready
  // one, skipping the loop; bounded so I/O, timers and other cores' wake-ups
  // are still looked at.
  static constexpr unsigned handoff_budget = 16;
  unsigned handoffs_left_ = handoff_budget;
  std::optional<std::mt19937_64> rng_; // deterministic mode: seeded pick order

  // Processes woken or spawned from other threads: a LIFO stack, drained
  // whole. On a cache line of its own, away from the owner's hot fields
  // (measured: cross-core ping-pong was bimodal, 0.34 or 1.25 us, by the
  // scheduler object's address).
  alignas(64) std::atomic<detail::process*> remote_ready_{nullptr};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> hungry_{false};
  std::atomic<bool> idle_once_{false}; // its loop has run and found no work (hungry by then)
  std::atomic<bool> stop_{false};
  alignas(64) std::size_t io_pending_ = 0;

  detail::timer_heap timers_;
  detail::timer_node* pending_timers_ = nullptr; // add_timer_after, until the next batch
  std::unordered_map<std::uint64_t, detail::send_timer*> send_timers_;

  // Asio is polled every batch while processes await its operations
  // (io_pending_), else every 64 batches (for handlers posted by other
  // code): a poll with the reactor armed is an epoll_wait system call.
  unsigned batches_since_poll_ = 0;

  std::vector<detail::process*> live_;
  std::vector<detail::process*> zombies_;
  detail::process* free_blocks_ = nullptr;
  std::size_t free_count_ = 0;
  detail::process* spill_blocks_ = nullptr; // filling up to a batch for the node
  // Free blocks kept here before any go to the node. Exits are reaped once
  // a batch (of up to 256 steps), so a batch's spawns outrun its frees:
  // with one node batch (64) kept, two schedulers traded batches through
  // the node, each spawning into blocks still in the other's cache
  // (skynet at two schedulers: allocate_block took 4x its time at one).
  static constexpr std::size_t kept_blocks = 4 * 64; // four node::block_batch
  std::size_t spill_count_ = 0;
  static constexpr std::chrono::microseconds zombie_retry{100};
  std::atomic<std::uint64_t> serial_{1};
  std::uint64_t local_ref_ = 0;
  std::thread thread_;
  std::int64_t compact_checked_ns_ = 0;       // compact_load's last look
  // What compact_load read of each scheduler at its last look, and what
  // each did in the period before it.
  struct compact_reading {
    std::int64_t active_seen = 0; // its active time then
    std::int64_t link_seen = 0;   // its link time then
    std::int64_t tail_seen = 0;   // its link tails then
    std::int64_t busy = 0;        // active in the period
    std::int64_t link = 0;        // of which links
    std::int64_t tail = 0;        // and tails
  };
  std::vector<compact_reading> compact_read_;
  scheduler* compact_rest_to_ = nullptr;      // where a move that left some behind went,
  std::int64_t compact_rest_until_ns_ = 0;    // and until when the rest follow it there
  scheduler* compact_woken_to_ = nullptr;     // where the processes a look found being woken go,
  std::size_t compact_woken_left_ = 0;        // how many of them are still to go,
  std::int64_t compact_woken_at_ns_ = 0;      // and when that look was
  std::uint64_t compact_woken_at_ticks_ = 0;
  // When compact_load last handed it work (written by the sender): it
  // hands none away by compaction for `balance_again_ns` after.
  std::atomic<std::int64_t> compacted_in_ns_{0};

  // Counters for stats(), written by the owner thread, read by anyone.
  alignas(64) std::atomic<std::int64_t> active_ns_{0};
  // Of it, the active periods that were one batch ending in a step that
  // woke a process of another scheduler: the links of a chain, which take
  // turns with the links that woke them (compact_target). Counted up to
  // the wake-up; what followed it, the tail, ran beside the next link.
  std::atomic<std::int64_t> link_ns_{0};
  std::atomic<std::int64_t> link_tail_ns_{0};
  std::atomic<std::int64_t> active_since_ns_{0}; // 0 while idle
  std::atomic<std::int64_t> started_ns_{0};
  std::atomic<std::size_t> run_queue_len_{0};
  std::atomic<std::size_t> live_len_{0};
  std::atomic<std::uint64_t> migrated_out_{0};
  std::atomic<std::uint64_t> compacted_out_{0}; // of them, by compact_load
  std::atomic<std::uint64_t> migrated_in_{0};
  std::atomic<bool> contended_{false};
  std::atomic<bool> leaving_{false};
  std::atomic<int> cpu_{-1}; // where run_loop pinned its thread (once, at its start)
  // Changed rarely (a process binds for I/O, such a one exits, a spawn is
  // placed here): read by spawners choosing where to start one.
  std::atomic<std::uint32_t> io_load_{0}; // see io_load()

  // New unbound processes that have not run yet, on a node with threads
  // (all of spawned_ready_ but those a full stack could not take): a stack,
  // its top at the back, not the queue. The newest runs first, so a
  // process that spawns work and waits for it has its children run before
  // their cousins, and a tree of spawns runs depth first: its live
  // processes stay few and in cache (skynet kept its million alive at
  // once, 390 MB, breadth first). A shed takes the oldest, from the
  // bottom: the roots of the largest subtrees (work stealing as in Cilk).
  // The queue still gets every `queue_every`-th pick, and every pick while
  // it holds `queue_first_at` or more, so the processes it holds (woken,
  // yielded) are not starved, and parents woken by their children do not
  // pile up (docs/design.md, "New processes run newest first").
  std::vector<detail::process*> fresh_;
  std::size_t fresh_bottom_ = 0; // fresh_[fresh_bottom_ ..] are in the stack
  bool fresh_first_ = false;     // set when the thread starts: not on a deterministic node
  unsigned picks_since_queue_ = 0;
  static constexpr std::size_t queue_first_at = 16;
  static constexpr unsigned queue_every = 64;
  // (Last in the object: placed among the fields above, it moved those
  // after it, and ring_hop_ns read 4-12% slower.)

  // Set by a balance check that found this scheduler overloaded and nothing
  // ready that it could give (a pool's workers run by hand-off from their
  // callers, so they are seldom in the queue): the next server to reach its
  // fair-share yield goes to `emigrate_to_` (note_busy_server, send_emigrant).
  scheduler* emigrate_to_ = nullptr;
  detail::process* emigrant_ = nullptr;
  std::uint64_t emigrant_id_ = 0;
};

} // namespace otp
