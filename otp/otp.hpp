// SPDX-License-Identifier: Apache-2.0
// otp/otp.hpp - the runtime in one include.
#pragma once

#include "otp/asio.hpp"
#include "otp/call.hpp"
#include "otp/error.hpp"
#include "otp/exit_reason.hpp"
#include "otp/node.hpp"
#include "otp/pid.hpp"
#include "otp/process.hpp"
#include "otp/receive.hpp"
#include "otp/scheduler.hpp"
#include "otp/task.hpp"
