// SPDX-License-Identifier: Apache-2.0
// bench/otp_bench - this library's side of the side-by-side benchmarks.
// The same programs exist in bench/erlang/otp_bench.erl and bench/caf/caf_bench.cpp;
// bench/run.py runs all three and reports the ratios.
//
// usage: otp_bench NAME     prints "RESULT <bench> <value> <unit>" lines
//        otp_bench --list   prints the names it knows
#include "otp/otp.hpp"
#include "behaviours/gen_server.hpp"
#include "otp/detail/cpus.hpp"
#include "otp/detail/pool.hpp"
#include "otp/logger.hpp"
#include "registry/registry.hpp"
#include "supervisor/supervisor.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

double ns_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::nano>(clock_type::now() - t0).count();
}

void result(const char* name, double value, const char* unit) {
  std::printf("RESULT %s %.3f %s\n", name, value, unit);
  std::fflush(stdout);
}

long rss_bytes() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// The node's scheduler count: OTP_BENCH_SCHEDULERS, 0 or unset = one per
// core (the node's default). Every program that does not name a count
// reads it, so a row can be measured at 1 scheduler or at N.
otp::node_options scaling_options() {
  unsigned n = 0;
  if (const char* env = std::getenv("OTP_BENCH_SCHEDULERS"); env && *env) {
    char* end = nullptr;
    const unsigned long v = std::strtoul(env, &end, 10);
    if (*end != '\0' || v > 1024) {
      std::fprintf(stderr, "OTP_BENCH_SCHEDULERS='%s' is not a scheduler count (0-1024)\n", env);
      std::exit(2);
    }
    n = static_cast<unsigned>(v);
  }
  return {.schedulers = n};
}

struct never {};

otp::task<void> idle() { co_await otp::receive<never>(); }

// Runs `body` as a process and waits for it: the measurements happen inside.
template <class F>
void run_in_process(otp::node& n, F body) {
  auto w = n.spawn_watch({.scheduler = 0}, std::move(body));
  auto why = w.exit.get();
  if (!why.is_normal()) {
    std::fprintf(stderr, "benchmark process failed: %s\n", why.to_string().c_str());
    std::exit(1);
  }
}

// ---------------------------------------------------------------- spawn

void spawn_idle() {
  constexpr int n = 100000;
  otp::node node(scaling_options());
  double ns = 0;
  long before = 0, after = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    before = rss_bytes();
    auto t0 = clock_type::now();
    for (int i = 0; i < n; ++i)
      (void)otp::spawn(idle);
    ns = ns_since(t0);
    co_await otp::yield(); // let them all run into their receive
    after = rss_bytes();
  });
  result("spawn_idle_ns", ns / n, "ns");
  result("idle_process_bytes", static_cast<double>(after - before) / n, "bytes");
}

void spawn_exit() {
  constexpr int n = 200000;
  otp::node node(scaling_options());
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    auto t0 = clock_type::now();
    for (int i = 0; i < n; ++i) {
      (void)otp::spawn_monitor([]() -> otp::task<void> { co_return; });
      (void)co_await otp::receive<otp::down_msg>();
    }
    ns = ns_since(t0);
  });
  result("spawn_exit_ns", ns / n, "ns");
}

// A sleep with a million messages queued: a sleep waits for no message,
// so its cost must not grow with the mailbox.
void sleep_queued() {
  constexpr int queued = 1000000;
  constexpr int n = 10000;
  otp::node node({.schedulers = 1});
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    for (int i = 0; i < queued; ++i)
      otp::send(otp::self(), i);
    auto t0 = clock_type::now();
    for (int i = 0; i < n; ++i)
      co_await otp::sleep_for(std::chrono::nanoseconds(1));
    ns = ns_since(t0);
  });
  result("sleep_queued_ns", ns / n, "ns");
}

// ------------------------------------------------------------ messaging

struct ball {
  otp::pid from;
  int left;
};

otp::task<void> ponger() {
  for (;;) {
    auto b = co_await otp::receive<ball>();
    otp::send(b.from, ball{otp::self(), b.left});
    if (b.left == 0)
      co_return;
  }
}

void ping_pong(unsigned schedulers, const char* name) {
  constexpr int n = 1000000;
  otp::node node({.schedulers = schedulers});
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    auto peer = otp::spawn_opt({.scheduler = schedulers - 1}, ponger).pid;
    const auto me = otp::self();
    auto t0 = clock_type::now();
    for (int i = n - 1; i >= 0; --i) {
      otp::send(peer, ball{me, i});
      (void)co_await otp::receive<ball>();
    }
    ns = ns_since(t0);
  });
  result(name, ns / n, "ns");
}

// As the schedulers' spin (otp/scheduler.cpp).
void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// The floor under ping_pong_cross_ns: two threads pinned as schedulers 0
// and 1 are, bouncing a counter through two cache lines and nothing else.
// ping_pong_cross_ns / this = about how many line transfers a round trip of
// two messages costs (docs/design.md, "Where ping_pong_cross_ns goes").
// Pins the calling thread where scheduler `core` would be: the core-th CPU
// it may use (wrapping round).
void pin_to_core(unsigned core) {
  const std::vector<int> cpus = otp::detail::allowed_cpus();
  if (cpus.empty())
    return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpus[core % cpus.size()], &set);
  (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void cache_line_round_trip() {
  constexpr int n = 2000000;
  struct alignas(64) line {
    std::atomic<int> v{0};
  };
  static line a, b;
  auto pin = pin_to_core;
  std::thread peer([&] {
    pin(1);
    for (int i = 1; i <= n; ++i) {
      while (a.v.load(std::memory_order_acquire) != i)
        cpu_relax();
      b.v.store(i, std::memory_order_release);
    }
  });
  pin(0);
  const auto t0 = clock_type::now();
  for (int i = 1; i <= n; ++i) {
    a.v.store(i, std::memory_order_release);
    while (b.v.load(std::memory_order_acquire) != i)
      cpu_relax();
  }
  const double ns = ns_since(t0);
  peer.join();
  result("cache_line_round_trip_ns", ns / n, "ns");
}

otp::task<void> ring_node() {
  auto next = co_await otp::receive<otp::pid>();
  for (;;) {
    int token = co_await otp::receive<int>();
    otp::send(next, token - 1);
    if (token <= 0)
      co_return;
  }
}

// A comment line (ignored by the drivers): processes moved between schedulers.
void print_migrations(otp::node& node) {
  std::uint64_t moved = 0;
  for (const auto& st : node.statistics())
    moved += st.migrated_in;
  std::printf("# migrations %llu\n", static_cast<unsigned long long>(moved));
  for (const auto& st : node.statistics())
    std::printf("# scheduler %u: active %.1f of %.1f ms, processes in %llu, out %llu\n", st.index,
                std::chrono::duration<double, std::milli>(st.active).count(),
                std::chrono::duration<double, std::milli>(st.total).count(),
                static_cast<unsigned long long>(st.migrated_in), static_cast<unsigned long long>(st.migrated_out));
}

void ring() {
  // OTP_BENCH_RING_SIZE=N runs a smaller ring (a short chain that a burst of
  // spawns may split over two schedulers).
  int size = 10000;
  if (const char* env = std::getenv("OTP_BENCH_RING_SIZE"); env && *env)
    size = std::max(2, std::atoi(env));
  constexpr int hops = 10000000;
  otp::node node(scaling_options());
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    // The ring: us, then size - 1 processes; the last one sends back to us.
    std::vector<otp::pid> ring{otp::self()};
    for (int i = 1; i < size; ++i)
      ring.push_back(otp::spawn(ring_node));
    for (int i = 1; i < size; ++i)
      otp::send(ring[static_cast<std::size_t>(i)], ring[static_cast<std::size_t>((i + 1) % size)]);
    auto t0 = clock_type::now();
    otp::send(ring[1], hops - 1);
    for (;;) {
      int token = co_await otp::receive<int>();
      if (token <= 0)
        break;
      otp::send(ring[1], token - 1);
    }
    ns = ns_since(t0);
    for (int i = 1; i < size; ++i) // stop the others
      otp::exit(ring[static_cast<std::size_t>(i)], otp::exit_reason::kill());
  });
  print_migrations(node);
  result("ring_hop_ns", ns / hops, "ns");
}

void fan_in() {
  constexpr int senders = 100, each = 100000;
  otp::node node(scaling_options());
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    const auto me = otp::self();
    const unsigned scheds = otp::this_scheduler().owner().scheduler_count();
    auto t0 = clock_type::now();
    for (int s = 0; s < senders; ++s)
      otp::spawn_opt({.scheduler = static_cast<unsigned>(s) % scheds}, [](otp::pid to) -> otp::task<void> {
        for (int i = 0; i < each; ++i) {
          otp::send(to, i);
          if ((i & 1023) == 0)
            co_await otp::yield(); // share the scheduler like Erlang's reductions do
        }
      }, me);
    for (long i = 0; i < long{senders} * each; ++i)
      (void)co_await otp::receive<int>();
    ns = ns_since(t0);
  });
  result("fan_in_msgs_per_s", double(senders) * each / (ns / 1e9), "msgs_per_s");
}

// ---------------------------------------------------------------- skynet

otp::task<void> skynet(otp::pid parent, long num, long size, unsigned spread) {
  if (size == 1) {
    otp::send(parent, num);
    co_return;
  }
  const long child = size / 10;
  for (long i = 0; i < 10; ++i) {
    otp::spawn_opt({.scheduler = spread > 1 ? static_cast<unsigned>(i) % spread : std::optional<unsigned>{}},
                   skynet, otp::self(), num + i * child, child, 1u);
  }
  long sum = 0;
  for (int i = 0; i < 10; ++i)
    sum += co_await otp::receive<long>();
  otp::send(parent, sum);
}

void skynet_bench() {
  otp::node node(scaling_options());
  double ns = 0;
  long sum = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    auto t0 = clock_type::now();
    otp::spawn(skynet, otp::self(), 0L, 1000000L, otp::this_scheduler().owner().scheduler_count());
    sum = co_await otp::receive<long>();
    ns = ns_since(t0);
  });
  if (sum != 499999500000L) {
    std::fprintf(stderr, "skynet: wrong sum %ld\n", sum);
    std::exit(1);
  }
  result("skynet_ms", ns / 1e6, "ms");
}

// ---------------------------------------------------------------- registry

void registry_lookup() {
  constexpr int n = 10000000;
  otp::node node(scaling_options());
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    if (!otp::register_name("bench_worker", otp::self()))
      std::exit(1);
    std::size_t found = 0;
    auto t0 = clock_type::now();
    for (int i = 0; i < n; ++i)
      found += otp::whereis("bench_worker").has_value() ? 1 : 0;
    ns = ns_since(t0);
    if (found != n)
      std::exit(1);
    co_return;
  });
  result("registry_lookup_ns", ns / n, "ns");
}

void registry_register_unregister() {
  constexpr int n = 1000000;
  otp::node node(scaling_options());
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    const otp::pid me = otp::self();
    auto t0 = clock_type::now();
    for (int i = 0; i < n; ++i) {
      if (!otp::register_name("bench_name", me) || !otp::unregister_name("bench_name"))
        std::exit(1);
      if ((i & 1023) == 0)
        co_await otp::yield(); // let the exit-hook signals be handled
    }
    ns = ns_since(t0);
  });
  result("registry_register_unregister_ns", ns / n, "ns");
}

// -------------------------------------------------------------- gen_server

// The counter of bench/erlang/bench_gs.erl: call {add, N} replies the new
// value, cast {add, N} adds.
struct bench_counter {
  struct add {
    long n;
  };
  long value = 0;
  long handle_call(otp::context&, add a) { return value += a.n; }
  void handle_cast(otp::context&, add a) { value += a.n; }
};

otp::task<void> call_n(otp::server_ref<bench_counter> s, long n, otp::pid report_to) {
  for (long i = 0; i < n; ++i) {
    if (!co_await otp::gen_server::call(s, bench_counter::add{1}))
      std::exit(1);
  }
  otp::send(report_to, std::string("done"));
}

otp::task<void> timed_calls(otp::server_ref<bench_counter> s, long n, otp::pid report_to) {
  auto t0 = clock_type::now();
  for (long i = 0; i < n; ++i) {
    if (!co_await otp::gen_server::call(s, bench_counter::add{1}))
      std::exit(1);
  }
  otp::send(report_to, ns_since(t0));
}

void gen_server_call() {
  constexpr long n = 1000000;
  otp::node node(scaling_options());
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    auto s = co_await otp::gen_server::start_link<bench_counter>();
    // The client is a fresh process, as in the Erlang version; it times itself.
    otp::spawn(timed_calls, s.value(), n, otp::self());
    ns = co_await otp::receive<double>();
    if ((co_await otp::gen_server::call(s.value(), bench_counter::add{0})).value() != n)
      std::exit(1);
  });
  result("gen_server_call_ns", ns / n, "ns");
}

// One counter server and `clients` plainly spawned clients of `per_client`
// calls each; returns the calls per second (the counter is checked).
double calls_per_s(otp::node& node, long clients, long per_client) {
  double ns = 0;
  long count = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    auto s = co_await otp::gen_server::start_link<bench_counter>();
    auto t0 = clock_type::now();
    // Plain spawns, placed by the runtime, as a user gets them without choosing.
    for (long c = 0; c < clients; ++c)
      otp::spawn(call_n, s.value(), per_client, otp::self());
    for (long c = 0; c < clients; ++c)
      (void)co_await otp::receive<std::string>();
    ns = ns_since(t0);
    count = (co_await otp::gen_server::call(s.value(), bench_counter::add{0})).value();
  });
  if (count != clients * per_client) {
    std::fprintf(stderr, "gen_server clients: counter %ld, expected %ld\n", count, clients * per_client);
    std::exit(1);
  }
  return static_cast<double>(count) / (ns / 1e9);
}

void gen_server_call_clients(const char* name, long clients) {
  constexpr long total = 1000000;
  otp::node node(scaling_options());
  result(name, calls_per_s(node, clients, total / clients), "calls_per_s");
}

void gen_server_cast() {
  constexpr long n = 1000000;
  otp::node node(scaling_options());
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    auto s = co_await otp::gen_server::start_link<bench_counter>();
    auto t0 = clock_type::now();
    for (long i = 0; i < n; ++i)
      otp::gen_server::cast(s.value(), bench_counter::add{1});
    // Synchronise: the call is answered after every cast was handled.
    const long count = (co_await otp::gen_server::call(s.value(), bench_counter::add{0}, otp::infinity)).value();
    ns = ns_since(t0);
    if (count != n)
      std::exit(1);
  });
  result("gen_server_cast_ns", ns / n, "ns");
}

// -------------------------------------------------------------- supervisor

// Polls whereis(name) until it names a process other than `old`, yielding
// between polls (as the Erlang version does).
otp::task<otp::pid> wait_new(std::string name, otp::pid old) {
  for (;;) {
    if (auto p = otp::whereis(name); p && *p != old)
      co_return *p;
    co_await otp::yield();
  }
}

// Kills the worker registered as `name` n times, each time waiting for its
// replacement; returns the elapsed ns.
otp::task<double> timed_restarts(std::string name, long n) {
  auto first = otp::whereis(name);
  if (!first)
    std::exit(1);
  otp::pid p = *first;
  auto t0 = clock_type::now();
  for (long i = 0; i < n; ++i) {
    otp::exit(p, otp::exit_reason::kill());
    p = co_await wait_new(name, p);
  }
  co_return ns_since(t0);
}

std::vector<otp::child_spec> bench_workers(const std::vector<std::string>& names) {
  std::vector<otp::child_spec> specs;
  for (const auto& n : names)
    specs.push_back({.id = n, .start = otp::named_worker<bench_counter>(n), .shutdown = std::chrono::milliseconds(5000)});
  return specs;
}

// As the Erlang side: supervisor reports are switched off, so no report is
// formatted per restart (the level check stays in the measured path).
void sup_restart_run(const char* result_name, otp::supervisor_flags flags, long warmup, long n) {
  otp::set_log_level(otp::log_level::none);
  otp::node node(scaling_options());
  double ns = 0, warm_ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    otp::trap_exit(true);
    auto specs = bench_workers({"bench_worker"});
    auto sup = co_await otp::supervisor::start_link(flags, specs);
    if (!sup)
      std::exit(1);
    if (warmup > 0)
      warm_ns = co_await timed_restarts("bench_worker", warmup);
    ns = co_await timed_restarts("bench_worker", n);
    otp::exit(sup.value(), otp::exit_reason::shutdown());
    (void)co_await otp::receive<otp::exit_msg>();
  });
  if (warmup > 0)
    std::printf("# %ld untimed restarts took %.1f s (mean %.2f us)\n", warmup, warm_ns / 1e9, warm_ns / warmup / 1e3);
  result(result_name, ns / n / 1e3, "us");
}

void sup_rest_for_one() {
  otp::set_log_level(otp::log_level::none);
  constexpr int children = 100, reps = 100;
  otp::node node(scaling_options());
  double ns = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    otp::trap_exit(true);
    std::vector<std::string> names;
    for (int i = 1; i <= children; ++i)
      names.push_back("bench_worker_" + std::to_string(i));
    auto specs = bench_workers(names);
    auto sup = co_await otp::supervisor::start_link(
      {.strategy = otp::strategy::rest_for_one, .intensity = 10000000, .period = std::chrono::seconds(3600)}, specs);
    if (!sup)
      std::exit(1);
    for (int r = 0; r < reps; ++r) {
      std::vector<otp::pid> olds;
      for (const auto& n : names)
        olds.push_back(otp::whereis(n).value());
      auto t0 = clock_type::now();
      otp::exit(olds.front(), otp::exit_reason::kill());
      for (std::size_t i = 0; i < names.size(); ++i)
        (void)co_await wait_new(names[i], olds[i]);
      ns += ns_since(t0);
    }
    otp::exit(sup.value(), otp::exit_reason::shutdown());
    (void)co_await otp::receive<otp::exit_msg>();
  });
  result("sup_rest_for_one_100_us", ns / reps / 1e3, "us");
}

// ------------------------------------------------------------- scaling
// "Natural code" scaling (bench/scaling.py): plain spawn everywhere, no
// scheduler option; the node's scheduler count (OTP_BENCH_SCHEDULERS,
// scaling_options) is the only knob. The same programs are in
// bench/erlang/otp_bench.erl, where `erl +S N:N` is the knob.

void print_schedulers(otp::node& node) { std::printf("# schedulers %u\n", node.scheduler_count()); }

// workers: 4,000 CPU-bound processes, each K xorshift32 steps (a result the
// compiler cannot drop), yielding every 1,000 steps.
constexpr long scale_workers = 4000;
constexpr long scale_worker_steps = 25000;
constexpr long scale_worker_chunk = 1000;
// Sum over i = 1..4000 of xorshift32^25000(i); the Erlang side checks the same.
constexpr std::uint64_t scale_workers_sum = 8592863833665ULL;

struct worker_result {
  std::uint64_t value;
};

// n xorshift32 steps from x: the CPU work of workers and supervised_pool
// (the Erlang side's xorshift_n/2).
std::uint32_t xorshift32_n(std::uint32_t x, long n) {
  for (long i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
  }
  return x;
}

otp::task<void> scale_worker(otp::pid parent, std::uint32_t seed) {
  std::uint32_t x = seed;
  for (long done = 0; done < scale_worker_steps; done += scale_worker_chunk) {
    x = xorshift32_n(x, scale_worker_chunk);
    co_await otp::yield();
  }
  otp::send(parent, worker_result{x});
}

void scale_workers_bench() {
  otp::node node(scaling_options());
  print_schedulers(node);
  double ns = 0;
  std::uint64_t sum = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    auto t0 = clock_type::now();
    for (long i = 1; i <= scale_workers; ++i)
      otp::spawn(scale_worker, otp::self(), static_cast<std::uint32_t>(i));
    for (long i = 0; i < scale_workers; ++i)
      sum += (co_await otp::receive<worker_result>()).value;
    ns = ns_since(t0);
  });
  if (sum != scale_workers_sum) {
    std::fprintf(stderr, "workers: wrong sum %llu, expected %llu\n", static_cast<unsigned long long>(sum),
                 static_cast<unsigned long long>(scale_workers_sum));
    std::exit(1);
  }
  result("scale_workers_ms", ns / 1e6, "ms");
}

// skynet_plain: skynet_ms without the spread: every process is placed by the runtime.
otp::task<void> skynet_plain(otp::pid parent, long num, long size) {
  if (size == 1) {
    otp::send(parent, num);
    co_return;
  }
  const long child = size / 10;
  for (long i = 0; i < 10; ++i)
    otp::spawn(skynet_plain, otp::self(), num + i * child, child);
  long sum = 0;
  for (int i = 0; i < 10; ++i)
    sum += co_await otp::receive<long>();
  otp::send(parent, sum);
}

// Runs skynet_plain `runs` times on one node, one after another, checks each
// sum, and reports the last run's time as `name`.
void scale_skynet_runs(int runs, const char* name) {
  otp::node node(scaling_options());
  print_schedulers(node);
  double ns = 0;
  std::vector<long> sums(static_cast<std::size_t>(runs));
  run_in_process(node, [&]() -> otp::task<void> {
    for (std::size_t k = 0; k < sums.size(); ++k) {
      auto t0 = clock_type::now();
      otp::spawn(skynet_plain, otp::self(), 0L, 1000000L);
      sums[k] = co_await otp::receive<long>();
      ns = ns_since(t0);
      std::printf("# skynet run %zu: %.1f ms\n", k + 1, ns / 1e6);
    }
  });
  print_migrations(node);
  for (long sum : sums) {
    if (sum != 499999500000L) {
      std::fprintf(stderr, "%s: wrong sum %ld\n", name, sum);
      std::exit(1);
    }
  }
  result(name, ns / 1e6, "ms");
}

void scale_skynet_bench() { scale_skynet_runs(1, "scale_skynet_ms"); }

// skynet_warm: skynet_plain run twice on one node, the second timed. The
// first leaves its blocks in the pools, so the second pages in nothing: its
// speed-up is the schedulers' sharing without the kernel's first touch.
// OTP_BENCH_SKYNET_RUNS=N runs it N times and times the last: what runs
// leave in the pools for the next shows in the "# skynet run" lines.
void scale_skynet_warm_bench() {
  int runs = 2;
  if (const char* env = std::getenv("OTP_BENCH_SKYNET_RUNS"); env && *env)
    runs = std::max(2, std::atoi(env));
  scale_skynet_runs(runs, "scale_skynet_warm_ms");
}

// page_in: the floor under skynet_plain's speed-up. As many threads as the
// node would have schedulers, pinned as they are, take 64 KiB slabs from
// the runtime's page source (paged in by the kernel) until they hold 400 MB
// between them, writing a byte every 64 bytes as the pool does when it
// carves a slab. A million processes page in ~390 MB, so skynet_plain at N
// schedulers cannot scale better than this.
void scale_page_in_bench() {
  unsigned threads = scaling_options().schedulers;
  if (threads == 0) // as the node's default
    threads = otp::detail::default_scheduler_count(otp::detail::allowed_cpus().size(), otp::detail::cgroup_cpu_limit());
  std::printf("# schedulers %u\n", threads);
  constexpr std::size_t total = std::size_t{400} << 20;
  constexpr std::size_t slab = std::size_t{64} << 10;
  const std::size_t share = total / threads / slab;
  std::atomic<unsigned> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      pin_to_core(t);
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire))
        cpu_relax();
      for (std::size_t i = 0; i < share; ++i) {
        auto* p = static_cast<volatile char*>(otp::detail::take_pages(slab));
        for (std::size_t b = 0; b < slab; b += 64)
          p[b] = 1;
      }
    });
  }
  while (ready.load() != threads)
    cpu_relax();
  const auto t0 = clock_type::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool)
    th.join();
  result("scale_page_in_ms", ns_since(t0) / 1e6, "ms");
}

// ping_pong_pairs: 64 pairs, all spawned by the top process; each pair makes
// `rounds` round trips (2 messages each).
constexpr long scale_pairs = 64;
constexpr long scale_pair_rounds = 100000;

struct pair_done {
  long rounds;
};

otp::task<void> pair_pinger(otp::pid peer, otp::pid report_to) {
  const auto me = otp::self();
  long got = 0;
  for (long i = scale_pair_rounds - 1; i >= 0; --i) {
    otp::send(peer, ball{me, static_cast<int>(i)});
    if ((co_await otp::receive<ball>()).left == static_cast<int>(i))
      ++got;
  }
  otp::send(report_to, pair_done{got});
}

void scale_ping_pong_pairs_bench() {
  otp::node node(scaling_options());
  print_schedulers(node);
  double ns = 0;
  long rounds = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    auto t0 = clock_type::now();
    for (long p = 0; p < scale_pairs; ++p)
      otp::spawn(pair_pinger, otp::spawn(ponger), otp::self());
    for (long p = 0; p < scale_pairs; ++p)
      rounds += (co_await otp::receive<pair_done>()).rounds;
    ns = ns_since(t0);
  });
  print_migrations(node);
  if (rounds != scale_pairs * scale_pair_rounds) {
    std::fprintf(stderr, "ping_pong_pairs: %ld round trips answered, expected %ld\n", rounds,
                 scale_pairs * scale_pair_rounds);
    std::exit(1);
  }
  result("scale_ping_pong_pairs_msgs_per_s", 2.0 * static_cast<double>(rounds) / (ns / 1e9), "msgs_per_s");
}

// gen_server_clients: one server, 200 plainly spawned clients, C calls each.
void scale_gen_server_clients_bench() {
  otp::node node(scaling_options());
  print_schedulers(node);
  const double rate = calls_per_s(node, 200, 5000);
  print_migrations(node);
  result("scale_gen_server_clients_calls_per_s", rate, "calls_per_s");
}

// supervised_pool: a supervisor starts 16 gen_server workers (one after
// the other, as OTP's supervisor does); 64 plainly spawned clients call
// them in turn, 2,000 calls each, 3,000 xorshift32 steps a call.
constexpr long pool_workers = 16;
constexpr long pool_clients = 64;
constexpr long pool_calls = 2000;
constexpr long pool_steps = 3000;

struct pool_worker {
  std::uint32_t handle_call(otp::context&, std::uint32_t x) { return xorshift32_n(x, pool_steps); }
};

otp::task<void> pool_client(otp::pid parent, std::vector<otp::pid> workers, long c) {
  std::uint64_t sum = 0;
  for (long k = 0; k < pool_calls; ++k) {
    const auto& w = workers[static_cast<std::size_t>((c + k) % pool_workers)];
    auto r = co_await otp::gen_server::call<pool_worker>(w, static_cast<std::uint32_t>(k + 1), otp::infinity);
    if (!r) {
      std::fprintf(stderr, "supervised_pool: a call failed: %s\n", r.error().message().c_str());
      std::exit(1);
    }
    sum += r.value();
  }
  otp::send(parent, worker_result{sum});
}

void scale_supervised_pool_bench() {
  otp::node node(scaling_options());
  print_schedulers(node);
  // Every client's calls cover 1..2000 once: the expected sum, computed here.
  std::uint64_t expected = 0;
  for (long k = 1; k <= pool_calls; ++k)
    expected += xorshift32_n(static_cast<std::uint32_t>(k), pool_steps);
  expected *= pool_clients;
  double ns = 0;
  std::uint64_t sum = 0;
  run_in_process(node, [&]() -> otp::task<void> {
    std::vector<otp::child_spec> specs;
    std::vector<std::string> names;
    for (long i = 0; i < pool_workers; ++i) {
      names.push_back("pool_worker_" + std::to_string(i));
      specs.push_back({.id = names.back(), .start = otp::named_worker<pool_worker>(names.back())});
    }
    otp::trap_exit(true);
    auto sup = co_await otp::supervisor::start_link({.strategy = otp::strategy::one_for_one}, specs);
    if (!sup)
      std::exit(1);
    std::vector<otp::pid> workers;
    for (const auto& n : names)
      workers.push_back(otp::whereis(n).value());
    auto t0 = clock_type::now();
    for (long c = 0; c < pool_clients; ++c)
      otp::spawn(pool_client, otp::self(), workers, c);
    for (long c = 0; c < pool_clients; ++c)
      sum += (co_await otp::receive<worker_result>()).value;
    ns = ns_since(t0);
    otp::exit(sup.value(), otp::exit_reason::shutdown());
    (void)co_await otp::receive<otp::exit_msg>();
  });
  print_migrations(node);
  if (sum != expected) {
    std::fprintf(stderr, "supervised_pool: wrong sum %llu, expected %llu\n", static_cast<unsigned long long>(sum),
                 static_cast<unsigned long long>(expected));
    std::exit(1);
  }
  result("scale_supervised_pool_calls_per_s", static_cast<double>(pool_clients * pool_calls) / (ns / 1e9),
         "calls_per_s");
}

const std::map<std::string, std::function<void()>>& benches() {
  static const std::map<std::string, std::function<void()>> table = {
    {"spawn_idle", spawn_idle},
    {"spawn_exit_ns", spawn_exit},
    {"ping_pong_ns", [] { ping_pong(1, "ping_pong_ns"); }},
    {"ping_pong_cross_ns", [] { ping_pong(2, "ping_pong_cross_ns"); }},
    {"cache_line_round_trip_ns", cache_line_round_trip},
    {"ring_hop_ns", ring},
    {"fan_in_msgs_per_s", fan_in},
    {"skynet_ms", skynet_bench},
    {"gen_server_call_ns", gen_server_call},
    {"gen_server_call_2clients_per_s", [] { gen_server_call_clients("gen_server_call_2clients_per_s", 2); }},
    {"gen_server_call_100clients_per_s", [] { gen_server_call_clients("gen_server_call_100clients_per_s", 100); }},
    {"gen_server_cast_ns", gen_server_cast},
    {"registry_lookup_ns", registry_lookup},
    {"registry_register_unregister_ns", registry_register_unregister},
    {"sup_restart_us",
     [] {
       sup_restart_run("sup_restart_us", {.intensity = 1000000, .period = std::chrono::seconds(1)}, 0, 10000);
     }},
    // Erlang's side warms up with 25,000 restarts only (its cost grows with the history).
    {"sup_restart_after_100k_us",
     [] {
       sup_restart_run("sup_restart_after_100k_us", {.intensity = 10000000, .period = std::chrono::seconds(3600)},
                       100000, 1000);
     }},
    {"sup_rest_for_one_100_us", sup_rest_for_one},
    {"sleep_queued_ns", sleep_queued},
    {"workers", scale_workers_bench},
    {"skynet_plain", scale_skynet_bench},
    {"skynet_warm", scale_skynet_warm_bench},
    {"page_in", scale_page_in_bench},
    {"ping_pong_pairs", scale_ping_pong_pairs_bench},
    {"supervised_pool", scale_supervised_pool_bench},
    {"gen_server_clients", scale_gen_server_clients_bench},
  };
  return table;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s NAME | --list\n", argv[0]);
    return 2;
  }
  if (std::strcmp(argv[1], "--list") == 0) {
    for (auto& [name, fn] : benches())
      std::printf("%s\n", name.c_str());
    return 0;
  }
  auto found = benches().find(argv[1]);
  if (found == benches().end()) {
    std::fprintf(stderr, "unknown benchmark '%s' (try --list)\n", argv[1]);
    return 2;
  }
  found->second();
  return 0;
}
