// SPDX-License-Identifier: Apache-2.0
// otp/node.hpp - a runtime instance: its schedulers, its processes, its clock.
#pragma once

#include "otp/detail/spawn.hpp"
#include "otp/detail/spin_lock.hpp"
#include "otp/error.hpp"
#include "otp/exit_reason.hpp"
#include "otp/pid.hpp"
#include "otp/task.hpp"

#include <array>
#include <atomic>
#include <functional>
#include <chrono>
#include <coroutine>
#include <future>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace otp {

/// How a node runs its schedulers.
struct node_options {
  /// Number of schedulers; 0 means one per CPU that the thread making the
  /// node may run on (its affinity mask, which `taskset` and a container's
  /// cpuset set), and no more than its cgroup's CPU quota, rounded down but
  /// at least one (`docker --cpus=2.5` gives 2), as OTP 25's default
  /// schedulers online.
  unsigned schedulers = 0;
  /// Pin scheduler thread i to the i-th of those CPUs (wrapping round when
  /// there are more schedulers than CPUs); scheduler_stats::cpu says where.
  bool pin_threads = true;
  /// How long an idle scheduler polls for work before it sleeps. Waking a
  /// sleeping thread costs tens of microseconds; polling keeps cross-core
  /// messages fast, and idle cores still sleep after this long. A scheduler
  /// whose core another busy thread wants skips the spin while that lasts
  /// (scheduler_stats::contended).
  std::chrono::microseconds spin{50};
  /// A scheduler whose core another busy thread wants (a load generator, a
  /// second server on the machine: other threads take 30% of the core or
  /// more, by the kernel's accounting) takes no work from the others while
  /// that lasts, and hands its movable processes to one whose core is free
  /// if there is one: the node keeps off a core its neighbours need
  /// (docs/design.md, "Leaving a shared core"). Needs Linux and pinned
  /// threads. Off by default: it is right when that thread serves the node
  /// (its clients), and wrong beside unrelated work (a build), where the
  /// node would gather its work on fewer cores.
  bool leave_shared_cores = false;
  /// Deterministic mode: one scheduler and no thread; the caller drives it
  /// with run_until_idle() and advance(), on a manual clock.
  bool deterministic = false;
  /// Deterministic mode: 0 resumes ready processes in FIFO order; any other
  /// value picks among them in an order drawn from this seed.
  std::uint64_t seed = 0;
};

/// Options of spawn_opt (cf. erlang:spawn_opt/2).
struct spawn_options {
  /// The scheduler to bind the process to, for life (Erlang's bound
  /// processes). Default: unbound; it starts on the caller's scheduler (round
  /// robin when the caller is not a process) and moves where there is room.
  std::optional<unsigned> scheduler{};
  /// Link the caller and the new process atomically (needs a calling process).
  bool link = false;
  /// Monitor the new process atomically (needs a calling process).
  bool monitor = false;
  /// @private Monitor under this reference, made in advance with
  /// detail::make_ref so that the new process can be handed it (behaviours
  /// pass it as the tag of the start's reply). Implies `monitor`.
  std::optional<monitor_ref> monitor_as{};
};

/// What spawn_opt returns: the pid, and the monitor when one was asked for.
struct spawn_result {
  otp::pid pid;
  monitor_ref monitor;
};

/// What spawn_watch returns: the pid and a future for its exit reason.
struct watched_process {
  otp::pid pid;
  std::future<exit_reason> exit;
};

/// A snapshot of one process (cf. erlang:process_info/1).
struct process_info {
  enum class status_t { runnable, running, waiting, suspended, exiting };
  otp::pid pid;
  status_t status = status_t::runnable;
  std::size_t message_queue_len = 0;
  std::vector<otp::pid> links;
  std::vector<monitor_ref> monitors;     // monitors the process holds
  std::vector<otp::pid> monitored_by;
  unsigned scheduler = 0; // the one it runs on now
  bool trap_exit = false;
};

struct scheduler_stats;

namespace detail {
class core_watch;
inline constexpr std::size_t max_services = 8;
// Hands out the slots of node::service, one per service type.
std::size_t next_service_slot();
spawn_result spawn_frame(node* n, const spawn_options& o, std::coroutine_handle<> top,
                         std::shared_ptr<std::promise<exit_reason>> watcher = {});
// Ends a chunk of control blocks with its node: destroys them, gives back their pages.
struct chunk_deleter {
  void operator()(process* chunk) const noexcept;
};
} // namespace detail

/// A runtime instance: N schedulers (one io_context and one pinned thread
/// each) and the processes bound to them.
///
/// Destroying a node shuts it down: every process is destroyed on its own
/// scheduler's thread (its destructors run), every frame and message is
/// freed, and every thread is joined. Pids must not be used after that.
///
/// @par Thread safety
/// spawn, send and exit are safe from any thread. In deterministic mode the
/// node runs on the thread that calls run_until_idle() / advance().
class node {
public:
  explicit node(node_options o = {});
  node(const node&) = delete;
  node& operator=(const node&) = delete;
  ~node();

  /// Spawns `f(args...)` as a process; arguments are taken by value.
  template <class F, class... Args>
  pid spawn(F&& f, Args&&... args) {
    return spawn_opt({}, std::forward<F>(f), std::forward<Args>(args)...).pid;
  }

  /// Spawns `f(args...)` with options (scheduler, link, monitor).
  template <class F, class... Args>
  spawn_result spawn_opt(const spawn_options& o, F&& f, Args&&... args) {
    auto t = detail::make_process_frame(std::forward<F>(f), std::forward<Args>(args)...);
    return detail::spawn_frame(this, o, t.release());
  }

  /// Spawns `f(args...)` and returns a future for its exit reason, attached
  /// atomically: unlike wait(), it cannot miss an early exit. For threads
  /// that are not processes (main, tests). At shutdown a process still
  /// alive reports `killed`.
  template <class F, class... Args>
  watched_process spawn_watch(const spawn_options& o, F&& f, Args&&... args) {
    auto t = detail::make_process_frame(std::forward<F>(f), std::forward<Args>(args)...);
    auto pr = std::make_shared<std::promise<exit_reason>>();
    auto fut = pr->get_future();
    auto r = detail::spawn_frame(this, o, t.release(), std::move(pr));
    return {r.pid, std::move(fut)};
  }

  /// Sends an exit signal from outside any process (cf. erlang:exit/2).
  void exit(const pid& to, const exit_reason& why);

  /// Blocks the calling (non-scheduler) thread until `p` exits; returns its
  /// reason, or `noproc` if it was already gone (it monitors `p`, so an
  /// exit before the monitor is set reads as noproc: see spawn_watch). In deterministic mode, runs
  /// the node until `p` exits, or fails with `timeout` if the node goes idle first.
  result<exit_reason> wait(const pid& p);

  /// Returns a snapshot of `p`, or nothing if it is not alive. From a
  /// non-scheduler thread this waits for `p`'s scheduler to answer.
  std::optional<otp::process_info> info(const pid& p);

  /// Returns the number of schedulers.
  [[nodiscard]] unsigned scheduler_count() const noexcept {
    return static_cast<unsigned>(schedulers_.size());
  }
  /// Returns scheduler `i` (its io_context serves the Asio objects of its processes).
  [[nodiscard]] scheduler& get_scheduler(unsigned i) { return *schedulers_.at(i); }
  /// Returns every scheduler's counters (utilisation, run queue, migrations).
  [[nodiscard]] std::vector<scheduler_stats> statistics() const;
  /// Returns the number of live processes (exact when the node is quiescent).
  [[nodiscard]] std::size_t process_count() const noexcept;

  /// Deterministic mode: runs until no process is ready and no I/O is
  /// pending completion; returns the number of steps taken.
  std::size_t run_until_idle();
  /// Deterministic mode: moves the manual clock forward, firing the timers
  /// that fall due in order, and runs until idle.
  void advance(std::chrono::steady_clock::duration d);
  /// Returns the node's clock (manual in deterministic mode).
  [[nodiscard]] std::chrono::steady_clock::time_point now() const noexcept;
  [[nodiscard]] bool deterministic() const noexcept { return opts_.deterministic; }

  /// Destroys every process and stops every thread; idempotent.
  void shutdown();

  /// Returns the node's instance of `T`, a service of a layer above the
  /// runtime (the registry), created on first use and destroyed with the
  /// node after its processes. Safe from any thread; lock-free once created.
  template <class T>
  T& service() {
    static const std::size_t slot = detail::next_service_slot();
    if (void* p = services_[slot].load(std::memory_order_acquire))
      return *static_cast<T*>(p);
    std::lock_guard lock(services_mutex_);
    if (void* p = services_[slot].load(std::memory_order_relaxed))
      return *static_cast<T*>(p);
    auto* created = new T(*this);
    service_deleters_.push_back([created] { delete created; });
    services_[slot].store(created, std::memory_order_release);
    return *created;
  }

  /// @private
  [[nodiscard]] bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
  /// @private Control blocks move between the schedulers' free lists in
  /// batches of this many, through the node.
  static constexpr std::size_t block_batch = 64;
  /// @private A batch of free blocks (a list through remote_next); `count` gets its length.
  [[nodiscard]] detail::process* take_block_batch(std::size_t& count);
  /// @private Takes back a batch of exactly block_batch free blocks.
  void give_block_batch(detail::process* batch) noexcept;
  /// @private One block, for a spawn from a thread that is not a scheduler.
  [[nodiscard]] detail::process* take_block();
  /// @private Number of control blocks ever allocated (flat in a steady state).
  [[nodiscard]] std::size_t blocks_allocated() const noexcept {
    return blocks_allocated_.load(std::memory_order_relaxed);
  }
  /// @private Brackets a spawn from a thread that is not one of this node's
  /// schedulers: shutdown waits for those in flight, so none lands after it.
  [[nodiscard]] bool begin_foreign_spawn() noexcept;
  /// @private
  void end_foreign_spawn() noexcept { foreign_spawns_.fetch_sub(1, std::memory_order_seq_cst); }
  /// @private
  [[nodiscard]] scheduler& pick_scheduler() noexcept;
  /// @private Whether some scheduler waits for work (cheap: one shared load).
  [[nodiscard]] bool anyone_hungry() const noexcept { return hungry_.value.load(std::memory_order_relaxed) != 0; }
  /// @private Where a plain spawn from a process on `from` starts: there,
  /// unless another scheduler holds two or more fewer processes bound by I/O.
  [[nodiscard]] scheduler& place_spawn(scheduler& from) noexcept;
  /// @private A hungry scheduler other than `from` with at most `most`
  /// processes bound by I/O (the fewest first), its hunger claimed; or null.
  [[nodiscard]] scheduler* claim_hungry(const scheduler& from, std::uint32_t most = any_load) noexcept;
  /// @private For a scheduler leaving its core: the one with the fewest
  /// processes bound by their I/O among those whose core is their own, or null.
  [[nodiscard]] scheduler* uncontended(const scheduler& from) noexcept;
  /// @private From scheduler `i`'s thread as it starts (leave_shared_cores).
  void attach_to_watch(unsigned i) noexcept;
  /// @private Whether the node measures what other threads take of its
  /// schedulers' cores (leave_shared_cores, on Linux): then look_at_cores
  /// sets scheduler_stats::contended, not the schedulers' yield probe.
  [[nodiscard]] bool watches_cores() const noexcept { return watch_ != nullptr; }
  /// @private From an idle scheduler: once a period, measures what other
  /// threads take of each scheduler's core, and sets which ones are
  /// contended and which leave their core.
  void look_at_cores() noexcept;
  /// @private scheduler_stats::others_on_core.
  [[nodiscard]] double others_on_core(unsigned i) const noexcept;
  /// @private
  static constexpr std::uint32_t any_load = ~std::uint32_t{0};
  /// @private
  void count_hungry(int delta) noexcept {
    hungry_.value.fetch_add(static_cast<unsigned>(delta), std::memory_order_relaxed);
  }
  /// @private
  [[nodiscard]] std::uint64_t next_foreign_ref() noexcept {
    return foreign_ref_.fetch_add(1, std::memory_order_relaxed);
  }

private:
  node_options opts_;
  std::vector<int> cpus_; // the constructing thread's affinity mask: where schedulers are pinned
  std::vector<std::unique_ptr<scheduler>> schedulers_;
  std::unique_ptr<detail::core_watch> watch_; // leave_shared_cores only
  [[nodiscard]] bool core_free(const scheduler& s) const noexcept;
  std::atomic<unsigned> round_robin_{0};
  // Read by every busy scheduler between steps; written only when one goes
  // idle or is given work: on a line of its own.
  struct alignas(64) line_of_its_own {
    std::atomic<unsigned> value{0};
  } hungry_;
  std::atomic<bool> stopping_{false};
  bool shut_down_ = false;
  std::atomic<std::uint64_t> foreign_ref_{1};
  std::chrono::steady_clock::time_point manual_now_{};

  std::recursive_mutex services_mutex_; // a service may create another in its constructor
  std::array<std::atomic<void*>, detail::max_services> services_{};
  std::vector<std::function<void()>> service_deleters_;

  [[nodiscard]] detail::process* allocate_chunk(); // takes blocks_lock_ to record it

  std::atomic<unsigned> foreign_spawns_{0};
  detail::spin_lock blocks_lock_; // guards the three below
  std::vector<std::unique_ptr<detail::process[], detail::chunk_deleter>> block_chunks_;
  std::vector<detail::process*> free_batches_; // each block_batch long
  detail::process* loose_blocks_ = nullptr;    // fewer than a batch, for foreign spawns
  std::atomic<std::size_t> blocks_allocated_{0};
};

} // namespace otp
