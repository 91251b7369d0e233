// SPDX-License-Identifier: Apache-2.0
#include "supervisor/config.hpp"

#include <boost/outcome/try.hpp>

#include <fstream>
#include <limits>
#include <initializer_list>
#include <set>
#include <sstream>
#include <unordered_set>

namespace otp {

// ------------------------------------------------------------- start table

start_table& start_table::add(std::string name, entry e) {
  if (name.empty())
    throw std::invalid_argument("start_table: a start function needs a name");
  if (!entries_.emplace(name, std::move(e)).second)
    throw std::invalid_argument("start_table: '" + name + "' is registered twice");
  return *this;
}

result<void> start_table::no_args(const json& args, const std::string& path) {
  if (args.is_null() || (args.is_object() && args.empty()))
    return outcome::success();
  return error{errc::invalid_child_spec, path + "/args: this start function takes no args"};
}

std::string start_table::describe(const json::exception& e) {
  // nlohmann's what() starts with "[json.exception.type_error.302] ": keep the sentence.
  std::string w = e.what();
  if (auto close = w.find("] "); w.starts_with("[json.exception") && close != std::string::npos)
    w = w.substr(close + 2);
  return w;
}

// ------------------------------------------------------------------ loader

namespace {

// Walks the document with the source name and the JSON path, for errors.
class loader {
public:
  loader(const start_table& t, std::string_view source) : table_(t), source_(source) {}

  result<app_config> app(const json& doc) {
    BOOST_OUTCOME_TRY(object(doc, ""));
    BOOST_OUTCOME_TRY(keys(doc, "", {"application", "description", "applications", "env", "supervisor"}));
    app_config out;
    BOOST_OUTCOME_TRY(out.application, required_string(doc, "", "application"));
    if (out.application.empty())
      return fail("/application", "the application name is empty");
    BOOST_OUTCOME_TRY(auto d, optional_string(doc, "", "description"));
    out.description = d.value_or("");
    if (doc.contains("applications")) {
      const json& deps = doc["applications"];
      if (!deps.is_array())
        return fail("/applications", "must be an array of application names, not " + type_of(deps));
      for (std::size_t i = 0; i < deps.size(); ++i) {
        if (!deps[i].is_string())
          return fail("/applications/" + std::to_string(i), "must be a string, not " + type_of(deps[i]));
        out.applications.push_back(deps[i].get<std::string>());
      }
    }
    if (doc.contains("env")) {
      if (!doc["env"].is_object())
        return fail("/env", "must be an object, not " + type_of(doc["env"]));
      out.env = doc["env"];
    }
    if (!doc.contains("supervisor"))
      return fail("", "missing key \"supervisor\" (the top supervisor)");
    const json& top = doc["supervisor"];
    const std::string path = "/supervisor";
    BOOST_OUTCOME_TRY(object(top, path));
    BOOST_OUTCOME_TRY(keys(top, path, {"id", "name", "strategy", "intensity", "period", "auto_shutdown", "children"}));
    BOOST_OUTCOME_TRY(out.flags, flags(top, path));
    BOOST_OUTCOME_TRY(out.name, optional_string(top, path, "name"));
    BOOST_OUTCOME_TRY(out.children, children(top, path));
    return out;
  }

private:
  [[nodiscard]] error fail(const std::string& path, const std::string& problem) const {
    return error{errc::invalid_child_spec, std::string(source_) + ": " + (path.empty() ? "/" : path) + ": " + problem};
  }

  static std::string type_of(const json& v) {
    if (v.is_number_integer())
      return "an integer";
    if (v.is_number())
      return "a number";
    if (v.is_string())
      return "a string";
    if (v.is_boolean())
      return "a boolean";
    if (v.is_array())
      return "an array";
    if (v.is_object())
      return "an object";
    return "null";
  }

  result<void> object(const json& v, const std::string& path) const {
    if (!v.is_object())
      return fail(path, "must be an object, not " + type_of(v));
    return outcome::success();
  }

  // Unknown keys are errors: a mistyped "restrat" must not fall back to a default.
  result<void> keys(const json& v, const std::string& path, std::initializer_list<std::string_view> allowed) const {
    for (auto it = v.begin(); it != v.end(); ++it) {
      bool known = false;
      for (auto a : allowed)
        known = known || a == it.key();
      if (!known) {
        std::string list;
        for (auto a : allowed)
          list += (list.empty() ? "" : ", ") + std::string(a);
        return fail(path + "/" + it.key(), "unknown key \"" + it.key() + "\" (allowed here: " + list + ")");
      }
    }
    return outcome::success();
  }

  result<std::string> required_string(const json& v, const std::string& path, const char* key) const {
    if (!v.contains(key))
      return fail(path, std::string("missing key \"") + key + "\"");
    const json& s = v[key];
    if (!s.is_string())
      return fail(path + "/" + key, "must be a string, not " + type_of(s));
    return s.get<std::string>();
  }

  result<std::optional<std::string>> optional_string(const json& v, const std::string& path, const char* key) const {
    if (!v.contains(key))
      return std::optional<std::string>{};
    const json& s = v[key];
    if (!s.is_string() || s.get<std::string>().empty())
      return fail(path + "/" + key, "must be a non-empty string, not " + (s.is_string() ? "empty" : type_of(s)));
    return std::optional<std::string>(s.get<std::string>());
  }

  result<std::int64_t> integer(const json& v, const std::string& path, const char* key, std::int64_t dflt,
                               std::int64_t min) const {
    if (!v.contains(key))
      return dflt;
    const json& n = v[key];
    if (!n.is_number_integer())
      return fail(path + "/" + key, "must be an integer, not " + type_of(n));
    const auto x = n.get<std::int64_t>();
    if (x < min)
      return fail(path + "/" + key, "must be at least " + std::to_string(min) + ", not " + std::to_string(x));
    return x;
  }

  result<supervisor_flags> flags(const json& v, const std::string& path, bool dynamic = false) const {
    supervisor_flags f;
    BOOST_OUTCOME_TRY(auto s, optional_string(v, path, "strategy"));
    if (s && !dynamic) {
      if (*s == "one_for_one")
        f.strategy = strategy::one_for_one;
      else if (*s == "one_for_all")
        f.strategy = strategy::one_for_all;
      else if (*s == "rest_for_one")
        f.strategy = strategy::rest_for_one;
      else if (*s == "simple_one_for_one")
        return fail(path + "/strategy", "simple_one_for_one is for a child supervisor with a \"template\"");
      else
        return fail(path + "/strategy", "unknown strategy \"" + *s
                                          + "\" (expected one_for_one, one_for_all, rest_for_one or "
                                            "simple_one_for_one)");
    }
    BOOST_OUTCOME_TRY(auto intensity, integer(v, path, "intensity", 1, 0));
    if (intensity > std::numeric_limits<int>::max())
      return fail(path + "/intensity", "is too large");
    f.intensity = static_cast<int>(intensity);
    BOOST_OUTCOME_TRY(auto period, integer(v, path, "period", 5, 1));
    f.period = std::chrono::seconds(period);
    BOOST_OUTCOME_TRY(auto a, optional_string(v, path, "auto_shutdown"));
    if (a) {
      if (*a == "never")
        f.auto_shutdown = auto_shutdown::never;
      else if (*a == "any_significant")
        f.auto_shutdown = auto_shutdown::any_significant;
      else if (*a == "all_significant")
        f.auto_shutdown = auto_shutdown::all_significant;
      else
        return fail(path + "/auto_shutdown",
                    "unknown value \"" + *a + "\" (expected never, any_significant or all_significant)");
    }
    return f;
  }

  result<std::optional<shutdown_policy>> shutdown(const json& v, const std::string& path) const {
    if (!v.contains("shutdown"))
      return std::optional<shutdown_policy>{};
    const json& s = v["shutdown"];
    if (s.is_string()) {
      if (s == "brutal_kill")
        return std::optional<shutdown_policy>(shutdown_policy::brutal_kill());
      if (s == "infinity")
        return std::optional<shutdown_policy>(shutdown_policy(otp::infinity));
      return fail(path + "/shutdown", "unknown value \"" + s.get<std::string>()
                                        + "\" (expected milliseconds, \"brutal_kill\" or \"infinity\")");
    }
    if (!s.is_number_integer())
      return fail(path + "/shutdown", "must be milliseconds, \"brutal_kill\" or \"infinity\", not " + type_of(s));
    if (s.get<std::int64_t>() < 0)
      return fail(path + "/shutdown", "must not be negative");
    return std::optional<shutdown_policy>(shutdown_policy(std::chrono::milliseconds(s.get<std::int64_t>())));
  }

  result<restart_type> restart(const json& v, const std::string& path) const {
    BOOST_OUTCOME_TRY(auto r, optional_string(v, path, "restart"));
    if (!r || *r == "permanent")
      return restart_type::permanent;
    if (*r == "transient")
      return restart_type::transient;
    if (*r == "temporary")
      return restart_type::temporary;
    return fail(path + "/restart", "unknown restart type \"" + *r + "\" (expected permanent, transient or temporary)");
  }

  result<child_type> type(const json& v, const std::string& path) const {
    BOOST_OUTCOME_TRY(auto t, optional_string(v, path, "type"));
    if (!t || *t == "worker")
      return child_type::worker;
    if (*t == "supervisor")
      return child_type::supervisor;
    return fail(path + "/type", "unknown type \"" + *t + "\" (expected worker or supervisor)");
  }

  result<bool> boolean(const json& v, const std::string& path, const char* key) const {
    if (!v.contains(key))
      return false;
    if (!v[key].is_boolean())
      return fail(path + "/" + key, "must be true or false, not " + type_of(v[key]));
    return v[key].get<bool>();
  }

  result<std::vector<child_spec>> children(const json& sup, const std::string& path) const {
    std::vector<child_spec> out;
    if (!sup.contains("children"))
      return out;
    const json& list = sup["children"];
    if (!list.is_array())
      return fail(path + "/children", "must be an array, not " + type_of(list));
    std::unordered_set<std::string> ids;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string p = path + "/children/" + std::to_string(i);
      BOOST_OUTCOME_TRY(auto c, child(list[i], p));
      if (!ids.insert(c.id).second)
        return fail(p + "/id", "duplicate id \"" + c.id + "\"");
      out.push_back(std::move(c));
    }
    return out;
  }

  result<child_spec> child(const json& c, const std::string& path) const {
    BOOST_OUTCOME_TRY(object(c, path));
    child_spec spec;
    BOOST_OUTCOME_TRY(spec.id, required_string(c, path, "id"));
    if (spec.id.empty())
      return fail(path + "/id", "the id is empty");
    BOOST_OUTCOME_TRY(spec.type, type(c, path));
    BOOST_OUTCOME_TRY(spec.restart, restart(c, path));
    BOOST_OUTCOME_TRY(spec.shutdown, shutdown(c, path));
    BOOST_OUTCOME_TRY(spec.significant, boolean(c, path, "significant"));
    if (spec.significant && spec.restart == restart_type::permanent)
      return fail(path + "/significant", "a significant child cannot be permanent");
    BOOST_OUTCOME_TRY(auto name, optional_string(c, path, "name"));
    const bool inline_sup = spec.type == child_type::supervisor && !c.contains("start");
    if (!inline_sup) {
      // A worker, or a supervisor made by a registered start function.
      BOOST_OUTCOME_TRY(keys(c, path, {"id", "start", "args", "name", "restart", "shutdown", "type", "significant"}));
      BOOST_OUTCOME_TRY(auto start, required_string(c, path, "start"));
      const start_table::entry* e = table_.find(start);
      if (e == nullptr)
        return fail(path + "/start", "unknown start function \"" + start + "\" (not registered in the start table)");
      if (!e->make)
        return fail(path + "/start", "\"" + start + "\" is a dynamic child template; use it as a \"template\"");
      const json args = c.contains("args") ? c["args"] : json();
      auto made = e->make(args, name, prefix() + path);
      if (!made)
        return error{errc::invalid_child_spec, made.error().context};
      spec.start = std::move(made).value();
      return spec;
    }
    BOOST_OUTCOME_TRY(auto s, optional_string(c, path, "strategy"));
    if (s && *s == "simple_one_for_one")
      return dynamic(c, path, std::move(spec), std::move(name));
    BOOST_OUTCOME_TRY(keys(c, path, {"id", "name", "type", "restart", "shutdown", "significant", "strategy", "intensity",
                                      "period", "auto_shutdown", "children"}));
    BOOST_OUTCOME_TRY(auto f, flags(c, path));
    BOOST_OUTCOME_TRY(auto kids, children(c, path));
    spec.start = supervisor::starter(f, std::move(kids), name ? std::optional<server_name>(*name) : std::nullopt);
    return spec;
  }

  // {"type": "supervisor", "strategy": "simple_one_for_one", "max_children": N,
  //  "template": {"id", "start", "args", "restart", "shutdown", "type"}}
  result<child_spec> dynamic(const json& c, const std::string& path, child_spec spec,
                             std::optional<std::string> name) const {
    BOOST_OUTCOME_TRY(keys(c, path, {"id", "name", "type", "restart", "shutdown", "significant", "strategy", "intensity",
                                      "period", "max_children", "template"}));
    start_table::dynamic_template t;
    BOOST_OUTCOME_TRY(auto f, flags(c, path, true));
    t.flags.intensity = f.intensity;
    t.flags.period = f.period;
    if (c.contains("max_children")) {
      BOOST_OUTCOME_TRY(auto m, integer(c, path, "max_children", 0, 0));
      t.flags.max_children = static_cast<std::size_t>(m);
    }
    t.name = std::move(name);
    if (!c.contains("template"))
      return fail(path, "missing key \"template\" (the child template of a simple_one_for_one supervisor)");
    const json& tc = c["template"];
    const std::string tp = path + "/template";
    BOOST_OUTCOME_TRY(object(tc, tp));
    BOOST_OUTCOME_TRY(keys(tc, tp, {"id", "start", "args", "restart", "shutdown", "type"}));
    BOOST_OUTCOME_TRY(t.id, required_string(tc, tp, "id"));
    BOOST_OUTCOME_TRY(t.restart, restart(tc, tp));
    BOOST_OUTCOME_TRY(t.shutdown, shutdown(tc, tp));
    BOOST_OUTCOME_TRY(t.type, type(tc, tp));
    BOOST_OUTCOME_TRY(auto start, required_string(tc, tp, "start"));
    const start_table::entry* e = table_.find(start);
    if (e == nullptr)
      return fail(tp + "/start", "unknown start function \"" + start + "\" (not registered in the start table)");
    if (!e->make_dynamic)
      return fail(tp + "/start", "\"" + start + "\" is not a dynamic child template (register it with start_table::dynamic)");
    const json args = tc.contains("args") ? tc["args"] : json();
    auto made = e->make_dynamic(args, t, prefix() + tp);
    if (!made)
      return error{errc::invalid_child_spec, made.error().context};
    spec.start = std::move(made).value();
    return spec;
  }

  [[nodiscard]] std::string prefix() const { return std::string(source_) + ": "; }

  const start_table& table_;
  std::string_view source_;
};

// "line L, column C" of a byte offset (1-based), for syntax errors.
std::pair<std::size_t, std::size_t> line_column(std::string_view text, std::size_t byte) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

} // namespace

result<app_config> load_app_config(const json& doc, const start_table& table, std::string_view source) {
  return loader(table, source).app(doc);
}

result<app_config> parse_app_config(std::string_view text, const start_table& table, std::string_view source) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    // e.byte is 1-based and points just past the offending character.
    const auto [line, col] = line_column(text, e.byte > 0 ? e.byte - 1 : 0);
    std::string what = e.what();
    if (auto p = what.find("syntax error"); p != std::string::npos)
      what = what.substr(p);
    return error{errc::invalid_child_spec, std::string(source) + ":" + std::to_string(line) + ":" + std::to_string(col)
                                             + ": JSON " + what};
  }
  return load_app_config(doc, table, source);
}

result<app_config> read_app_config(const std::string& path, const start_table& table) {
  std::ifstream in(path);
  if (!in)
    return error{errc::invalid_argument, path + ": cannot read the file"};
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_app_config(buf.str(), table, path);
}

} // namespace otp
