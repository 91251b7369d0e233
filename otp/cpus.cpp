// SPDX-License-Identifier: Apache-2.0
#include "otp/detail/cpus.hpp"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

namespace otp::detail {

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos)
      return out;
    s.remove_prefix(at + 1);
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

std::optional<long long> number(std::string_view s) {
  s = trim(s);
  long long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size())
    return std::nullopt;
  return v;
}

// mountinfo writes a space in a path as \040 (and tab, newline, backslash
// likewise): the kernel's octal escapes.
std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto octal = [&](std::size_t k) { return s[k] >= '0' && s[k] <= '7'; };
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] <= '3' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

struct mount {
  std::string root;  // the cgroup path mounted there
  std::string point; // where
};

// The cgroup v2 mount (`v1_controller` empty), or the v1 mount that has
// that controller.
std::optional<mount> find_mount(std::string_view mountinfo, std::string_view v1_controller) {
  for (std::string_view line : split(mountinfo, '\n')) {
    const auto dash = line.find(" - ");
    if (dash == std::string_view::npos)
      continue;
    const auto before = split(line.substr(0, dash), ' ');
    const auto after = split(line.substr(dash + 3), ' ');
    if (before.size() < 5 || after.size() < 3)
      continue;
    if (v1_controller.empty()) {
      if (after[0] != "cgroup2")
        continue;
    } else {
      const auto opts = split(after[2], ',');
      if (after[0] != "cgroup" || std::find(opts.begin(), opts.end(), v1_controller) == opts.end())
        continue;
    }
    return mount{unescape(before[3]), unescape(before[4])};
  }
  return std::nullopt;
}

// The cgroup path of the hierarchy with that controller (v2: `0::path`).
std::optional<std::string> own_path(std::string_view self_cgroup, std::string_view v1_controller) {
  for (std::string_view line : split(self_cgroup, '\n')) {
    const auto first = line.find(':');
    const auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos)
      continue;
    const std::string_view controllers = line.substr(first + 1, second - first - 1);
    const std::string_view path = line.substr(second + 1);
    if (v1_controller.empty() ? line.substr(0, first) == "0" && controllers.empty()
                              : [&] {
                                  const auto c = split(controllers, ',');
                                  return std::find(c.begin(), c.end(), v1_controller) != c.end();
                                }())
      return std::string(path);
  }
  return std::nullopt;
}

// The directories from our cgroup's up to the mount's, the innermost
// first: a parent's quota binds its children too. A path outside the
// mount's root (a cgroup namespace we cannot see above) reads the mount
// point alone.
std::vector<std::string> dirs_up(const mount& m, const std::string& path) {
  std::string rel;
  if (m.root == "/")
    rel = path == "/" ? "" : path;
  else if (path == m.root)
    rel = "";
  else if (path.size() > m.root.size() && path.compare(0, m.root.size(), m.root) == 0 && path[m.root.size()] == '/')
    rel = path.substr(m.root.size());
  std::vector<std::string> out;
  for (;;) {
    out.push_back(m.point + rel);
    if (rel.empty())
      return out;
    rel.erase(rel.rfind('/'));
  }
}

void take_min(std::optional<double>& limit, double v) {
  if (!limit || v < *limit)
    limit = v;
}

} // namespace

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0)
    return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set))
      cpus.push_back(c);
  return cpus;
}

std::optional<double> cgroup_cpu_limit(std::string_view self_cgroup, std::string_view mountinfo,
                                       const file_reader& read) {
  std::optional<double> limit;
  // v2: cpu.max is "max PERIOD" or "QUOTA PERIOD".
  if (auto path = own_path(self_cgroup, ""); path)
    if (auto m = find_mount(mountinfo, ""); m)
      for (const std::string& dir : dirs_up(*m, *path))
        if (auto text = read(dir + "/cpu.max"); text) {
          const auto f = split(trim(*text), ' ');
          const auto quota = f.size() == 2 ? number(f[0]) : std::nullopt;
          const auto period = f.size() == 2 ? number(f[1]) : std::nullopt;
          if (quota && period && *quota > 0 && *period > 0)
            take_min(limit, static_cast<double>(*quota) / static_cast<double>(*period));
        }
  // v1: cpu.cfs_quota_us is -1 without a quota.
  if (auto path = own_path(self_cgroup, "cpu"); path)
    if (auto m = find_mount(mountinfo, "cpu"); m)
      for (const std::string& dir : dirs_up(*m, *path)) {
        const auto q = read(dir + "/cpu.cfs_quota_us");
        const auto p = read(dir + "/cpu.cfs_period_us");
        const auto quota = q ? number(*q) : std::nullopt;
        const auto period = p ? number(*p) : std::nullopt;
        if (quota && period && *quota > 0 && *period > 0)
          take_min(limit, static_cast<double>(*quota) / static_cast<double>(*period));
      }
  return limit;
}

std::optional<double> cgroup_cpu_limit() {
  const file_reader read = [](const std::string& path) -> std::optional<std::string> {
    std::ifstream in(path);
    if (!in)
      return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return std::move(text).str();
  };
  const auto cgroup = read("/proc/self/cgroup");
  const auto mountinfo = read("/proc/self/mountinfo");
  if (!cgroup || !mountinfo)
    return std::nullopt;
  return cgroup_cpu_limit(*cgroup, *mountinfo, read);
}

unsigned default_scheduler_count(std::size_t allowed, std::optional<double> limit) noexcept {
  std::size_t n = allowed != 0 ? allowed : std::thread::hardware_concurrency();
  // Rounded down, as OTP does since 23: a scheduler past the quota spends
  // it on its idle spin, and 2.5 CPUs of quota leave the half for the
  // node's other threads.
  if (limit && *limit > 0)
    n = std::min(n, std::max<std::size_t>(1, static_cast<std::size_t>(std::floor(*limit))));
  // A node takes at most 255; a bigger machine gets 255 by default.
  return static_cast<unsigned>(std::clamp<std::size_t>(n, 1, 255));
}

} // namespace otp::detail
