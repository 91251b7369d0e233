// SPDX-License-Identifier: Apache-2.0
#include "otp/node.hpp"

#include "otp/detail/core_watch.hpp"
#include "otp/detail/cpus.hpp"
#include "otp/detail/pool.hpp"
#include "otp/detail/runtime.hpp"
#include "otp/process.hpp"
#include "otp/receive.hpp"
#include "otp/scheduler.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <future>
#include <memory>
#include <thread>

namespace otp {

node::node(node_options o) : opts_(o), cpus_(detail::allowed_cpus()) {
  unsigned n = opts_.schedulers;
  if (opts_.deterministic)
    n = 1;
  else if (n == 0)
    n = detail::default_scheduler_count(cpus_.size(), detail::cgroup_cpu_limit());
  if (n > 255)
    throw std::invalid_argument("node: at most 255 schedulers (asked for " + std::to_string(n) + ")");
  manual_now_ = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  if (opts_.leave_shared_cores && !opts_.deterministic && n > 1)
    watch_ = detail::core_watch::open(n); // before the threads, which attach to it
  schedulers_.reserve(n);
  for (unsigned i = 0; i < n; ++i)
    schedulers_.push_back(std::make_unique<scheduler>(*this, i));
  if (opts_.deterministic) {
    schedulers_[0]->set_order_seed(opts_.seed);
  } else {
    // Scheduler i on the i-th CPU this thread may use: taskset's, or a
    // container's cpuset (docs/design.md, "The CPUs a node uses").
    for (unsigned i = 0; i < n; ++i)
      schedulers_[i]->start_thread(opts_.pin_threads && !cpus_.empty() ? cpus_[i % cpus_.size()] : -1, opts_.spin);
    // Every scheduler is running, idle and hungry before the first spawn:
    // else work spawned at once found no scheduler hungry yet, and was not
    // shed until the threads had run their loops (docs/design.md).
    for (auto& s : schedulers_)
      s->wait_until_idle_once();
  }
}

node::~node() {
  shutdown();
  // After the processes: their exit hooks may still have used a service.
  for (auto it = service_deleters_.rbegin(); it != service_deleters_.rend(); ++it)
    (*it)();
}

std::size_t detail::next_service_slot() {
  static std::atomic<std::size_t> next{0};
  const std::size_t slot = next.fetch_add(1);
  if (slot >= max_services)
    throw std::logic_error("node::service: more than " + std::to_string(max_services) + " service types");
  return slot;
}

namespace {
constexpr std::size_t chunk_bytes = node::block_batch * sizeof(detail::process);
} // namespace

void detail::chunk_deleter::operator()(process* chunk) const noexcept {
  std::destroy_n(chunk, node::block_batch);
  give_pages(chunk, chunk_bytes);
}

detail::process* node::allocate_chunk() {
  // Built outside the lock: it may map fresh pages.
  auto* blocks = static_cast<detail::process*>(detail::take_pages(chunk_bytes));
  std::uninitialized_value_construct_n(blocks, block_batch);
  std::unique_ptr<detail::process[], detail::chunk_deleter> chunk(blocks);
  // Each chunk hands out its blocks from another page offset (its colour),
  // wrapping round: every chunk starts on a fresh page, and the first
  // blocks of two chunks (the first processes of two schedulers) sat at the
  // same low 12 bits, where a load from one waits on stores to the other
  // (4K aliasing; a ping-pong between the first two processes of a node
  // took 44 ns a round trip, 43 with colours). 11 is odd: consecutive
  // chunks take different colours.
  constexpr std::size_t colours = std::max<std::size_t>(1, std::min(block_batch, 4096 / sizeof(detail::process)));
  // (Two chunks made at once may share a colour: harmless.)
  const std::size_t chunk_index = blocks_allocated_.load(std::memory_order_relaxed) / block_batch;
  const std::size_t first = chunk_index * 11 % colours;
  for (std::size_t k = 0; k < block_batch; ++k) {
    const std::size_t i = (first + k) % block_batch;
    chunk[i].remote_next = k + 1 < block_batch ? &chunk[(i + 1) % block_batch] : nullptr;
  }
  detail::process* head = &chunk[first];
  {
    std::lock_guard lock(blocks_lock_);
    block_chunks_.push_back(std::move(chunk));
  }
  blocks_allocated_.fetch_add(block_batch, std::memory_order_relaxed);
  return head;
}

detail::process* node::take_block_batch(std::size_t& count) {
  count = block_batch;
  {
    std::lock_guard lock(blocks_lock_);
    if (!free_batches_.empty()) {
      detail::process* b = free_batches_.back();
      free_batches_.pop_back();
      return b;
    }
  }
  return allocate_chunk();
}

void node::give_block_batch(detail::process* batch) noexcept {
  std::lock_guard lock(blocks_lock_);
  try {
    free_batches_.push_back(batch);
  } catch (...) {
    // No room to record the batch: its blocks stay allocated, unused.
  }
}

detail::process* node::take_block() {
  detail::process* p = nullptr;
  {
    std::lock_guard lock(blocks_lock_);
    if (loose_blocks_ == nullptr && !free_batches_.empty()) {
      loose_blocks_ = free_batches_.back();
      free_batches_.pop_back();
    }
    if (loose_blocks_ != nullptr)
      p = std::exchange(loose_blocks_, loose_blocks_->remote_next);
  }
  if (p == nullptr) {
    p = allocate_chunk();
    std::lock_guard lock(blocks_lock_);
    // The rest of the chunk serves the next foreign spawns.
    detail::process* rest = std::exchange(p->remote_next, nullptr);
    while (rest != nullptr) {
      detail::process* next = rest->remote_next;
      rest->remote_next = loose_blocks_;
      loose_blocks_ = rest;
      rest = next;
    }
  }
  p->remote_next = nullptr;
  return p;
}

bool node::begin_foreign_spawn() noexcept {
  foreign_spawns_.fetch_add(1, std::memory_order_seq_cst);
  if (!stopping_.load(std::memory_order_seq_cst))
    return true;
  foreign_spawns_.fetch_sub(1, std::memory_order_seq_cst);
  return false;
}

scheduler& node::pick_scheduler() noexcept {
  unsigned i = round_robin_.fetch_add(1, std::memory_order_relaxed);
  return *schedulers_[i % schedulers_.size()];
}

// A process that makes a socket (or asks for its scheduler) is bound there
// for life, and it does so on its first run, before any shed or balance
// check could move it: where it starts is where its I/O stays. Started where
// the spawner runs, every connection an acceptor's supervisor started landed
// on one scheduler (50 of 50, with 2 or 4 schedulers). So a plain spawn
// starts on the scheduler with the fewest processes bound by their I/O (and
// spawns sent there not started yet) when that is two or more fewer than
// here: a spawn and a wait for it stay local, an acceptor alone does not
// push its children away, and connections alternate between schedulers.
// Being bound by spawn_opt's scheduler is the user's placement, and alone
// does not count. Measured: docs/design.md, "Where a new process starts".
scheduler& node::place_spawn(scheduler& from) noexcept {
  const std::uint32_t ours = from.io_load();
  const bool leaving = from.leaving(); // then any other that is not, else it moves at its first step
  if (ours < 2 && !leaving)
    return from; // spawn_frame looks first
  const auto n = static_cast<unsigned>(schedulers_.size());
  scheduler* best = &from;
  std::uint32_t least = leaving ? any_load : ours - 1; // a move needs two fewer
  for (unsigned k = 1; k < n; ++k) {
    scheduler* s = schedulers_[(from.index() + k) % n].get();
    if (const std::uint32_t l = s->io_load(); l < least && !s->leaving()) {
      least = l;
      best = s;
    }
  }
  if (best != &from)
    best->count_placed();
  return *best;
}

// A core is shared from the moment other threads take 30% of it, and stays
// so until they take less than 15%; a core that is not shared is free. On
// these 2-core machines a server's own core read 0-5% and the load
// generator's core 90-100% (docs/design.md, "Leaving a shared core").
namespace {
constexpr int shared_from_permille = 300;
constexpr int shared_until_permille = 150;
} // namespace

void node::attach_to_watch(unsigned i) noexcept {
  if (watch_ != nullptr)
    watch_->attach(i);
}

double node::others_on_core(unsigned i) const noexcept {
  const int p = watch_ != nullptr ? watch_->others_permille(i) : -1;
  return p < 0 ? -1.0 : p / 1000.0;
}

// Measured, and not shared: work may go there (watch_ is set).
bool node::core_free(const scheduler& s) const noexcept {
  return watch_->others_permille(s.index()) >= 0 && !s.contended();
}

// Sets each scheduler's `contended` (instead of its own yield probe) and its
// `leaving` (the watch exists only on a node that leaves shared cores). A
// shared core takes no work even when no core is free: with every core
// shared (a server's client on one core, the last thread that used the
// other not yet aged out of its reading), hungry schedulers passed kvstore's
// connections back and forth, 200-800 moves in a 0.2 s benchmark row, at
// 0.73-0.85x of one scheduler (docs/design.md, "Leaving a shared core").
void node::look_at_cores() noexcept {
  if (watch_ == nullptr || !watch_->sample())
    return;
  for (const auto& s : schedulers_) {
    const int p = watch_->others_permille(s->index());
    s->set_contended(p >= shared_from_permille || (s->contended() && p >= shared_until_permille));
    s->set_leaving(s->contended() && !stopping());
  }
}

scheduler* node::uncontended(const scheduler& from) noexcept {
  if (watch_ == nullptr)
    return nullptr;
  const auto n = static_cast<unsigned>(schedulers_.size());
  scheduler* best = nullptr;
  for (unsigned k = 1; k < n; ++k) {
    scheduler* s = schedulers_[(from.index() + k) % n].get();
    // Not leaving either: look_at_cores sets the two flags one after the other.
    if (core_free(*s) && !s->leaving() && (best == nullptr || s->io_load() < best->io_load()))
      best = s;
  }
  return best;
}

scheduler* node::claim_hungry(const scheduler& from, std::uint32_t most) noexcept {
  const auto n = static_cast<unsigned>(schedulers_.size());
  // The one with the fewest processes bound by their I/O (where the
  // sockets are, the load is); among equals, from the next one on, so that
  // shedders do not all pick the same one.
  scheduler* best = nullptr;
  std::uint32_t least = most;
  for (unsigned k = 1; k < n; ++k) {
    scheduler* s = schedulers_[(from.index() + k) % n].get();
    if (!s->hungry() || s->leaving()) // it went to sleep hungry, then was found leaving
      continue;
    if (const std::uint32_t l = s->io_load(); best == nullptr ? l <= least : l < least) {
      least = l;
      best = s;
    }
  }
  return best != nullptr && best->take_hunger() ? best : nullptr;
}

std::size_t node::process_count() const noexcept {
  std::size_t n = 0;
  for (const auto& s : schedulers_)
    n += s->process_count();
  return n;
}

std::vector<scheduler_stats> node::statistics() const {
  std::vector<scheduler_stats> all;
  all.reserve(schedulers_.size());
  for (const auto& s : schedulers_)
    all.push_back(s->stats());
  return all;
}

std::chrono::steady_clock::time_point node::now() const noexcept {
  return opts_.deterministic ? manual_now_ : std::chrono::steady_clock::now();
}

void node::exit(const pid& to, const exit_reason& why) { otp::exit(to, why); }

std::size_t node::run_until_idle() {
  if (!opts_.deterministic)
    throw std::logic_error("node::run_until_idle is only for deterministic nodes");
  auto* prev = std::exchange(detail::this_thread.sched, schedulers_[0].get());
  std::size_t steps = 0;
  try {
    while (schedulers_[0]->run_batch())
      ++steps;
  } catch (...) {
    detail::this_thread.sched = prev;
    throw;
  }
  detail::this_thread.sched = prev;
  return steps;
}

void node::advance(std::chrono::steady_clock::duration d) {
  if (!opts_.deterministic)
    throw std::logic_error("node::advance is only for deterministic nodes");
  const auto target = manual_now_ + d;
  run_until_idle();
  // Fire due timers one deadline at a time, letting processes react in
  // between, so a timer set by a reaction also fires if it falls due.
  for (;;) {
    auto next = schedulers_[0]->next_deadline();
    if (!next || *next > target)
      break;
    if (*next > manual_now_)
      manual_now_ = *next;
    run_until_idle();
  }
  manual_now_ = target;
  run_until_idle();
}

result<exit_reason> node::wait(const pid& p) {
  if (detail::this_thread.sched != nullptr)
    return error{errc::invalid_argument, "node::wait blocks its thread: call it from outside the node's schedulers"};
  if (!p)
    return exit_reason::noproc();
  auto done = std::make_shared<std::promise<exit_reason>>();
  auto fut = done->get_future();
  spawn_opt({.scheduler = p.scheduler_index() < scheduler_count() ? p.scheduler_index() : 0},
            [done, p]() -> task<void> {
              const monitor_ref ref = monitor(p);
              auto down = receive<down_msg>(down_of{ref});
              down_msg d = co_await down;
              done->set_value(d.reason);
            });
  if (opts_.deterministic) {
    run_until_idle();
    if (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
      return error{errc::timeout, "node::wait: the node went idle while " + p.to_string() + " is alive"};
  }
  try {
    return fut.get();
  } catch (const std::future_error&) {
    // The helper was destroyed by a shutdown before `p` exited.
    return error{errc::node_stopped, "node::wait: the node shut down while waiting for " + p.to_string()};
  }
}

std::optional<otp::process_info> node::info(const pid& p) {
  if (opts_.deterministic || detail::this_thread.sched != nullptr) {
    detail::process* t = p.control_block();
    auto* s = detail::this_thread.sched;
    if (opts_.deterministic && s == nullptr)
      s = schedulers_[0].get();
    if (t == nullptr || t->home() != s)
      return std::nullopt;
    if (t->id.load(std::memory_order_relaxed) != p.id() || t->state >= detail::proc_state::exiting)
      return std::nullopt;
    return detail::snapshot(*t);
  }
  if (!p || p.scheduler_index() >= scheduler_count())
    return std::nullopt;
  auto done = std::make_shared<std::promise<std::optional<otp::process_info>>>();
  auto fut = done->get_future();
  // A helper on p's scheduler reads the control block on its owner thread.
  spawn_opt({.scheduler = p.scheduler_index()}, [done, p]() -> task<void> {
    auto r = co_await get_process_info(p);
    done->set_value(std::move(r));
  });
  try {
    return fut.get();
  } catch (const std::future_error&) {
    return std::nullopt; // the node shut down before the helper answered
  }
}

void node::shutdown() {
  if (shut_down_)
    return;
  shut_down_ = true;
  stopping_.store(true, std::memory_order_seq_cst);
  // A spawn from another thread that got past its check finishes its
  // enqueue first, so the process is torn down below rather than lost.
  while (foreign_spawns_.load(std::memory_order_seq_cst) != 0)
    std::this_thread::yield();
  if (opts_.deterministic) {
    schedulers_[0]->terminate_all();
    schedulers_[0]->final_cleanup();
    return;
  }
  // Each scheduler destroys its own processes on its own thread: their
  // frames may hold Asio objects bound to that thread's io_context.
  std::vector<std::future<void>> done;
  for (auto& s : schedulers_) {
    auto pr = std::make_shared<std::promise<void>>();
    done.push_back(pr->get_future());
    scheduler* sp = s.get();
    asio::post(sp->context(), [sp, pr] {
      sp->terminate_all();
      pr->set_value();
    });
  }
  for (auto& f : done)
    f.wait();
  for (auto& s : schedulers_)
    s->request_stop();
  for (auto& s : schedulers_)
    s->join();
  for (auto& s : schedulers_)
    s->final_cleanup();
}

} // namespace otp
