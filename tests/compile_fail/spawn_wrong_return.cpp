// Expected to fail: a process function that does not return otp::task<void>.
#include "otp/otp.hpp"

int body(int);

void start(otp::node& n) { n.spawn(body, 1); }
