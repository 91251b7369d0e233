// SPDX-License-Identifier: Apache-2.0
#include "otp/pid.hpp"

#include <ostream>

namespace otp {

std::string pid::to_string() const {
  return "<0." + std::to_string(scheduler_index()) + "." + std::to_string(serial()) + ">";
}

std::ostream& operator<<(std::ostream& os, const pid& p) { return os << p.to_string(); }

std::string monitor_ref::to_string() const { return "#Ref<0." + std::to_string(value_) + ">"; }

std::ostream& operator<<(std::ostream& os, const monitor_ref& r) { return os << r.to_string(); }

} // namespace otp
