// SPDX-License-Identifier: Apache-2.0
// otp/asio.cpp - Asio glue (asio.hpp): a process suspended in an Asio
// operation, its completion, and the executor that binds it to its scheduler.
#include "otp/asio.hpp"

#include "otp/scheduler.hpp"

namespace otp::detail {

void io_suspend(process& p, std::coroutine_handle<> h) noexcept {
  p.resume = h;
  p.state = proc_state::suspended;
  if (p.has_pending_signals() && !p.in_ready)
    p.home()->make_ready(&p);
}

void io_complete(process& p) noexcept {
  p.state = proc_state::runnable;
  if (!p.in_ready)
    p.home()->make_ready(&p);
}

asio::io_context::executor_type process_executor(process& p) noexcept {
  p.bound = true; // its I/O completes on this io_context's thread: it stays here
  return p.home()->get_executor();
}

} // namespace otp::detail
