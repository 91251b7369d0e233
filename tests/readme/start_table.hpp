// What the README's start_table example assumes (tests/readme/check.py).
struct pool_config {
  int size = 0;
};
inline void from_json(const otp::json& j, pool_config& c) { c.size = j.value("size", c.size); }
struct db_pool {
  explicit db_pool(pool_config) {}
};
inline otp::task<void> work_loop() { co_return; }
struct conn_config {};
inline void from_json(const otp::json&, conn_config&) {}
std::function<otp::task<otp::result<otp::pid>>(int)> make_connection(conn_config c);
