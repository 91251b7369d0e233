// SPDX-License-Identifier: Apache-2.0
// otp/asio.hpp - `co_await` any Asio operation from a process.
#pragma once

#include "otp/detail/process.hpp"
#include "otp/scheduler.hpp"

#include <asio/async_result.hpp>
#include <asio/error_code.hpp>
#include <asio/execution/context.hpp>
#include <asio/io_context.hpp>
#include <asio/query.hpp>
#include <asio/system_error.hpp>

#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace otp {

/// Completion token: `co_await sock.async_read_some(buf, otp::use_process)`.
///
/// The operation completes on the process's scheduler thread and the
/// process resumes through its ready queue. An error code in the completion
/// is thrown as `asio::system_error` (like asio::use_awaitable); the other
/// results are returned (one as itself, several as a tuple). Asio objects
/// must use the process's scheduler executor (`otp::this_scheduler()`): an
/// object of another scheduler's io_context throws std::logic_error at the
/// co_await, before anything starts.
/// If the process is killed while waiting, its frame and the Asio objects
/// in it are destroyed, which cancels the operation; its late completion is
/// ignored.
struct use_process_t {
  constexpr use_process_t() noexcept = default;
};
inline constexpr use_process_t use_process{};

/// Completion token like use_process that never throws: `co_await` returns
/// every completion argument, error code included, as a std::tuple.
struct use_process_nothrow_t {
  constexpr use_process_nothrow_t() noexcept = default;
};
inline constexpr use_process_nothrow_t use_process_nothrow{};

namespace detail {

void io_suspend(process& p, std::coroutine_handle<> h) noexcept;
// Throws if `ctx` is the io_context of another scheduler than p's: its
// object would be used from two threads (the process's and that
// scheduler's). Contexts that are not a scheduler's are the user's to run.
void check_io_context(process& p, const asio::execution_context& ctx);
void io_complete(process& p) noexcept;
[[nodiscard]] asio::io_context::executor_type process_executor(process& p) noexcept;

template <class... Args>
struct io_handler {
  using executor_type = asio::io_context::executor_type;
  executor_type ex;
  scheduler* home;
  process* proc;
  std::uint64_t id;
  std::uint16_t seq;
  std::optional<std::tuple<Args...>>* slot;

  [[nodiscard]] executor_type get_executor() const noexcept { return ex; }

  void operator()(Args... args) {
    home->io_finished();
    // Runs on the home thread. The control block is type-stable; if the
    // process was killed (or the block recycled) while the operation was
    // pending, id or seq no longer match and the completion is dropped.
    if (proc->id.load(std::memory_order_relaxed) != id || proc->io_seq != seq
        || proc->state != proc_state::suspended)
      return;
    slot->emplace(std::move(args)...);
    io_complete(*proc);
  }
};

template <bool Throw, class Initiation, class InitArgs, class... Args>
class io_awaitable {
public:
  io_awaitable(Initiation init, InitArgs args) : init_(std::move(init)), args_(std::move(args)) {}

  [[nodiscard]] bool await_ready() const noexcept { return false; }

  void await_suspend(std::coroutine_handle<> h) {
    process& p = require_process("co_await of an Asio operation");
    // The I/O object's context, where the initiation offers it (an
    // executor without the context property is not checked).
    if constexpr (requires { asio::query(init_.get_executor(), asio::execution::context); })
      check_io_context(p, asio::query(init_.get_executor(), asio::execution::context));
    std::uint16_t seq = ++p.io_seq;
    io_handler<Args...> handler{process_executor(p), p.home(), &p, p.id.load(std::memory_order_relaxed), seq, &slot_};
    std::apply(
      [&](auto&&... a) { std::move(init_)(std::move(handler), std::forward<decltype(a)>(a)...); },
      std::move(args_));
    // Asio never completes inside the initiation, so suspending after it is safe.
    p.home()->io_started();
    io_suspend(p, h);
  }

  decltype(auto) await_resume() {
    auto& t = *slot_;
    if constexpr (!Throw) {
      return std::move(t);
    } else {
      return unpack(t, std::index_sequence_for<Args...>{});
    }
  }

private:
  template <std::size_t... I>
  auto unpack(std::tuple<Args...>& t, std::index_sequence<I...>) {
    using first = std::tuple_element_t<0, std::tuple<Args..., void>>;
    if constexpr (sizeof...(Args) > 0 && std::is_same_v<first, asio::error_code>) {
      if (auto ec = std::get<0>(t))
        throw asio::system_error(ec);
      return rest(t, std::make_index_sequence<sizeof...(Args) - 1>{});
    } else if constexpr (sizeof...(Args) > 0 && std::is_same_v<first, std::exception_ptr>) {
      if (auto e = std::get<0>(t))
        std::rethrow_exception(e);
      return rest(t, std::make_index_sequence<sizeof...(Args) - 1>{});
    } else if constexpr (sizeof...(Args) == 0) {
      return;
    } else if constexpr (sizeof...(Args) == 1) {
      return std::move(std::get<0>(t));
    } else {
      return std::move(t);
    }
  }
  template <std::size_t... I>
  auto rest(std::tuple<Args...>& t, std::index_sequence<I...>) {
    if constexpr (sizeof...(I) == 0) {
      return;
    } else if constexpr (sizeof...(I) == 1) {
      return std::move(std::get<1>(t));
    } else {
      return std::tuple<std::tuple_element_t<I + 1, std::tuple<Args...>>...>{std::move(std::get<I + 1>(t))...};
    }
  }

  Initiation init_;
  InitArgs args_;
  std::optional<std::tuple<Args...>> slot_;
};

} // namespace detail
} // namespace otp

template <class... Args>
struct asio::async_result<otp::use_process_t, void(Args...)> {
  template <class Initiation, class... InitArgs>
  static auto initiate(Initiation&& init, otp::use_process_t, InitArgs&&... args) {
    return otp::detail::io_awaitable<true, std::decay_t<Initiation>, std::tuple<std::decay_t<InitArgs>...>,
                                     std::decay_t<Args>...>{std::forward<Initiation>(init),
                                                            std::tuple<std::decay_t<InitArgs>...>{
                                                              std::forward<InitArgs>(args)...}};
  }
};

template <class... Args>
struct asio::async_result<otp::use_process_nothrow_t, void(Args...)> {
  template <class Initiation, class... InitArgs>
  static auto initiate(Initiation&& init, otp::use_process_nothrow_t, InitArgs&&... args) {
    return otp::detail::io_awaitable<false, std::decay_t<Initiation>, std::tuple<std::decay_t<InitArgs>...>,
                                     std::decay_t<Args>...>{std::forward<Initiation>(init),
                                                            std::tuple<std::decay_t<InitArgs>...>{
                                                              std::forward<InitArgs>(args)...}};
  }
};
