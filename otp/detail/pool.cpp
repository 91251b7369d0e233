// SPDX-License-Identifier: Apache-2.0
#include "otp/detail/pool.hpp"

namespace otp::detail {

thread_pool::~thread_pool() {
  for (auto* b : free) {
    while (b != nullptr) {
      auto* next = b->next;
      ::operator delete(b);
      b = next;
    }
  }
}

thread_pool& this_thread_pool() noexcept {
  thread_local thread_pool pool;
  return pool;
}

} // namespace otp::detail
