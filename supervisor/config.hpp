// SPDX-License-Identifier: Apache-2.0
// supervisor/config.hpp - supervision trees from JSON: start functions
// registered by name in C++, and a loader that checks the whole file before
// anything starts.
#pragma once

#include "supervisor/dynamic_supervisor.hpp"
#include "supervisor/supervisor.hpp"

#include <boost/outcome/try.hpp>
#include <nlohmann/json.hpp>

#include <concepts>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace otp {

using json = nlohmann::json;

/// How deeply a configuration's JSON may nest (the root object is level 1).
/// Deeper input is refused while it is parsed, before anything copies or
/// converts it (those recurse once per level).
inline constexpr std::size_t max_config_depth = 100;

/// The start functions a JSON tree may name in `"start"`, each with the
/// type its `"args"` are converted to (through nlohmann's from_json).
///
///     otp::start_table t;
///     t.worker<shard, shard_config>("shard");          // args -> shard_config -> shard(config)
///     t.function("acceptor", [](acceptor_config c) { return otp::process_worker(accept_loop, c); });
///     t.dynamic<conn_config, int>("connection", make_connection);   // start_child(sup, fd)
class start_table {
public:
  /// A gen_server module M, constructed from its config C (or from nothing
  /// when C is void). A child's `"name"` registers it under that name.
  template <class M, class C = void>
  start_table& worker(std::string name) {
    entry e;
    e.make = [](const json& args, const std::optional<std::string>& reg, const std::string& path) -> result<start_fn> {
      if constexpr (std::is_void_v<C>) {
        BOOST_OUTCOME_TRY(no_args(args, path));
        return reg ? otp::named_worker<M>(server_name(*reg)) : otp::worker<M>();
      } else {
        BOOST_OUTCOME_TRY(auto config, convert<C>(args, path));
        return reg ? otp::named_worker<M>(server_name(*reg), std::move(config)) : otp::worker<M>(std::move(config));
      }
    };
    return add(std::move(name), std::move(e));
  }

  /// Any start function: `factory(config)` returns the child's start_fn,
  /// where the config's type is the factory's parameter type (converted from
  /// `"args"`); a factory without a parameter takes no args. `"name"` is not
  /// allowed for these (the function decides how its child is named).
  template <class F>
  start_table& function(std::string name, F factory) {
    entry e;
    e.make = [factory = std::move(factory)](const json& args, const std::optional<std::string>& reg,
                                            const std::string& path) -> result<start_fn> {
      if (reg)
        return error{errc::invalid_child_spec, path + "/name: this start function does not take a name"};
      if constexpr (std::is_invocable_r_v<start_fn, F&>) {
        BOOST_OUTCOME_TRY(no_args(args, path));
        try {
          return start_fn(factory());
        } catch (...) {
          return error{errc::invalid_child_spec, path + ": " + thrown("the start function")};
        }
      } else {
        static_assert(detail::handler_traits<F>::valid,
                      "start_table::function: the factory must take no parameter or one (its config)");
        using C = typename detail::handler_traits<F>::arg;
        BOOST_OUTCOME_TRY(auto config, convert<C>(args, path));
        try {
          return start_fn(factory(std::move(config)));
        } catch (...) {
          return error{errc::invalid_child_spec, path + "/args: " + thrown("the start function")};
        }
      }
    };
    return add(std::move(name), std::move(e));
  }

  /// The template of a dynamic supervisor's children: made from config C,
  /// it takes start_child's extra arguments `Extra...`.
  template <class C, class... Extra>
  start_table& dynamic(std::string name,
                       std::type_identity_t<std::function<std::function<task<result<pid>>(Extra...)>(C)>> factory) {
    entry e;
    e.make_dynamic = [factory = std::move(factory)](const json& args, const dynamic_template& t,
                                                    const std::string& path) -> result<start_fn> {
      BOOST_OUTCOME_TRY(auto config, convert<C>(args, path));
      try {
        dynamic_child_spec<Extra...> spec{.id = t.id, .start = factory(std::move(config)), .restart = t.restart,
                                          .shutdown = t.shutdown, .type = t.type};
        return dynamic_supervisor::starter<Extra...>(t.flags, std::move(spec),
                                                     t.name ? std::optional<server_name>(*t.name) : std::nullopt);
      } catch (...) {
        return error{errc::invalid_child_spec, path + "/args: " + thrown("the start function")};
      }
    };
    return add(std::move(name), std::move(e));
  }

  /// Returns whether `name` is registered.
  [[nodiscard]] bool contains(std::string_view name) const { return entries_.find(std::string(name)) != entries_.end(); }

  /// @private What the loader needs to build a dynamic supervisor.
  struct dynamic_template {
    std::string id;
    restart_type restart = restart_type::permanent;
    std::optional<shutdown_policy> shutdown;
    child_type type = child_type::worker;
    dynamic_supervisor_flags flags;
    std::optional<std::string> name; // the dynamic supervisor's registered name
  };
  /// @private
  struct entry {
    std::function<result<start_fn>(const json&, const std::optional<std::string>&, const std::string&)> make;
    std::function<result<start_fn>(const json&, const dynamic_template&, const std::string&)> make_dynamic;
  };
  /// @private
  [[nodiscard]] const entry* find(const std::string& name) const {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : &it->second;
  }

private:
  start_table& add(std::string name, entry e);
  static result<void> no_args(const json& args, const std::string& path);

  template <class C>
  static result<C> convert(const json& args, const std::string& path) {
    // A user's from_json may throw anything: each is this child's error.
    try {
      return args.is_null() ? json::object().get<C>() : args.get<C>();
    } catch (...) {
      return error{errc::invalid_child_spec, path + "/args: " + thrown("the conversion")};
    }
  }
  /// The message of the exception in flight (call only inside a catch
  /// block); `what` names the code that threw, for a non-std exception.
  static std::string thrown(std::string_view what);

  std::map<std::string, entry> entries_;
};

namespace detail {
template <class T>
concept config_int = std::integral<T> && !std::same_as<T, bool>;

/// `v` as a T within [lo, hi], or nothing (a float, a string, out of range).
template <config_int T>
std::optional<T> integer_within(const json& v, T lo, T hi) {
  if (v.is_number_unsigned()) {
    const auto x = v.get<std::uint64_t>();
    if (std::cmp_less_equal(lo, x) && std::cmp_less_equal(x, hi))
      return static_cast<T>(x);
  } else if (v.is_number_integer()) {
    const auto x = v.get<std::int64_t>();
    if (std::cmp_less_equal(lo, x) && std::cmp_less_equal(x, hi))
      return static_cast<T>(x);
  }
  return std::nullopt;
}
/// Throws std::invalid_argument: "<key> must be an integer from <lo> to <hi>, not <v>"
/// (or "... is missing" when `v` is null, "args must be an object ..." when `args` is not).
[[noreturn]] void bad_integer(const json& args, std::string_view key, std::string lo, std::string hi, const json* v);
} // namespace detail

/// The integer at `key` of a config's args, within [lo, hi], for a
/// from_json:
///
///     c.port = otp::integer_at<int>(j, "port", 1, 65535);
///
/// Anything else (missing, a string, 2.5, 1e30, 70000) throws
/// std::invalid_argument that names the key, the range and the value; the
/// loader reports it with the child's path. nlohmann's own `get<int>()` and
/// `value()` do not check: they truncate 2.5 to 2, and converting 1e30 to an
/// int is undefined behaviour.
template <detail::config_int T>
T integer_at(const json& args, std::string_view key, std::type_identity_t<T> lo = std::numeric_limits<T>::min(),
             std::type_identity_t<T> hi = std::numeric_limits<T>::max()) {
  const json* v = nullptr;
  if (args.is_object())
    if (auto it = args.find(key); it != args.end())
      v = &*it;
  if (v)
    if (auto x = detail::integer_within<T>(*v, lo, hi))
      return *x;
  detail::bad_integer(args, key, std::to_string(lo), std::to_string(hi), v);
}

/// As integer_at, but `fallback` when `key` is absent (as json::value).
///
///     c.count = otp::integer_or(j, "count", c.count, 1, 1024);
template <detail::config_int T>
T integer_or(const json& args, std::string_view key, T fallback,
             std::type_identity_t<T> lo = std::numeric_limits<T>::min(),
             std::type_identity_t<T> hi = std::numeric_limits<T>::max()) {
  if (args.is_object() && !args.contains(key))
    return fallback;
  return integer_at<T>(args, key, lo, hi);
}

/// A whole application file: its name, dependencies, environment, and the
/// top supervisor's flags and children, ready to start.
struct app_config {
  std::string application;
  std::string description;
  std::vector<std::string> applications; ///< must be running first
  json env = json::object();
  supervisor_flags flags;
  std::optional<std::string> name; ///< the top supervisor's registered name
  std::vector<child_spec> children;
};

/// Checks and converts a parsed application document; `source` names it in
/// errors. Every error is `invalid_child_spec` with the context
/// "<source>: <json path>: <problem>"; on error nothing was created.
[[nodiscard]] result<app_config> load_app_config(const json& doc, const start_table& table,
                                                 std::string_view source = "config");

/// Parses `text` (a JSON syntax error gives "<source>:<line>:<column>: ...") and loads it.
[[nodiscard]] result<app_config> parse_app_config(std::string_view text, const start_table& table,
                                                  std::string_view source = "config");

/// Reads the file at `path` and loads it.
[[nodiscard]] result<app_config> read_app_config(const std::string& path, const start_table& table);

} // namespace otp
