// SPDX-License-Identifier: Apache-2.0
// tests/support/holds_within.hpp - a bounded wait for a condition on a running node.
#pragma once

#include <chrono>
#include <thread>

namespace otp::test {

/// Polls `done` every millisecond (a sleeping poller, so that the test's own
/// thread is not a busy neighbour of the schedulers) until it holds or
/// `limit` passes; false if it never held.
template <class F>
bool holds_within(F done, std::chrono::seconds limit) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

} // namespace otp::test
