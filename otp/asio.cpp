// SPDX-License-Identifier: Apache-2.0
// otp/asio.cpp - Asio glue (asio.hpp): a process suspended in an Asio
// operation, its completion, and the executor that binds it to its scheduler.
#include "otp/asio.hpp"

#include "otp/node.hpp"
#include "otp/scheduler.hpp"

#include <stdexcept>
#include <string>

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

void check_io_context(process& p, const asio::execution_context& ctx) {
  scheduler* mine = p.home();
  if (&ctx == &mine->context())
    return;
  node& n = mine->owner();
  for (unsigned i = 0; i < n.scheduler_count(); ++i) {
    if (&ctx == &n.get_scheduler(i).context())
      throw std::logic_error("otp: " + p.self().to_string() + " on scheduler " + std::to_string(mine->index()) +
                             " awaited an Asio object of scheduler " + std::to_string(i) +
                             "'s io_context; make Asio objects in the process that awaits them, with "
                             "otp::this_scheduler().get_executor() (a socket crosses as a descriptor), or spawn "
                             "the process with spawn_opt({.scheduler = " + std::to_string(i) + "})");
  }
}

asio::io_context::executor_type process_executor(process& p, bool binds) noexcept {
  if (!p.io_bound || (binds && !p.bound)) [[unlikely]] {
    if (binds)
      p.home()->bind_for_io(p); // its I/O completes on this io_context's thread: it stays here
    else
      p.home()->count_io(p); // where its I/O is now, for the placement of spawns
  }
  return p.home()->get_executor();
}

asio::io_context& current_io_context(const char* what) {
  return require_process(what).home()->context();
}

} // namespace otp::detail
