// SPDX-License-Identifier: Apache-2.0
// otp/fwd.hpp - forward declarations of the runtime's types.
#pragma once

namespace otp {

class node;
class scheduler;
class pid;
class exit_reason;
class monitor_ref;
class timer_ref;
template <class T>
class task;

namespace detail {
struct process;
struct item;
struct message;
} // namespace detail

} // namespace otp
