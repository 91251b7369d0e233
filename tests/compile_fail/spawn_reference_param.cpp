// Expected to fail: a process function that takes a reference parameter.
#include "otp/otp.hpp"

#include <string>

otp::task<void> body(const std::string& s);

void start(otp::node& n) {
  std::string s = "dangles";
  n.spawn(body, s);
}
