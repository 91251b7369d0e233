// Expected to fail: a cast with a request type the module has no handle_cast for.
#include "behaviours/gen_server.hpp"

struct counter {
  struct add {
    int n;
  };
  int value = 0;
  void handle_cast(otp::context&, add a) { value += a.n; }
};

void client(otp::server_ref<counter> s) { otp::gen_server::cast(s, 42); }
