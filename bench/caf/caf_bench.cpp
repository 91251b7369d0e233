// caf_bench -- CAF (C++ Actor Framework 0.17) half of the side-by-side
// benchmark suite.
//
// Build (the driver bench/run.py does this):
//   clang++-19 -std=c++17 -O2 -DNDEBUG bench/caf/caf_bench.cpp \
//       -lcaf_core -lpthread -o build-bench/caf_bench
// Usage:
//   caf_bench BENCH      run one benchmark once, print "RESULT name value unit"
//   caf_bench --list     list the supported benchmark invocations
//
// Every invocation runs exactly one measurement (no warm-up; the driver
// repeats runs and takes the median).  Sizes are the ones of the common
// protocol; none had to be reduced:
//   spawn_idle          N = 100,000 event-based actors waiting for a message
//                       -> spawn_idle_ns (wall time of the spawn loop / N)
//                          idle_process_bytes (RSS delta from
//                          /proc/self/statm, taken once every actor has run
//                          its initialisation, / N)
//   spawn_exit_ns       200,000 x: spawn<monitored> an actor that quits at
//                       once, wait for its down_msg (driven by an
//                       event-based actor that spawns the next child from
//                       its down handler)
//   ping_pong_ns        1,000,000 round trips, scheduler.max-threads = 1
//   ping_pong_cross_ns  1,000,000 round trips, 2 threads.  CAF has no way to
//                       pin an actor to a worker thread, so placement is up
//                       to the work-stealing scheduler (default placement).
//   ring_hop_ns         10,000 actors, 10,000,000 hops
//   fan_in_msgs_per_s   100 senders x 100,000 ints -> one counting receiver
//   skynet_ms           1,000,000 leaf actors, 10-ary tree, checks the sum
//   gen_server_call_ns  1,000,000 sequential request/response round trips
//                       from ONE event-based client that chains
//                       request(...).then(...) (the analogue of an Erlang
//                       process doing gen_server:call).  The blocking
//                       scoped_actor variant (request(...).receive(...) from
//                       the main thread) is available as the extra
//                       invocation gen_server_call_blocking_ns (N reduced
//                       to 100,000); it was ~80x slower in our tests
//                       (~80 us per call: the main thread blocks on a
//                       condition variable for every response), so the
//                       event-based one is the reported figure.
//   gen_server_call_2clients_per_s / gen_server_call_100clients_per_s
//                       1,000,000 calls in total split evenly over 2 / 100
//                       event-based clients
//   gen_server_cast_ns  1,000,000 one-way sends followed by one request
//                       (answered only after all casts were processed)
//
// Thread count: ping_pong_ns uses scheduler.max-threads = 1.  Everything
// else uses one worker per hardware thread (2 on the reference machine),
// set explicitly because CAF 0.17's own default is
// max(hardware_concurrency, 4), which would oversubscribe a 2-core machine
// and not match Erlang's default of one scheduler per core.  The environment
// variable CAF_BENCH_THREADS=N overrides the thread count; bench/run.py never
// sets it, bench/scaling.py does (for workers, skynet_plain, ping_pong_pairs
// and gen_server_clients, the "natural code" scaling programs).
//
// The timing of each benchmark uses std::chrono::steady_clock.

#include "caf/all.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace caf;
using clk = std::chrono::steady_clock;

namespace {

using go_atom = atom_constant<atom("go")>;
using done_atom = atom_constant<atom("done")>;
using stop_atom = atom_constant<atom("stop")>;
using ping_atom = atom_constant<atom("ping")>;
using pong_atom = atom_constant<atom("pong")>;
using next_atom = atom_constant<atom("next")>;
using add_atom = atom_constant<atom("add")>;   // "call": replies
using incr_atom = atom_constant<atom("incr")>; // "cast": no reply

// -- helpers ------------------------------------------------------------------

void result(const char* name, double value, const char* unit) {
  std::printf("RESULT %s %.3f %s\n", name, value, unit);
  std::fflush(stdout);
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "caf_bench: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(1); // do not wait for actors that may still be alive
}

double ns_between(clk::time_point t0, clk::time_point t1) {
  return static_cast<double>(
    std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
}

int64_t ns_since(clk::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now() - t0)
    .count();
}

// Resident set size in bytes (second field of /proc/self/statm, in pages).
long rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr)
    fail("cannot open /proc/self/statm");
  long size = 0;
  long resident = 0;
  if (std::fscanf(f, "%ld %ld", &size, &resident) != 2)
    fail("cannot parse /proc/self/statm");
  std::fclose(f);
  return resident * sysconf(_SC_PAGESIZE);
}

size_t default_threads() {
  auto n = std::thread::hardware_concurrency();
  return n > 0 ? n : 2;
}

// -- 1. spawn_idle ------------------------------------------------------------

void bench_spawn_idle(actor_system& sys) {
  constexpr int n = 100000;
  std::atomic<int> started{0};
  // Pre-size (and thereby touch) the handle vector so its memory is not part
  // of the RSS delta.
  std::vector<actor> actors(n);
  auto idle = [&started](event_based_actor* self) -> behavior {
    started.fetch_add(1, std::memory_order_relaxed);
    return {
      [=](stop_atom) { self->quit(); },
    };
  };
  auto rss0 = rss_bytes();
  auto t0 = clk::now();
  for (int i = 0; i < n; ++i)
    actors[i] = sys.spawn(idle);
  auto t1 = clk::now();
  // Not timed: wait until every actor has run its initialisation (i.e. is
  // now idle, waiting for a message) before looking at memory.
  while (started.load() < n)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto rss1 = rss_bytes();
  result("spawn_idle_ns", ns_between(t0, t1) / n, "ns");
  result("idle_process_bytes", static_cast<double>(rss1 - rss0) / n, "bytes");
  for (auto& a : actors)
    anon_send_exit(a, exit_reason::kill);
}

// -- 2. spawn_exit_ns -----------------------------------------------------------

void bench_spawn_exit(actor_system& sys) {
  constexpr int n = 200000;
  scoped_actor self{sys};
  auto driver = [](event_based_actor* drv, int count, actor parent) -> behavior {
    auto remaining = std::make_shared<int>(count);
    // The child quits right away (exit reason: normal).
    auto child = [](event_based_actor* c) { c->quit(); };
    drv->set_down_handler([=](down_msg&) {
      if (--*remaining == 0) {
        drv->send(parent, done_atom::value);
        drv->quit();
      } else {
        drv->spawn<monitored>(child);
      }
    });
    // The first child is spawned from a message handler, not from the
    // initialisation function: with CAF 0.17.6 the down_msg of a child
    // spawned (and terminated) while the driver was still initialising was
    // not processed until some other message arrived (the benchmark hung).
    return {
      [=](go_atom) { drv->spawn<monitored>(child); },
    };
  };
  auto t0 = clk::now();
  auto drv = sys.spawn(driver, n, actor{self});
  self->send(drv, go_atom::value);
  self->receive([](done_atom) {});
  auto t1 = clk::now();
  result("spawn_exit_ns", ns_between(t0, t1) / n, "ns");
}

// -- 3./4. ping_pong --------------------------------------------------------------

behavior pong_fn(event_based_actor* self) {
  return {
    // Reply to the sender (Erlang: From ! pong).
    [=](ping_atom) {
      self->send(actor_cast<actor>(self->current_sender()), pong_atom::value);
    },
    [=](stop_atom) { self->quit(); },
  };
}

struct ping_state {
  int left = 0;
  clk::time_point t0;
};

behavior ping_fn(stateful_actor<ping_state>* self, actor pong, int n,
                 actor parent) {
  return {
    [=](go_atom) {
      self->state.left = n;
      self->state.t0 = clk::now();
      self->send(pong, ping_atom::value);
    },
    [=](pong_atom) {
      if (--self->state.left == 0) {
        self->send(parent, done_atom::value, ns_since(self->state.t0));
        self->quit();
      } else {
        self->send(pong, ping_atom::value);
      }
    },
  };
}

void bench_ping_pong(actor_system& sys, const char* name) {
  constexpr int n = 1000000;
  scoped_actor self{sys};
  auto pong = sys.spawn(pong_fn);
  auto ping = sys.spawn(ping_fn, pong, n, actor{self});
  int64_t elapsed = 0;
  self->send(ping, go_atom::value);
  self->receive([&](done_atom, int64_t ns) { elapsed = ns; });
  self->send(pong, stop_atom::value);
  result(name, static_cast<double>(elapsed) / n, "ns");
}

// -- 5. ring_hop_ns ---------------------------------------------------------------

struct ring_state {
  actor next;
};

behavior ring_node(stateful_actor<ring_state>* self, actor parent) {
  return {
    [=](next_atom, const actor& next) { self->state.next = next; },
    // Forward n-1; the node receiving 0 reports (and stays alive).
    [=](int n) {
      if (n == 0)
        self->send(parent, done_atom::value);
      else
        self->send(self->state.next, n - 1);
    },
  };
}

void bench_ring(actor_system& sys) {
  constexpr int size = 10000;
  constexpr int hops = 10000000;
  scoped_actor self{sys};
  std::vector<actor> nodes;
  nodes.reserve(size);
  for (int i = 0; i < size; ++i)
    nodes.push_back(sys.spawn(ring_node, actor{self}));
  for (int i = 0; i < size; ++i)
    self->send(nodes[i], next_atom::value, nodes[(i + 1) % size]);
  auto t0 = clk::now();
  // Node messages carry hops-1 ... 0, i.e. exactly `hops` hops.
  self->send(nodes[0], hops);
  self->receive([](done_atom) {});
  auto t1 = clk::now();
  result("ring_hop_ns", ns_between(t0, t1) / hops, "ns");
  // Killing a node destroys its state, which breaks the reference cycle.
  for (auto& a : nodes)
    anon_send_exit(a, exit_reason::kill);
}

// -- 6. fan_in_msgs_per_s -------------------------------------------------------

struct count_state {
  int64_t count = 0;
};

behavior fan_in_receiver(stateful_actor<count_state>* self, int64_t total,
                         actor parent) {
  return {
    [=](int) {
      if (++self->state.count == total) {
        self->send(parent, done_atom::value);
        self->quit();
      }
    },
  };
}

behavior fan_in_sender(event_based_actor* self, actor receiver, int m) {
  return {
    [=](go_atom) {
      for (int i = m; i > 0; --i)
        self->send(receiver, i);
      self->quit();
    },
  };
}

void bench_fan_in(actor_system& sys) {
  constexpr int senders = 100;
  constexpr int per_sender = 100000;
  constexpr int64_t total = int64_t{senders} * per_sender;
  scoped_actor self{sys};
  auto receiver = sys.spawn(fan_in_receiver, total, actor{self});
  std::vector<actor> pids;
  for (int i = 0; i < senders; ++i)
    pids.push_back(sys.spawn(fan_in_sender, receiver, per_sender));
  auto t0 = clk::now();
  for (auto& p : pids)
    self->send(p, go_atom::value);
  self->receive([](done_atom) {});
  auto t1 = clk::now();
  result("fan_in_msgs_per_s", total / (ns_between(t0, t1) / 1e9),
         "msgs_per_s");
}

// -- 7. skynet_ms -----------------------------------------------------------------

struct skynet_state {
  int64_t sum = 0;
  int64_t pending = 0;
};

behavior skynet(stateful_actor<skynet_state>* self, actor parent, int64_t num,
                int64_t size, int64_t div) {
  if (size == 1) {
    self->send(parent, num);
    self->quit();
    return {};
  }
  auto sub = size / div;
  self->state.pending = div;
  for (int64_t i = 0; i < div; ++i)
    self->spawn(skynet, actor{self}, num + i * sub, sub, div);
  return {
    [=](int64_t x) {
      self->state.sum += x;
      if (--self->state.pending == 0) {
        self->send(parent, self->state.sum);
        self->quit();
      }
    },
  };
}

// One skynet of 1 M leaves, reported as `name` (skynet_ms, scale_skynet_ms).
void run_skynet(actor_system& sys, const char* name) {
  constexpr int64_t leaves = 1000000;
  constexpr int64_t expected = 499999500000;
  scoped_actor self{sys};
  int64_t sum = 0;
  auto t0 = clk::now();
  sys.spawn(skynet, actor{self}, int64_t{0}, leaves, int64_t{10});
  self->receive([&](int64_t x) { sum = x; });
  auto t1 = clk::now();
  if (sum != expected)
    fail(std::string(name) + ": wrong skynet sum " + std::to_string(sum));
  result(name, ns_between(t0, t1) / 1e6, "ms");
}

void bench_skynet(actor_system& sys) { run_skynet(sys, "skynet_ms"); }

// -- 8.-10. request/response server ("gen_server") --------------------------------

struct server_state {
  int64_t value = 0;
};

behavior server_fn(stateful_actor<server_state>* self) {
  return {
    // call: {add, N} -> new counter value
    [=](add_atom, int64_t n) -> int64_t { return self->state.value += n; },
    // cast: {add, N}, no reply
    [=](incr_atom, int64_t n) { self->state.value += n; },
  };
}

struct client_state {
  int64_t left = 0;
};

// Issue the next request once the previous response arrived.
void call_next(stateful_actor<client_state>* self, const actor& server,
               const actor& parent) {
  self->request(server, infinite, add_atom::value, int64_t{1})
    .then([=](int64_t) {
      if (--self->state.left == 0) {
        self->send(parent, done_atom::value);
        self->quit();
      } else {
        call_next(self, server, parent);
      }
    });
}

behavior call_client(stateful_actor<client_state>* self, actor server,
                     int64_t calls, actor parent) {
  self->state.left = calls;
  return {
    [=](go_atom) { call_next(self, server, parent); },
  };
}

// Runs `clients` event-based clients doing `total / clients` sequential calls
// each; returns the elapsed ns and checks the server's final counter.
double run_call_clients(actor_system& sys, int clients, int64_t total) {
  scoped_actor self{sys};
  auto server = sys.spawn(server_fn);
  auto per_client = total / clients;
  std::vector<actor> pids;
  for (int i = 0; i < clients; ++i)
    pids.push_back(sys.spawn(call_client, server, per_client, actor{self}));
  auto t0 = clk::now();
  for (auto& p : pids)
    self->send(p, go_atom::value);
  for (int i = 0; i < clients; ++i)
    self->receive([](done_atom) {});
  auto t1 = clk::now();
  int64_t final_value = -1;
  self->request(server, infinite, add_atom::value, int64_t{0})
    .receive([&](int64_t v) { final_value = v; },
             [&](error& err) { fail("call: " + sys.render(err)); });
  if (final_value != per_client * clients)
    fail("call: wrong counter " + std::to_string(final_value));
  anon_send_exit(server, exit_reason::kill);
  return ns_between(t0, t1);
}

void bench_call(actor_system& sys) {
  constexpr int64_t n = 1000000;
  result("gen_server_call_ns", run_call_clients(sys, 1, n) / n, "ns");
}

void bench_call_clients(actor_system& sys, int clients, const char* name) {
  constexpr int64_t total = 1000000;
  auto calls = (total / clients) * clients;
  auto elapsed = run_call_clients(sys, clients, total);
  result(name, calls / (elapsed / 1e9), "calls_per_s");
}

// Alternative: blocking request/receive from a scoped_actor (main thread).
void bench_call_blocking(actor_system& sys) {
  // 100,000 instead of 1,000,000: at ~80 us per call (the main thread
  // sleeps on a condition variable for every response) the full N takes
  // ~80 s.
  constexpr int64_t n = 100000;
  scoped_actor self{sys};
  auto server = sys.spawn(server_fn);
  int64_t last = 0;
  auto t0 = clk::now();
  for (int64_t i = 0; i < n; ++i)
    self->request(server, infinite, add_atom::value, int64_t{1})
      .receive([&](int64_t v) { last = v; },
               [&](error& err) { fail("call: " + sys.render(err)); });
  auto t1 = clk::now();
  if (last != n)
    fail("call: wrong counter " + std::to_string(last));
  anon_send_exit(server, exit_reason::kill);
  result("gen_server_call_blocking_ns", ns_between(t0, t1) / n, "ns");
}

behavior cast_client(event_based_actor* self, actor server, int64_t casts,
                     actor parent) {
  return {
    [=](go_atom) {
      for (int64_t i = 0; i < casts; ++i)
        self->send(server, incr_atom::value, int64_t{1});
      // Synchronise: answered only after all casts were handled.
      self->request(server, infinite, add_atom::value, int64_t{0})
        .then([=](int64_t v) {
          self->send(parent, done_atom::value, v);
          self->quit();
        });
    },
  };
}

void bench_cast(actor_system& sys) {
  constexpr int64_t n = 1000000;
  scoped_actor self{sys};
  auto server = sys.spawn(server_fn);
  auto client = sys.spawn(cast_client, server, n, actor{self});
  int64_t count = -1;
  auto t0 = clk::now();
  self->send(client, go_atom::value);
  self->receive([&](done_atom, int64_t v) { count = v; });
  auto t1 = clk::now();
  if (count != n)
    fail("cast: wrong counter " + std::to_string(count));
  anon_send_exit(server, exit_reason::kill);
  result("gen_server_cast_ns", ns_between(t0, t1) / n, "ns");
}

// -- scaling ("natural code", bench/scaling.py) -----------------------------------
// The programs of bench/otp_bench.cpp: actors spawned plainly, the thread
// count (CAF_BENCH_THREADS, set by the driver) is the only knob.

constexpr int64_t scale_workers = 4000;
constexpr int64_t scale_worker_steps = 25000;
// Sum over i = 1..4000 of xorshift32^25000(i), as in otp_bench.cpp.
constexpr int64_t scale_workers_sum = 8592863833665;

struct scale_worker_state {
  uint32_t x = 0;
  int64_t left = 0;
};

// 1,000 steps per message; the actor sends itself the next `go`, so others
// get their turn in between (the analogue of otp::yield()).
behavior scale_worker(stateful_actor<scale_worker_state>* self, uint32_t seed,
                      actor parent) {
  self->state.x = seed;
  self->state.left = scale_worker_steps;
  return {
    [=](go_atom) {
      uint32_t x = self->state.x;
      for (int i = 0; i < 1000; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
      }
      self->state.x = x;
      self->state.left -= 1000;
      if (self->state.left > 0) {
        self->send(self, go_atom::value);
      } else {
        self->send(parent, static_cast<int64_t>(x));
        self->quit();
      }
    },
  };
}

void bench_scale_workers(actor_system& sys) {
  scoped_actor self{sys};
  auto t0 = clk::now();
  for (int64_t i = 1; i <= scale_workers; ++i)
    self->send(sys.spawn(scale_worker, static_cast<uint32_t>(i), actor{self}),
               go_atom::value);
  int64_t sum = 0;
  for (int64_t i = 0; i < scale_workers; ++i)
    self->receive([&](int64_t x) { sum += x; });
  auto t1 = clk::now();
  if (sum != scale_workers_sum)
    fail("workers: wrong sum " + std::to_string(sum));
  result("scale_workers_ms", ns_between(t0, t1) / 1e6, "ms");
}

// skynet_ms is already plain.
void bench_scale_skynet(actor_system& sys) { run_skynet(sys, "scale_skynet_ms"); }

void bench_scale_ping_pong_pairs(actor_system& sys) {
  constexpr int pairs = 64, rounds = 100000;
  scoped_actor self{sys};
  std::vector<actor> pongs;
  auto t0 = clk::now();
  for (int p = 0; p < pairs; ++p) {
    pongs.push_back(sys.spawn(pong_fn));
    self->send(sys.spawn(ping_fn, pongs.back(), rounds, actor{self}),
               go_atom::value);
  }
  for (int p = 0; p < pairs; ++p)
    self->receive([](done_atom, int64_t) {});
  auto t1 = clk::now();
  for (auto& p : pongs)
    self->send(p, stop_atom::value);
  result("scale_ping_pong_pairs_msgs_per_s",
         2.0 * pairs * rounds / (ns_between(t0, t1) / 1e9), "msgs_per_s");
}

void bench_scale_gen_server_clients(actor_system& sys) {
  constexpr int clients = 200;
  constexpr int64_t total = 1000000; // 5,000 calls a client
  result("scale_gen_server_clients_calls_per_s",
         total / (run_call_clients(sys, clients, total) / 1e9), "calls_per_s");
}

// -- table ----------------------------------------------------------------------

struct bench_entry {
  const char* name;
  size_t threads; // 0 = one per hardware thread
  std::function<void(actor_system&)> run;
  bool listed; // listed by --list (i.e. part of the common suite)
};

std::vector<bench_entry> benches() {
  return {
    {"spawn_idle", 0, bench_spawn_idle, true},
    {"spawn_exit_ns", 0, bench_spawn_exit, true},
    {"ping_pong_ns", 1,
     [](actor_system& sys) { bench_ping_pong(sys, "ping_pong_ns"); }, true},
    {"ping_pong_cross_ns", 0,
     [](actor_system& sys) { bench_ping_pong(sys, "ping_pong_cross_ns"); },
     true},
    {"ring_hop_ns", 0, bench_ring, true},
    {"fan_in_msgs_per_s", 0, bench_fan_in, true},
    {"skynet_ms", 0, bench_skynet, true},
    {"gen_server_call_ns", 0, bench_call, true},
    {"gen_server_call_2clients_per_s", 0,
     [](actor_system& sys) {
       bench_call_clients(sys, 2, "gen_server_call_2clients_per_s");
     },
     true},
    {"gen_server_call_100clients_per_s", 0,
     [](actor_system& sys) {
       bench_call_clients(sys, 100, "gen_server_call_100clients_per_s");
     },
     true},
    {"gen_server_cast_ns", 0, bench_cast, true},
    {"gen_server_call_blocking_ns", 0, bench_call_blocking, false},
    {"workers", 0, bench_scale_workers, true},
    {"skynet_plain", 0, bench_scale_skynet, true},
    {"ping_pong_pairs", 0, bench_scale_ping_pong_pairs, true},
    {"gen_server_clients", 0, bench_scale_gen_server_clients, true},
  };
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s BENCH | --list\n", argv[0]);
    return 2;
  }
  auto table = benches();
  if (std::strcmp(argv[1], "--list") == 0) {
    for (auto& b : table)
      if (b.listed)
        std::printf("%s\n", b.name);
    return 0;
  }
  for (auto& b : table) {
    if (std::strcmp(argv[1], b.name) != 0)
      continue;
    auto threads = b.threads != 0 ? b.threads : default_threads();
    // bench/scaling.py sets it; bench/run.py never does.
    if (auto env = std::getenv("CAF_BENCH_THREADS"))
      threads = static_cast<size_t>(std::atoi(env));
    actor_system_config cfg;
    cfg.set("scheduler.max-threads", static_cast<int64_t>(threads));
    try {
      actor_system sys{cfg};
      std::printf("# CAF %d.%d.%d, %zu scheduler threads\n", CAF_MAJOR_VERSION,
                  CAF_MINOR_VERSION, CAF_PATCH_VERSION,
                  sys.scheduler().num_workers());
      b.run(sys);
    } catch (std::exception& e) {
      fail(std::string{b.name} + " failed: " + e.what());
    }
    return 0;
  }
  std::fprintf(stderr, "caf_bench: unknown benchmark %s\n", argv[1]);
  return 2;
}
