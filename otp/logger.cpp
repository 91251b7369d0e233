// SPDX-License-Identifier: Apache-2.0
#include "otp/logger.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <mutex>

namespace otp {

namespace {

std::atomic<log_level> min_level{log_level::notice};
std::mutex handler_mutex;
std::shared_ptr<const log_handler> custom_handler; // null: the default

spdlog::level::level_enum to_spdlog(log_level l) noexcept {
  switch (l) {
    case log_level::debug: return spdlog::level::debug;
    case log_level::info:
    case log_level::notice: return spdlog::level::info;
    case log_level::warning: return spdlog::level::warn;
    case log_level::error: return spdlog::level::err;
    case log_level::critical: return spdlog::level::critical;
    case log_level::none: return spdlog::level::off;
  }
  return spdlog::level::info;
}

} // namespace

void set_log_handler(log_handler h) {
  auto next = h ? std::make_shared<const log_handler>(std::move(h)) : nullptr;
  std::lock_guard lock(handler_mutex);
  custom_handler = std::move(next);
}

void set_log_level(log_level min) noexcept { min_level.store(min, std::memory_order_relaxed); }

bool log_enabled(log_level level) noexcept {
  const log_level min = min_level.load(std::memory_order_relaxed);
  return min != log_level::none && level >= min;
}

void log(log_level level, std::string_view domain, std::string_view kind, std::string text,
         std::vector<log_field> fields) noexcept {
  if (!log_enabled(level))
    return;
  try {
    std::shared_ptr<const log_handler> h;
    {
      std::lock_guard lock(handler_mutex);
      h = custom_handler;
    }
    const log_event e{level, domain, kind, std::move(text), std::move(fields)};
    if (h)
      (*h)(e);
    else
      spdlog::default_logger_raw()->log(to_spdlog(level), "[{}] {}: {}", domain, kind, e.text);
  } catch (...) {
    // A report must never take its reporter down.
  }
}

} // namespace otp
