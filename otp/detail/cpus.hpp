// SPDX-License-Identifier: Apache-2.0
// otp/detail/cpus.hpp - the CPUs a node may use: its affinity mask and its
// cgroup's CPU quota.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otp::detail {

// The CPUs the calling thread may run on (its affinity mask, which taskset
// and a container's cpuset set), in increasing order; empty where the
// kernel does not say. A node's default scheduler count and its threads'
// pinning follow it, as OTP's schedulers online follow
// logical_processors_available: one per core of the machine instead made
// `taskset -c 0 server` run a second scheduler pinned outside its mask.
[[nodiscard]] std::vector<int> allowed_cpus();

// The CPU time the process's cgroup may use, in CPUs (quota / period; the
// smallest along its cgroup path, v2 `cpu.max` or v1 `cpu.cfs_quota_us`),
// or nullopt when it has no quota or the kernel does not say.
[[nodiscard]] std::optional<double> cgroup_cpu_limit();

// The same from the text of /proc/self/cgroup and /proc/self/mountinfo, and
// a reader of files (nullopt when one cannot be read); for tests.
using file_reader = std::function<std::optional<std::string>(const std::string& path)>;
[[nodiscard]] std::optional<double> cgroup_cpu_limit(std::string_view self_cgroup, std::string_view mountinfo,
                                                     const file_reader& read);

// One scheduler per allowed CPU (per core of the machine when none is
// known), no more than the quota rounded down, at least one and at most 255.
[[nodiscard]] unsigned default_scheduler_count(std::size_t allowed, std::optional<double> limit) noexcept;

} // namespace otp::detail
