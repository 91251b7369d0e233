// SPDX-License-Identifier: Apache-2.0
#include "otp/detail/core_watch.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace otp::detail {

namespace {

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The one CPU a thread may run on, or -1 (unpinned, gone).
int pinned_cpu(pid_t tid) noexcept {
  cpu_set_t set;
  if (::sched_getaffinity(tid, sizeof(set), &set) != 0 || CPU_COUNT(&set) != 1)
    return -1;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set))
      return c;
  return -1;
}

} // namespace

std::unique_ptr<core_watch> core_watch::open(unsigned schedulers) {
  auto w = std::make_unique<core_watch>(schedulers);
  std::vector<std::int64_t> busy;
  if (!w->read_cores(busy) || busy.empty())
    return nullptr;
  return w;
}

core_watch::core_watch(unsigned schedulers)
    : slots_(std::make_unique<slot[]>(schedulers)), count_(schedulers) {
  if (const long tick = ::sysconf(_SC_CLK_TCK); tick > 0)
    ns_per_tick_ = 1'000'000'000 / tick;
}

void core_watch::attach(unsigned i) noexcept {
  clockid_t clock{};
  if (::pthread_getcpuclockid(::pthread_self(), &clock) != 0)
    return; // never known: it never leaves, and nothing goes to it
  slots_[i].clock.store(clock, std::memory_order_relaxed);
  slots_[i].tid.store(static_cast<pid_t>(::gettid()), std::memory_order_release);
}

// The "cpuN user nice system idle iowait irq softirq steal ..." lines: busy
// is threads' time, user and system. Not interrupts: the kernel delivers a
// loopback packet in a softirq on the sender's core and may not charge it to
// the sender, so a server's own replies read as another's 5-20% of its core.
bool core_watch::read_cores(std::vector<std::int64_t>& busy_ns) {
  const int fd = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  text_.clear();
  char chunk[4096];
  // The per-core lines come first; the rest (interrupt counts) can be long.
  while (text_.find("\nintr") == std::string::npos) {
    const ssize_t got = ::read(fd, chunk, sizeof(chunk));
    if (got <= 0)
      break;
    text_.append(chunk, static_cast<std::size_t>(got));
  }
  ::close(fd);
  busy_ns.clear();
  const char* p = text_.c_str();
  while ((p = std::strstr(p, "\ncpu")) != nullptr) {
    p += 4;
    char* end = nullptr;
    const unsigned long cpu = std::strtoul(p, &end, 10);
    if (end == p || cpu >= CPU_SETSIZE)
      continue;
    p = end;
    unsigned long long field[3] = {};
    for (auto& f : field) {
      f = std::strtoull(p, &end, 10);
      p = end;
    }
    if (busy_ns.size() <= cpu)
      busy_ns.resize(cpu + 1, 0);
    const unsigned long long busy = field[0] + field[1] + field[2];
    busy_ns[cpu] = static_cast<std::int64_t>(busy) * ns_per_tick_;
  }
  return !busy_ns.empty();
}

bool core_watch::sample() noexcept {
  const std::int64_t now = steady_ns();
  if (now < next_ns_.load(std::memory_order_relaxed) || sampling_.exchange(true, std::memory_order_acquire))
    return false;
  if (now < next_ns_.load(std::memory_order_relaxed)) { // another has just taken one
    sampling_.store(false, std::memory_order_release);
    return false;
  }
  next_ns_.store(now + period_ns, std::memory_order_relaxed);
  bool took = false;
  try {
    if (read_cores(now_busy_ns_)) {
      const bool before = sampled_ns_ != 0 && core_busy_ns_.size() == now_busy_ns_.size();
      const std::int64_t window = now - sampled_ns_;
      ours_ns_.assign(now_busy_ns_.size(), 0);
      // Each scheduler thread's core and CPU time. One that changed core
      // since the last sample is not counted this time.
      for (unsigned i = 0; i < count_; ++i) {
        slot& s = slots_[i];
        const pid_t tid = s.tid.load(std::memory_order_acquire);
        const int cpu = tid != 0 ? pinned_cpu(tid) : -1;
        timespec ts{};
        const bool timed = cpu >= 0 && ::clock_gettime(s.clock.load(std::memory_order_relaxed), &ts) == 0;
        const std::int64_t t = timed ? std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec : -1;
        s.fresh = before && timed && cpu == s.cpu && s.cpu_ns >= 0
                  && static_cast<std::size_t>(cpu) < ours_ns_.size();
        if (s.fresh)
          ours_ns_[static_cast<std::size_t>(cpu)] += t - s.cpu_ns;
        s.cpu = timed ? cpu : -1;
        s.cpu_ns = t;
      }
      for (unsigned i = 0; i < count_; ++i) {
        slot& s = slots_[i];
        if (!s.fresh || window <= 0) {
          s.others.store(-1, std::memory_order_relaxed);
          continue;
        }
        const auto c = static_cast<std::size_t>(s.cpu);
        const std::int64_t others = now_busy_ns_[c] - core_busy_ns_[c] - ours_ns_[c];
        const int permille = static_cast<int>(std::clamp<std::int64_t>(others * 1000 / window, 0, 1000));
        const int old = s.others.load(std::memory_order_relaxed);
        // Down at once, up by halves: a core that the neighbour has just left
        // is free for the next placement, and one busy period alone does not
        // make a core shared.
        s.others.store(old < 0 || permille < old ? permille : (old + permille) / 2, std::memory_order_relaxed);
      }
      core_busy_ns_.swap(now_busy_ns_);
      sampled_ns_ = now;
      took = before;
    }
  } catch (...) { // out of memory for the text: no sample this period
  }
  sampling_.store(false, std::memory_order_release);
  return took;
}

} // namespace otp::detail
