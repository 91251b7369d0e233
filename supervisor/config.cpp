// SPDX-License-Identifier: Apache-2.0
#include "supervisor/config.hpp"

#include <boost/outcome/try.hpp>

#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <vector>
#include <set>
#include <sstream>
#include <stdexcept>
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

void detail::bad_integer(const json& args, std::string_view key, std::string lo, std::string hi, const json* v) {
  const std::string k(key);
  if (!args.is_object())
    throw std::invalid_argument("args must be an object with " + k + ", not " + args.dump());
  if (!v)
    throw std::invalid_argument(k + " is missing (an integer from " + lo + " to " + hi + ")");
  throw std::invalid_argument(k + " must be an integer from " + lo + " to " + hi + ", not " + v->dump());
}

result<void> start_table::no_args(const json& args, const std::string& path) {
  if (args.is_null() || (args.is_object() && args.empty()))
    return outcome::success();
  return error{errc::invalid_child_spec, path + "/args: this start function takes no args"};
}

std::string start_table::thrown(std::string_view what) {
  try {
    throw;
  } catch (const json::exception& e) {
    // nlohmann's what() starts with "[json.exception.type_error.302] ": keep the sentence.
    std::string w = e.what();
    if (auto close = w.find("] "); w.starts_with("[json.exception") && close != std::string::npos)
      w = w.substr(close + 2);
    return w;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return std::string(what) + " threw an exception that is not a std::exception";
  }
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

  // An unsigned integer that an int64 cannot hold (get<int64_t> would wrap it).
  static bool too_large(const json& n) {
    return n.is_number_unsigned()
        && n.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
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
    if (too_large(n))
      return fail(path + "/" + key, "is too large");
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
    if (too_large(s))
      return fail(path + "/shutdown", "is too large");
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
      auto made = make(*e, c, name, path);
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
    auto made = make_dynamic(*e, tc, t, tp);
    if (!made)
      return error{errc::invalid_child_spec, made.error().context};
    spec.start = std::move(made).value();
    return spec;
  }

  [[nodiscard]] std::string prefix() const { return std::string(source_) + ": "; }

  // The table's entries catch what their conversions and factories throw;
  // these catch the rest (a throwing name or copy), so nothing escapes.
  result<start_fn> make(const start_table::entry& e, const json& c, const std::optional<std::string>& name,
                        const std::string& path) const {
    try {
      return e.make(c.contains("args") ? c["args"] : no_args, name, prefix() + path);
    } catch (const std::exception& ex) {
      return fail(path, ex.what());
    } catch (...) {
      return fail(path, "the start function threw an exception that is not a std::exception");
    }
  }
  result<start_fn> make_dynamic(const start_table::entry& e, const json& tc, const start_table::dynamic_template& t,
                                const std::string& path) const {
    try {
      return e.make_dynamic(tc.contains("args") ? tc["args"] : no_args, t, prefix() + path);
    } catch (const std::exception& ex) {
      return fail(path, ex.what());
    } catch (...) {
      return fail(path, "the start function threw an exception that is not a std::exception");
    }
  }

  static inline const json no_args;
  const start_table& table_;
  std::string_view source_;
};

// ------------------------------------------------------------ depth limit
//
// Copying, converting, comparing and dumping a json value recurse once per
// level, so a deep document could overflow the stack. Parsing builds the
// document through bounded_builder (nlohmann's parser itself is iterative),
// and load_app_config checks a caller's document with an iterative walk:
// both refuse a container at level max_config_depth + 1.

// The JSON path of a value from its keys and indices; a long one keeps its
// first four and last three steps around "...".
std::string json_path(const std::vector<std::string>& steps) {
  std::string out;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    if (steps.size() > 8 && i == 4) {
      out += "/...";
      i = steps.size() - 4;
      continue;
    }
    out += "/" + steps[i];
  }
  return out;
}

std::string too_deep() { return "nested deeper than " + std::to_string(max_config_depth) + " levels"; }

// The path of the first container nested deeper than the limit, if any.
std::optional<std::string> depth_violation(const json& doc) {
  struct level {
    const json* container;
    json::const_iterator next;
    std::size_t index = 0;
  };
  if (!doc.is_structured())
    return std::nullopt;
  std::vector<level> stack{{&doc, doc.cbegin()}};
  std::vector<std::string> steps;
  while (!stack.empty()) {
    level& top = stack.back();
    if (top.next == top.container->cend()) {
      stack.pop_back();
      if (!steps.empty())
        steps.pop_back();
      continue;
    }
    const json& child = *top.next;
    std::string step = top.container->is_object() ? top.next.key() : std::to_string(top.index);
    ++top.next;
    ++top.index;
    if (!child.is_structured())
      continue;
    steps.push_back(std::move(step));
    if (stack.size() == max_config_depth)
      return json_path(steps);
    stack.push_back({&child, child.cbegin()});
  }
  return std::nullopt;
}

// nlohmann's SAX events to a document, as its own DOM builder does, except
// that it stops at a container nested deeper than the limit and at a number
// out of a double's range, and knows the JSON path of either.
class bounded_builder {
public:
  explicit bounded_builder(json& root) : root_(root) {}

  bool null() { return add(json(nullptr)); }
  bool boolean(bool b) { return add(json(b)); }
  bool number_integer(json::number_integer_t n) { return add(json(n)); }
  bool number_unsigned(json::number_unsigned_t n) { return add(json(n)); }
  bool number_float(json::number_float_t x, const json::string_t&) { return add(json(x)); }
  bool string(json::string_t& s) { return add(json(std::move(s))); }
  bool binary(json::binary_t& b) { return add(json(std::move(b))); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool key(json::string_t& k) {
    keys_.back() = k;
    slot_ = &(*open_.back())[k];
    return true;
  }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t byte, const std::string& token, const json::exception& e) {
    // 406: a number that overflows a double; the rest are syntax errors.
    if (e.id == 406)
      problem_ = {next_path(), "the number " + token + " is out of range"};
    else
      syntax_ = {byte, e.what()};
    return false;
  }

  struct path_problem {
    std::string path, problem;
  };
  struct syntax_error {
    std::size_t byte;
    std::string what;
  };
  [[nodiscard]] const std::optional<path_problem>& problem() const { return problem_; }
  [[nodiscard]] const std::optional<syntax_error>& syntax() const { return syntax_; }

private:
  // Puts a value where the parser is: the root, an array's end, or the
  // slot of the last key; returns where it went.
  json* place(json&& v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    if (open_.back()->is_array())
      return &open_.back()->emplace_back(std::move(v));
    *slot_ = std::move(v);
    return slot_;
  }
  bool add(json&& v) {
    place(std::move(v));
    return true;
  }
  bool open(json&& container) {
    if (open_.size() == max_config_depth) {
      problem_ = {next_path(), too_deep()};
      return false;
    }
    open_.push_back(place(std::move(container)));
    keys_.emplace_back();
    return true;
  }
  bool close() {
    open_.pop_back();
    keys_.pop_back();
    return true;
  }
  // The path of the value the parser reads next.
  [[nodiscard]] std::string next_path() const {
    std::vector<std::string> steps;
    for (std::size_t i = 0; i < open_.size(); ++i) {
      if (open_[i]->is_object()) {
        steps.push_back(keys_[i]);
      } else {
        // An open array's last element is the open container above it; the
        // innermost one's next element is not added yet.
        const std::size_t n = open_[i]->size();
        steps.push_back(std::to_string(i + 1 < open_.size() ? n - 1 : n));
      }
    }
    return json_path(steps);
  }

  json& root_;
  std::vector<json*> open_;       // the containers being filled, outermost first
  std::vector<std::string> keys_; // each open object's current key
  json* slot_ = nullptr;          // where the value of the last key goes
  std::optional<path_problem> problem_;
  std::optional<syntax_error> syntax_;
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
  try {
    if (auto path = depth_violation(doc))
      return error{errc::invalid_child_spec, std::string(source) + ": " + *path + ": " + too_deep()};
    return loader(table, source).app(doc);
  } catch (const std::exception& e) {
    // What the loader does not expect (out of memory): still an error, never an escape.
    return error{errc::invalid_child_spec, std::string(source) + ": cannot load: " + e.what()};
  }
}

result<app_config> parse_app_config(std::string_view text, const start_table& table, std::string_view source) {
  json doc;
  try {
    bounded_builder builder(doc);
    if (!json::sax_parse(text, &builder)) {
      if (const auto& p = builder.problem())
        return error{errc::invalid_child_spec, std::string(source) + ": " + (p->path.empty() ? "/" : p->path) + ": "
                                                 + p->problem};
      const auto& syntax = builder.syntax().value();
      // The byte is 1-based and points just past the offending character.
      const auto [line, col] = line_column(text, syntax.byte > 0 ? syntax.byte - 1 : 0);
      std::string what = syntax.what;
      if (auto p = what.find("syntax error"); p != std::string::npos)
        what = what.substr(p);
      return error{errc::invalid_child_spec, std::string(source) + ":" + std::to_string(line) + ":"
                                               + std::to_string(col) + ": JSON " + what};
    }
  } catch (const std::exception& e) {
    return error{errc::invalid_child_spec, std::string(source) + ": cannot parse: " + e.what()};
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
