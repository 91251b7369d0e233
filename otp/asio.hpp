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
///
/// The process binds to its scheduler for life at its first such wait: the
/// object's io_context is that scheduler's. An object held in otp::follow
/// moves with its process instead; its own tokens (follow::use_process)
/// keep the process in place only while the operation is pending.
struct use_process_t {
  constexpr use_process_t() noexcept = default;
  /// @private false: the object follows its process (otp::follow).
  constexpr explicit use_process_t(bool for_life) noexcept : binds(for_life) {}
  bool binds = true;
};
inline constexpr use_process_t use_process{};

/// Completion token like use_process that never throws: `co_await` returns
/// every completion argument, error code included, as a std::tuple.
struct use_process_nothrow_t {
  constexpr use_process_nothrow_t() noexcept = default;
  /// @private false: the object follows its process (otp::follow).
  constexpr explicit use_process_nothrow_t(bool for_life) noexcept : binds(for_life) {}
  bool binds = true;
};
inline constexpr use_process_nothrow_t use_process_nothrow{};

namespace detail {

void io_suspend(process& p, std::coroutine_handle<> h) noexcept;
// Throws if `ctx` is the io_context of another scheduler than p's: its
// object would be used from two threads (the process's and that
// scheduler's). Contexts that are not a scheduler's are the user's to run.
void check_io_context(process& p, const asio::execution_context& ctx);
void io_complete(process& p) noexcept;
// The executor the completion runs on: p's scheduler's. With `binds`, p
// stays on that scheduler for life (its object lives on that io_context);
// without (otp::follow), only while the operation is pending.
[[nodiscard]] asio::io_context::executor_type process_executor(process& p, bool binds = true) noexcept;
// The io_context of the calling process's scheduler, without binding the
// process to it (otp::follow); throws outside a process.
[[nodiscard]] asio::io_context& current_io_context(const char* what);

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
  io_awaitable(Initiation init, InitArgs args, bool binds)
      : init_(std::move(init)), args_(std::move(args)), binds_(binds) {}

  [[nodiscard]] bool await_ready() const noexcept { return false; }

  void await_suspend(std::coroutine_handle<> h) {
    process& p = require_process("co_await of an Asio operation");
    // The I/O object's context, where the initiation offers it (an
    // executor without the context property is not checked).
    if constexpr (requires { asio::query(init_.get_executor(), asio::execution::context); })
      check_io_context(p, asio::query(init_.get_executor(), asio::execution::context));
    std::uint16_t seq = ++p.io_seq;
    io_handler<Args...> handler{process_executor(p, binds_), p.home(), &p, p.id.load(std::memory_order_relaxed), seq, &slot_};
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
  bool binds_;
  std::optional<std::tuple<Args...>> slot_;
};

} // namespace detail

/// An Asio socket (or acceptor) that moves with its process.
///
/// A process that awaits a plain Asio object binds to its scheduler for
/// life (use_process). One whose objects are all held in `follow` stays a
/// plain process that the load balancing may move between operations: each
/// use through `->` or `*` first moves the object to the io_context of the
/// scheduler the process runs on now, if it moved (the descriptor is
/// released and assigned again: two epoll_ctl calls, only after a move).
/// Await its operations with `follow::use_process` or
/// `follow::use_process_nothrow`: they keep the process where it is only
/// while the operation is pending.
///
///     otp::follow<tcp::socket> s(tcp::v4(), fd);
///     auto [ec, n] = co_await s->async_read_some(buf, s.use_process_nothrow);
///
/// Made, used and destroyed in one process. An object awaited with the plain
/// tokens binds the process as before (nothing moves, nothing breaks); a
/// plain object awaited with these tokens throws std::logic_error at its
/// next wait once the process has moved (use_process's check).
template <class Object>
class follow {
public:
  using protocol_type = typename Object::protocol_type;
  using native_handle_type = typename Object::native_handle_type;

  /// Adopts an open descriptor (an accepted connection passed as an int).
  follow(const protocol_type& protocol, const native_handle_type& fd)
      : ctx_(&detail::current_io_context("otp::follow")), protocol_(protocol), object_(*ctx_, protocol, fd) {}
  /// An open object of the protocol, on the calling process's scheduler.
  explicit follow(const protocol_type& protocol)
      : ctx_(&detail::current_io_context("otp::follow")), protocol_(protocol), object_(*ctx_, protocol) {}
  follow(const follow&) = delete;
  follow& operator=(const follow&) = delete;

  /// The object, on the io_context of the scheduler the process runs on.
  Object& operator*() { return here(); }
  Object* operator->() { return &here(); }

  static constexpr use_process_t use_process{false};
  static constexpr use_process_nothrow_t use_process_nothrow{false};

private:
  Object& here() {
    asio::io_context& ctx = detail::current_io_context("otp::follow");
    if (&ctx != ctx_) [[unlikely]] {
      if (object_.is_open()) {
        // Nothing is pending: a pending operation keeps the process here.
        const bool non_blocking = object_.non_blocking();
        const native_handle_type fd = object_.release();
        Object moved(ctx, protocol_, fd);
        if (non_blocking)
          moved.non_blocking(true);
        object_ = std::move(moved);
      } else {
        object_ = Object(ctx);
      }
      ctx_ = &ctx;
    }
    return object_;
  }

  asio::io_context* ctx_;
  protocol_type protocol_;
  Object object_;
};

} // namespace otp

template <class... Args>
struct asio::async_result<otp::use_process_t, void(Args...)> {
  template <class Initiation, class... InitArgs>
  static auto initiate(Initiation&& init, otp::use_process_t token, InitArgs&&... args) {
    return otp::detail::io_awaitable<true, std::decay_t<Initiation>, std::tuple<std::decay_t<InitArgs>...>,
                                     std::decay_t<Args>...>{std::forward<Initiation>(init),
                                                            std::tuple<std::decay_t<InitArgs>...>{
                                                              std::forward<InitArgs>(args)...},
                                                            token.binds};
  }
};

template <class... Args>
struct asio::async_result<otp::use_process_nothrow_t, void(Args...)> {
  template <class Initiation, class... InitArgs>
  static auto initiate(Initiation&& init, otp::use_process_nothrow_t token, InitArgs&&... args) {
    return otp::detail::io_awaitable<false, std::decay_t<Initiation>, std::tuple<std::decay_t<InitArgs>...>,
                                     std::decay_t<Args>...>{std::forward<Initiation>(init),
                                                            std::tuple<std::decay_t<InitArgs>...>{
                                                              std::forward<InitArgs>(args)...},
                                                            token.binds};
  }
};
