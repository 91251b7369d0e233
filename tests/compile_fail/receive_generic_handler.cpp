// Expected to fail: a receive handler whose message type cannot be named.
#include "otp/otp.hpp"

otp::task<void> body() {
  co_await otp::receive([](auto v) { return v; });
}
