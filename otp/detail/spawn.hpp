// SPDX-License-Identifier: Apache-2.0
// otp/detail/spawn.hpp - turning a function and its arguments into a process frame.
#pragma once

#include "otp/task.hpp"

#include <functional>
#include <type_traits>
#include <utility>

namespace otp::detail {

// The parameter types of a plain function, a function pointer, or a
// non-generic function object; `known` is false when they cannot be named.
template <class F, class = void>
struct params_of {
  static constexpr bool known = false;
  static constexpr bool any_reference = false;
};
template <class R, class... P>
struct params_of<R (*)(P...), void> {
  static constexpr bool known = true;
  static constexpr bool any_reference = (std::is_reference_v<P> || ...);
};
template <class R, class... P>
struct params_of<R(P...), void> : params_of<R (*)(P...)> {};
template <class C, class R, class... P>
struct params_of<R (C::*)(P...) const, void> : params_of<R (*)(P...)> {};
template <class C, class R, class... P>
struct params_of<R (C::*)(P...), void> : params_of<R (*)(P...)> {};
template <class F>
struct params_of<F, std::void_t<decltype(&F::operator())>> : params_of<decltype(&F::operator())> {};

// Keeps a stateful function object (a capturing lambda) alive in a frame
// of its own for the whole life of the process: calling a capturing
// coroutine lambda and keeping only its result would leave the captures
// dangling after the first suspension.
template <class Fn, class... A>
task<void> run_function_object(Fn f, A... args) {
  co_await std::invoke(f, std::move(args)...);
}

template <class F, class... Args>
[[nodiscard]] task<void> make_process_frame(F&& f, Args&&... args) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<Fn&, std::decay_t<Args>...>,
                "spawn: the function cannot be called with these arguments");
  static_assert(std::is_same_v<std::invoke_result_t<Fn&, std::decay_t<Args>...>, task<void>>,
                "spawn: a process function must return otp::task<void>");
  if constexpr (std::is_empty_v<Fn> || std::is_pointer_v<Fn> || std::is_function_v<std::remove_reference_t<F>>) {
    static_assert(!params_of<Fn>::any_reference,
                  "spawn: a process function must take its parameters by value; "
                  "a reference parameter would dangle after its first suspension");
    // Plain functions and captureless lambdas hold nothing: call them directly
    // and their frame (by-value parameters included) is the process.
    std::decay_t<Fn> fn(std::forward<F>(f));
    return std::invoke(fn, std::decay_t<Args>(std::forward<Args>(args))...);
  } else {
    return run_function_object<Fn, std::decay_t<Args>...>(std::forward<F>(f), std::forward<Args>(args)...);
  }
}

} // namespace otp::detail
