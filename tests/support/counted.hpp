// SPDX-License-Identifier: Apache-2.0
// tests/support/counted.hpp - an object that counts its constructions and destructions.
#pragma once

#include <atomic>

namespace otp::test {

/// Counts live instances, so a test can prove a frame's locals were destroyed
/// exactly once (cf. cppcoro's counted.hpp).
struct counted {
  // Atomic: processes on several schedulers construct and destroy them.
  static inline std::atomic<int> constructed = 0;
  static inline std::atomic<int> destroyed = 0;
  static void reset() { constructed = destroyed = 0; }
  static int alive() { return constructed - destroyed; }

  counted() { ++constructed; }
  counted(const counted&) { ++constructed; }
  counted(counted&&) noexcept { ++constructed; }
  counted& operator=(const counted&) = default;
  counted& operator=(counted&&) noexcept = default;
  ~counted() { ++destroyed; }
};

} // namespace otp::test
