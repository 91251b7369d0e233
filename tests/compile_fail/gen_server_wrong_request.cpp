// Expected to fail: a call with a request type the module has no handle_call for.
#include "behaviours/gen_server.hpp"

struct counter {
  struct get {};
  int value = 0;
  int handle_call(otp::context&, get) { return value; }
};
struct not_a_request {};

otp::task<void> client(otp::server_ref<counter> s) {
  auto r = co_await otp::gen_server::call(s, not_a_request{});
  (void)r;
}
