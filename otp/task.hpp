// SPDX-License-Identifier: Apache-2.0
// otp/task.hpp - the coroutine type of processes and of the functions they await.
#pragma once

#include "otp/detail/pool.hpp"

#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace otp {

namespace detail {

// Records an exception that escaped a process's outermost frame.
void record_crash(std::exception_ptr e) noexcept;

struct promise_base {
  std::coroutine_handle<> continuation;
  std::exception_ptr exception;

  struct final_awaiter {
    [[nodiscard]] bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) const noexcept {
      // Symmetric transfer to the awaiting frame; the outermost frame of a
      // process returns to its scheduler, which sees done() and reaps it.
      auto c = h.promise().continuation;
      return c ? c : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  final_awaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept {
    if (continuation)
      exception = std::current_exception();
    else
      record_crash(std::current_exception());
  }

  // Frames come from the thread's pool: spawning a process costs a pop.
  static void* operator new(std::size_t n) { return pool_allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { pool_deallocate(p, n); }
};

} // namespace detail

/// A lazily started coroutine: a process body, or a function a process awaits.
///
/// `co_await f()` runs `f` in the awaiting process (symmetric transfer, no
/// scheduler round trip) and returns its value or rethrows its exception.
/// A task owns its frame: destroying a suspended process destroys every
/// frame it is awaiting, innermost last, and runs their destructors.
template <class T = void>
class [[nodiscard]] task {
public:
  struct promise_type : detail::promise_base {
    std::optional<T> value;
    task get_return_object() noexcept {
      return task{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    template <class U = T>
    void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
      value.emplace(std::forward<U>(v));
    }
  };

  task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      if (h_)
        h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (h_)
      h_.destroy();
  }

  [[nodiscard]] bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    h_.promise().continuation = awaiting;
    return h_;
  }
  T await_resume() {
    auto& p = h_.promise();
    if (p.exception)
      std::rethrow_exception(p.exception);
    return std::move(*p.value);
  }

  /// @private Releases the frame to the runtime (spawn).
  [[nodiscard]] std::coroutine_handle<promise_type> release() noexcept {
    return std::exchange(h_, {});
  }

private:
  explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

template <>
class [[nodiscard]] task<void> {
public:
  struct promise_type : detail::promise_base {
    task get_return_object() noexcept {
      return task{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    void return_void() const noexcept {}
  };

  task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      if (h_)
        h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (h_)
      h_.destroy();
  }

  [[nodiscard]] bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    h_.promise().continuation = awaiting;
    return h_;
  }
  void await_resume() {
    if (auto& e = h_.promise().exception)
      std::rethrow_exception(e);
  }

  /// @private Releases the frame to the runtime (spawn).
  [[nodiscard]] std::coroutine_handle<promise_type> release() noexcept {
    return std::exchange(h_, {});
  }

private:
  explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

} // namespace otp
