// Rendering parsed templates (jinja_ast.h): scopes as Jinja keeps them (a for loop's body has its
// own, so `set` inside a loop does not leak out — hence namespace()), the loop variable, and the
// filters, tests, builtins and Python methods chat templates call.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>

#include "m3/error.h"
#include "serve/jinja.h"
#include "serve/jinja_ast.h"

namespace m3::serve::jinja {

namespace {

using K = Value::Kind;
using Args = std::vector<Value>;
using Kwargs = std::map<std::string, Value>;

enum class Flow { Normal, Break, Continue };

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string strip(const std::string& s, bool left, bool right, const Value* chars = nullptr) {
  auto drop = [&](char c) { return chars && chars->kind == K::String ? chars->s.find(c) != std::string::npos : is_space(c); };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && drop(s[b])) ++b;
  if (right)
    while (e > b && drop(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string s) {
  for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string capitalize(const std::string& s) { return s.empty() ? s : upper(s.substr(0, 1)) + lower(s.substr(1)); }
std::string title(std::string s) {
  bool start = true;
  for (char& c : s) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    c = char(alpha ? (start ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c))) : c);
    start = !alpha;
  }
  return s;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to, int64_t count = -1) {
  if (from.empty()) return s;
  size_t at = 0;
  for (int64_t n = 0; (count < 0 || n < count) && (at = s.find(from, at)) != std::string::npos; ++n) {
    s.replace(at, from.size(), to);
    at += to.size();
  }
  return s;
}

// The items a for loop or a filter walks: a list's elements, a dict's keys, a string's characters.
Items items_of(const Value& v) {
  switch (v.kind) {
    case K::List: return *v.list;
    case K::Dict: {
      Items keys;
      for (const auto& [k, x] : *v.dict) keys.push_back(Value::string(k));
      return keys;
    }
    case K::String: {
      Items chars;
      for (auto& c : code_points(v.s)) chars.push_back(Value::string(c));
      return chars;
    }
    case K::Undefined: return {};
    default: throw Error(repr(v) + " is not iterable");
  }
}

int64_t to_int(const Value& v) {
  if (v.kind == K::Int) return v.i;
  if (v.kind == K::Bool) return v.b;
  if (v.kind == K::Float) return int64_t(v.f);
  throw Error("expected an integer, got " + repr(v));
}

Value arg(const Args& a, const Kwargs& kw, size_t i, const char* name, Value fallback = Value()) {
  if (i < a.size()) return a[i];
  auto it = kw.find(name);
  return it != kw.end() ? it->second : fallback;
}

class Renderer {
 public:
  explicit Renderer(const nlohmann::ordered_json& context) {
    scopes_.emplace_back();
    for (auto it = context.begin(); it != context.end(); ++it) scopes_[0][it.key()] = Value::from_json(it.value());
  }

  Flow exec(const Node& n, std::string& out) {
    switch (n.kind) {
      case Node::Kind::Body:
        for (const auto& c : n.a) {
          Flow f = exec(*c, out);
          if (f != Flow::Normal) return f;
        }
        return Flow::Normal;
      case Node::Kind::Text: out += n.name; return Flow::Normal;
      case Node::Kind::Output: out += str(eval(*n.a[0])); return Flow::Normal;
      case Node::Kind::If:
        for (size_t i = 0; i + 1 < n.a.size(); i += 2)
          if (eval(*n.a[i]).truthy()) return exec(*n.a[i + 1], out);
        if (n.a.size() % 2 == 1) return exec(*n.a.back(), out);
        return Flow::Normal;
      case Node::Kind::For: return exec_for(n, out);
      case Node::Kind::Set: {
        Value v;
        if (n.a[0]) {
          v = eval(*n.a[0]);
        } else {
          std::string body;
          exec(*n.a[1], body);
          v = Value::string(body);
        }
        if (n.names.size() == 1) {
          scopes_.back()[n.names[0]] = v;
        } else {
          Value ns = lookup(n.names[0]);
          if (ns.kind != K::Dict) throw Error("cannot set attribute '" + n.names[1] + "' of " + n.names[0] + ", which is not a namespace");
          set_key(*ns.dict, n.names[1], v);
        }
        return Flow::Normal;
      }
      case Node::Kind::Macro: {
        Value m = Value::builtin(n.name);
        m.macro = std::make_shared<const Macro>(Macro{std::shared_ptr<const Node>(std::shared_ptr<const Node>{}, &n)});
        scopes_.back()[n.name] = m;
        return Flow::Normal;
      }
      case Node::Kind::Break: return Flow::Break;
      case Node::Kind::Continue: return Flow::Continue;
      default: throw Error("internal: an expression where a statement belongs");
    }
  }

 private:
  static void set_key(Entries& d, const std::string& k, Value v) {
    for (auto& [key, x] : d)
      if (key == k) {
        x = std::move(v);
        return;
      }
    d.emplace_back(k, std::move(v));
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    static const char* const builtins[] = {"range", "namespace", "raise_exception", "dict", "strftime_now"};
    for (const char* b : builtins)
      if (name == b) return Value::builtin(name);
    return Value();
  }

  Flow exec_for(const Node& n, std::string& out) {
    Items all = items_of(eval(*n.a[0]));
    if (n.a[2]) {  // `for x in xs if cond`: filtered before loop.* counts
      Items kept;
      for (auto& v : all) {
        scopes_.emplace_back();
        bind(n.names, v);
        if (eval(*n.a[2]).truthy()) kept.push_back(v);
        scopes_.pop_back();
      }
      all = std::move(kept);
    }
    if (all.empty()) {
      if (n.a[3]) return exec(*n.a[3], out);
      return Flow::Normal;
    }
    const int64_t len = int64_t(all.size());
    for (int64_t i = 0; i < len; ++i) {
      scopes_.emplace_back();
      bind(n.names, all[size_t(i)]);
      scopes_.back()["loop"] = Value::dict_of({{"index", Value::integer(i + 1)},
                                               {"index0", Value::integer(i)},
                                               {"revindex", Value::integer(len - i)},
                                               {"revindex0", Value::integer(len - i - 1)},
                                               {"first", Value::boolean(i == 0)},
                                               {"last", Value::boolean(i == len - 1)},
                                               {"length", Value::integer(len)},
                                               {"previtem", i > 0 ? all[size_t(i - 1)] : Value()},
                                               {"nextitem", i + 1 < len ? all[size_t(i + 1)] : Value()}});
      const Flow f = exec(*n.a[1], out);
      scopes_.pop_back();
      if (f == Flow::Break) break;
    }
    return Flow::Normal;
  }

  void bind(const std::vector<std::string>& names, const Value& v) {
    if (names.size() == 1) {
      scopes_.back()[names[0]] = v;
      return;
    }
    Items parts = items_of(v);
    if (parts.size() != names.size())
      throw Error("cannot unpack " + repr(v) + " into " + std::to_string(names.size()) + " names");
    for (size_t i = 0; i < names.size(); ++i) scopes_.back()[names[i]] = parts[i];
  }

  void eval_args(const Node& n, size_t first, Args& args, Kwargs& kw) {
    const size_t n_kw = n.names.size();
    for (size_t i = first; i < n.a.size(); ++i) {
      Value v = eval(*n.a[i]);
      if (i + n_kw >= n.a.size())
        kw[n.names[i + n_kw - n.a.size()]] = std::move(v);
      else
        args.push_back(std::move(v));
    }
  }

  Value eval(const Node& n) {
    switch (n.kind) {
      case Node::Kind::Literal: return n.value;
      case Node::Kind::Name: return lookup(n.name);
      case Node::Kind::Attr: return attribute(eval(*n.a[0]), n.name);
      case Node::Kind::Index: return index(eval(*n.a[0]), eval(*n.a[1]));
      case Node::Kind::Slice: return slice(eval(*n.a[0]), n.a[1] ? eval(*n.a[1]) : Value(), n.a[2] ? eval(*n.a[2]) : Value(),
                                           n.a[3] ? eval(*n.a[3]) : Value());
      case Node::Kind::Call: {
        Value f = eval(*n.a[0]);
        Args args;
        Kwargs kw;
        eval_args(n, 1, args, kw);
        return call(f, args, kw);
      }
      case Node::Kind::Filter: {
        Value x = eval(*n.a[0]);
        Args args;
        Kwargs kw;
        eval_args(n, 1, args, kw);
        return filter(n.name, x, args, kw);
      }
      case Node::Kind::Test: {
        Value x = eval(*n.a[0]);
        Args args;
        Kwargs kw;
        eval_args(n, 1, args, kw);
        return Value::boolean(test(n.name, x, args) != n.negate);
      }
      case Node::Kind::Unary: {
        Value x = eval(*n.a[0]);
        if (n.op == "not") return Value::boolean(!x.truthy());
        if (x.kind == K::Int || x.kind == K::Bool) return Value::integer(n.op == "-" ? -to_int(x) : to_int(x));
        if (x.kind == K::Float) return Value::real(n.op == "-" ? -x.f : x.f);
        throw Error("bad operand for unary " + n.op + ": " + repr(x));
      }
      case Node::Kind::Binary: return binary(n);
      case Node::Kind::Cond:
        if (eval(*n.a[0]).truthy()) return eval(*n.a[1]);
        return n.a[2] ? eval(*n.a[2]) : Value();
      case Node::Kind::ListLit: {
        Items l;
        for (const auto& c : n.a) l.push_back(eval(*c));
        return Value::list_of(std::move(l));
      }
      case Node::Kind::DictLit: {
        Entries d;
        for (size_t i = 0; i + 1 < n.a.size(); i += 2) set_key(d, str(eval(*n.a[i])), eval(*n.a[i + 1]));
        return Value::dict_of(std::move(d));
      }
      default: throw Error("internal: a statement where an expression belongs");
    }
  }

  Value binary(const Node& n) {
    const std::string& op = n.op;
    if (op == "and") {
      Value l = eval(*n.a[0]);
      return l.truthy() ? eval(*n.a[1]) : l;
    }
    if (op == "or") {
      Value l = eval(*n.a[0]);
      return l.truthy() ? l : eval(*n.a[1]);
    }
    const Value l = eval(*n.a[0]), r = eval(*n.a[1]);
    if (op == "~") return Value::string(str(l) + str(r));
    if (op == "==") return Value::boolean(equal(l, r));
    if (op == "!=") return Value::boolean(!equal(l, r));
    if (op == "<") return Value::boolean(less(l, r));
    if (op == ">") return Value::boolean(less(r, l));
    if (op == "<=") return Value::boolean(!less(r, l));
    if (op == ">=") return Value::boolean(!less(l, r));
    if (op == "in" || op == "not in") return Value::boolean(contains(r, l) == (op == "in"));
    if (op == "+") {
      if (l.kind == K::String && r.kind == K::String) return Value::string(l.s + r.s);
      if (l.kind == K::List && r.kind == K::List) {
        Items c = *l.list;
        c.insert(c.end(), r.list->begin(), r.list->end());
        return Value::list_of(std::move(c));
      }
    }
    if (op == "*" && l.kind == K::String && (r.kind == K::Int)) {
      std::string s;
      for (int64_t i = 0; i < r.i; ++i) s += l.s;
      return Value::string(s);
    }
    if (!l.is_number() || !r.is_number())
      throw Error("unsupported operands for " + op + ": " + repr(l) + " and " + repr(r));
    const bool ints = l.kind != K::Float && r.kind != K::Float;
    if (ints && op != "/" && op != "**") {
      const int64_t a = to_int(l), b = to_int(r);
      if ((op == "//" || op == "%") && b == 0) throw Error("division by zero");
      if (op == "+") return Value::integer(a + b);
      if (op == "-") return Value::integer(a - b);
      if (op == "*") return Value::integer(a * b);
      const int64_t q = a / b - ((a % b != 0) && ((a < 0) != (b < 0)));  // Python floors
      if (op == "//") return Value::integer(q);
      if (op == "%") return Value::integer(a - q * b);
    }
    const double a = l.number(), b = r.number();
    if (op == "+") return Value::real(a + b);
    if (op == "-") return Value::real(a - b);
    if (op == "*") return Value::real(a * b);
    if (op == "**") return ints && b >= 0 ? Value::integer(int64_t(std::pow(a, b))) : Value::real(std::pow(a, b));
    if (b == 0) throw Error("division by zero");
    if (op == "/") return Value::real(a / b);
    if (op == "//") return Value::real(std::floor(a / b));
    if (op == "%") return Value::real(a - std::floor(a / b) * b);
    throw Error("unknown operator " + op);
  }

  static bool contains(const Value& hay, const Value& needle) {
    if (hay.kind == K::String) return needle.kind == K::String && hay.s.find(needle.s) != std::string::npos;
    if (hay.kind == K::Dict) return needle.kind == K::String && hay.find(needle.s);
    if (hay.kind == K::List) {
      for (const auto& v : *hay.list)
        if (equal(v, needle)) return true;
      return false;
    }
    if (hay.kind == K::Undefined) return false;
    throw Error("'in' needs a string, list or dict, not " + repr(hay));
  }

  static Value attribute(const Value& obj, const std::string& name) {
    static const char* const dict_methods[] = {"items", "keys", "values", "get"};
    static const char* const str_methods[] = {"strip", "lstrip", "rstrip", "startswith", "endswith", "split", "lower", "upper",
                                              "title", "capitalize", "replace", "find", "count", "join", "splitlines"};
    if (obj.kind == K::Dict) {
      for (const char* m : dict_methods)
        if (name == m) return Value::builtin(name, std::make_shared<Value>(obj));
      const Value* v = obj.find(name);
      return v ? *v : Value();
    }
    if (obj.kind == K::String)
      for (const char* m : str_methods)
        if (name == m) return Value::builtin(name, std::make_shared<Value>(obj));
    return Value();
  }

  static Value index(const Value& obj, const Value& key) {
    if (obj.kind == K::Dict) {
      if (key.kind != K::String) return Value();
      const Value* v = obj.find(key.s);
      return v ? *v : Value();
    }
    if ((obj.kind == K::List || obj.kind == K::String) && (key.kind == K::Int || key.kind == K::Bool)) {
      const Items items = obj.kind == K::List ? *obj.list : items_of(obj);
      int64_t i = to_int(key);
      if (i < 0) i += int64_t(items.size());
      if (i < 0 || i >= int64_t(items.size())) return Value();
      return items[size_t(i)];
    }
    if (key.kind == K::String) return attribute(obj, key.s);
    return Value();
  }

  static Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step_v) {
    if (obj.kind != K::List && obj.kind != K::String) throw Error("cannot slice " + repr(obj));
    const Items items = items_of(obj);
    const int64_t n = int64_t(items.size());
    const int64_t step = step_v.defined() && step_v.kind != K::None ? to_int(step_v) : 1;
    if (step == 0) throw Error("slice step cannot be zero");
    // Python's slice bounds.
    auto bound = [&](const Value& v, int64_t dflt) {
      if (!v.defined() || v.kind == K::None) return dflt;
      int64_t i = to_int(v);
      if (i < 0) i += n;
      return step > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
    };
    const int64_t b = bound(start, step > 0 ? 0 : n - 1), e = bound(stop, step > 0 ? n : -1);
    Items out;
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step) out.push_back(items[size_t(i)]);
    if (obj.kind == K::List) return Value::list_of(std::move(out));
    std::string s;
    for (const auto& c : out) s += c.s;
    return Value::string(s);
  }

  Value call(const Value& f, const Args& a, const Kwargs& kw) {
    if (f.kind != K::Callable) throw Error("calling " + (f.defined() ? repr(f) : std::string("an undefined value")) + ", which is not a function");
    if (f.macro) return call_macro(*f.macro->node, a, kw);
    if (f.self) return method(*f.self, f.s, a, kw);
    const std::string& name = f.s;
    if (name == "raise_exception") throw Error(a.empty() ? "raise_exception" : str(a[0]));
    if (name == "range") {
      int64_t start = 0, stop = 0, step = 1;
      if (a.size() == 1) stop = to_int(a[0]);
      else if (a.size() >= 2) start = to_int(a[0]), stop = to_int(a[1]), step = a.size() > 2 ? to_int(a[2]) : 1;
      if (step == 0) throw Error("range() step cannot be zero");
      Items l;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) l.push_back(Value::integer(i));
      return Value::list_of(std::move(l));
    }
    if (name == "namespace" || name == "dict") {
      Entries d;
      if (!a.empty() && a[0].kind == K::Dict) d = *a[0].dict;
      for (const auto& [k, v] : kw) set_key(d, k, v);
      return Value::dict_of(std::move(d));
    }
    if (name == "strftime_now") {
      const std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[256];
      const size_t len = std::strftime(buf, sizeof buf, a.empty() ? "%Y-%m-%d" : str(a[0]).c_str(), &tm);
      return Value::string(std::string(buf, len));
    }
    throw Error("unknown function " + name);
  }

  Value call_macro(const Node& m, const Args& a, const Kwargs& kw) {
    // A macro that calls itself without end is an error, not a stack overflow.
    if (scopes_.size() > 256) throw Error("macro " + m.name + ": calls nested too deeply");
    if (a.size() > m.names.size()) throw Error("macro " + m.name + " takes " + std::to_string(m.names.size()) + " arguments");
    const size_t n_defaults = m.a.size() - 1, first_default = m.names.size() - n_defaults;
    scopes_.emplace_back();
    for (size_t i = 0; i < m.names.size(); ++i) {
      Value v;
      if (i < a.size()) v = a[i];
      else if (kw.count(m.names[i])) v = kw.at(m.names[i]);
      else if (i >= first_default) v = eval(*m.a[1 + i - first_default]);
      scopes_.back()[m.names[i]] = v;
    }
    std::string out;
    exec(*m.a[0], out);
    scopes_.pop_back();
    return Value::string(out);
  }

  static Value method(const Value& self, const std::string& name, const Args& a, const Kwargs& kw) {
    if (self.kind == K::Dict) {
      if (name == "items") {
        Items l;
        for (const auto& [k, v] : *self.dict) l.push_back(Value::list_of({Value::string(k), v}));
        return Value::list_of(std::move(l));
      }
      if (name == "keys") return Value::list_of(items_of(self));
      if (name == "values") {
        Items l;
        for (const auto& [k, v] : *self.dict) l.push_back(v);
        return Value::list_of(std::move(l));
      }
      if (name == "get") {
        const Value* v = a.empty() || a[0].kind != K::String ? nullptr : self.find(a[0].s);
        return v ? *v : arg(a, kw, 1, "default", Value::none());
      }
    }
    const std::string& s = self.s;
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const Value chars = arg(a, kw, 0, "chars");
      const Value* c = chars.kind == K::String ? &chars : nullptr;
      return Value::string(strip(s, name != "rstrip", name != "lstrip", c));
    }
    if (name == "startswith" || name == "endswith") {
      const Value p = arg(a, kw, 0, "prefix");
      Items options = p.kind == K::List ? *p.list : Items{p};
      for (const auto& o : options)
        if (o.kind == K::String && (name == "startswith" ? s.starts_with(o.s) : s.ends_with(o.s))) return Value::boolean(true);
      return Value::boolean(false);
    }
    if (name == "lower") return Value::string(lower(s));
    if (name == "upper") return Value::string(upper(s));
    if (name == "title") return Value::string(title(s));
    if (name == "capitalize") return Value::string(capitalize(s));
    if (name == "replace") return Value::string(replace_all(s, str(arg(a, kw, 0, "old")), str(arg(a, kw, 1, "new")),
                                                            a.size() > 2 ? to_int(a[2]) : -1));
    if (name == "find") {
      const size_t at = s.find(str(arg(a, kw, 0, "sub")));
      return Value::integer(at == std::string::npos ? -1 : int64_t(code_points(s.substr(0, at)).size()));
    }
    if (name == "count") {
      const std::string sub = str(arg(a, kw, 0, "sub"));
      int64_t n = 0;
      for (size_t at = 0; !sub.empty() && (at = s.find(sub, at)) != std::string::npos; at += sub.size()) ++n;
      return Value::integer(n);
    }
    if (name == "join") {
      std::string out;
      const Items items = items_of(arg(a, kw, 0, "iterable"));
      for (size_t i = 0; i < items.size(); ++i) out += (i ? s : "") + str(items[i]);
      return Value::string(out);
    }
    if (name == "split" || name == "splitlines") {
      Items parts;
      const Value sep = name == "split" ? arg(a, kw, 0, "sep") : Value::string("\n");
      int64_t max = name == "split" && arg(a, kw, 1, "maxsplit").defined() ? to_int(arg(a, kw, 1, "maxsplit")) : -1;
      if (sep.kind != K::String) {  // runs of whitespace, no empty parts
        size_t i = 0;
        while (i < s.size()) {
          while (i < s.size() && is_space(s[i])) ++i;
          if (i >= s.size()) break;
          if (max == 0) {
            parts.push_back(Value::string(strip(s.substr(i), false, true)));
            break;
          }
          size_t j = i;
          while (j < s.size() && !is_space(s[j])) ++j;
          parts.push_back(Value::string(s.substr(i, j - i)));
          --max;
          i = j;
        }
      } else {
        if (sep.s.empty()) throw Error("empty separator");
        size_t i = 0;
        for (size_t at; max != 0 && (at = s.find(sep.s, i)) != std::string::npos; --max) {
          parts.push_back(Value::string(s.substr(i, at - i)));
          i = at + sep.s.size();
        }
        if (!(name == "splitlines" && i == s.size())) parts.push_back(Value::string(s.substr(i)));
      }
      return Value::list_of(std::move(parts));
    }
    throw Error("unknown method " + name + " of " + repr(self));
  }

  bool test(const std::string& name, const Value& x, const Args& a) {
    auto other = [&] {
      if (a.empty()) throw Error("test '" + name + "' needs an argument");
      return a[0];
    };
    if (name == "defined") return x.defined();
    if (name == "undefined") return !x.defined();
    if (name == "none") return x.kind == K::None;
    if (name == "string") return x.kind == K::String;
    if (name == "number") return x.kind == K::Int || x.kind == K::Float;
    if (name == "integer") return x.kind == K::Int;
    if (name == "float") return x.kind == K::Float;
    if (name == "boolean") return x.kind == K::Bool;
    if (name == "true") return x.kind == K::Bool && x.b;
    if (name == "false") return x.kind == K::Bool && !x.b;
    if (name == "mapping") return x.kind == K::Dict;
    if (name == "sequence") return x.kind == K::List || x.kind == K::String || x.kind == K::Dict;
    if (name == "iterable") return x.kind == K::List || x.kind == K::String || x.kind == K::Dict;
    if (name == "callable") return x.kind == K::Callable;
    if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return equal(x, other());
    if (name == "ne") return !equal(x, other());
    if (name == "lt") return less(x, other());
    if (name == "gt") return less(other(), x);
    if (name == "le") return !less(other(), x);
    if (name == "ge") return !less(x, other());
    if (name == "in") return contains(other(), x);
    if (name == "odd") return to_int(x) % 2 != 0;
    if (name == "even") return to_int(x) % 2 == 0;
    if (name == "divisibleby") return to_int(other()) != 0 && to_int(x) % to_int(other()) == 0;
    if (name == "lower") return x.kind == K::String && lower(x.s) == x.s;
    if (name == "upper") return x.kind == K::String && upper(x.s) == x.s;
    throw Error("unknown test '" + name + "'");
  }

  // select/reject/selectattr/rejectattr: items passing (or failing) a test, or truthiness.
  Items select(const Items& items, const Args& a, size_t test_at, bool by_attr, bool keep) {
    Items out;
    for (const auto& item : items) {
      const Value v = by_attr ? attribute_path(item, str(a[0])) : item;
      const bool pass = a.size() > test_at ? test(str(a[test_at]), v, Args(a.begin() + long(test_at) + 1, a.end())) : v.truthy();
      if (pass == keep) out.push_back(item);
    }
    return out;
  }

  static Value attribute_path(const Value& v, const std::string& path) {
    Value cur = v;
    size_t i = 0;
    while (i <= path.size()) {
      const size_t dot = std::min(path.find('.', i), path.size());
      const std::string part = path.substr(i, dot - i);
      cur = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) ? index(cur, Value::integer(std::stoll(part)))
                                                                              : index(cur, Value::string(part));
      i = dot + 1;
    }
    return cur;
  }

  Value filter(const std::string& name, const Value& x, const Args& a, const Kwargs& kw) {
    if (name == "trim") return Value::string(strip(str(x), true, true, a.empty() ? nullptr : &a[0]));
    if (name == "tojson") {
      const Value indent = arg(a, kw, 0, "indent");
      return Value::string(to_json(x, indent.kind == K::Int ? int(indent.i) : -1));
    }
    if (name == "length" || name == "count") {
      if (x.kind == K::String) return Value::integer(int64_t(code_points(x.s).size()));
      return Value::integer(int64_t(items_of(x).size()));
    }
    if (name == "upper") return Value::string(upper(str(x)));
    if (name == "lower") return Value::string(lower(str(x)));
    if (name == "capitalize") return Value::string(capitalize(str(x)));
    if (name == "title") return Value::string(title(str(x)));
    if (name == "string") return Value::string(str(x));
    if (name == "safe") return x;
    if (name == "first" || name == "last") {
      const Items items = items_of(x);
      if (items.empty()) return Value();
      return name == "first" ? items.front() : items.back();
    }
    if (name == "default" || name == "d") {
      const bool boolean = arg(a, kw, 1, "boolean", Value::boolean(false)).truthy();
      return (boolean ? !x.truthy() : !x.defined()) ? arg(a, kw, 0, "default_value", Value::string("")) : x;
    }
    if (name == "join") {
      const std::string sep = str(arg(a, kw, 0, "d", Value::string("")));
      const Value attr = arg(a, kw, 1, "attribute");
      std::string out;
      const Items items = items_of(x);
      for (size_t i = 0; i < items.size(); ++i)
        out += (i ? sep : "") + str(attr.defined() ? attribute_path(items[i], str(attr)) : items[i]);
      return Value::string(out);
    }
    if (name == "list") return Value::list_of(items_of(x));
    if (name == "items") return method(x, "items", {}, {});
    if (name == "int") {
      if (x.kind == K::String) {
        try {
          return Value::integer(std::stoll(strip(x.s, true, true)));
        } catch (const std::exception&) {
          return arg(a, kw, 0, "default", Value::integer(0));
        }
      }
      return x.is_number() ? Value::integer(to_int(x)) : arg(a, kw, 0, "default", Value::integer(0));
    }
    if (name == "float") return x.is_number() ? Value::real(x.number()) : Value::real(std::stod(str(x)));
    if (name == "abs") return x.kind == K::Float ? Value::real(std::fabs(x.f)) : Value::integer(std::abs(to_int(x)));
    if (name == "replace") return Value::string(replace_all(str(x), str(arg(a, kw, 0, "old")), str(arg(a, kw, 1, "new")),
                                                            a.size() > 2 ? to_int(a[2]) : -1));
    if (name == "reverse") {
      if (x.kind == K::String) {
        auto cps = code_points(x.s);
        std::string out;
        for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
        return Value::string(out);
      }
      Items l = items_of(x);
      std::reverse(l.begin(), l.end());
      return Value::list_of(std::move(l));
    }
    if (name == "unique") {
      Items out;
      for (const auto& v : items_of(x))
        if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return equal(o, v); })) out.push_back(v);
      return Value::list_of(std::move(out));
    }
    if (name == "select" || name == "reject") return Value::list_of(select(items_of(x), a, 0, false, name == "select"));
    if (name == "selectattr" || name == "rejectattr") {
      if (a.empty()) throw Error(name + " needs an attribute name");
      return Value::list_of(select(items_of(x), a, 1, true, name == "selectattr"));
    }
    if (name == "map") {
      Items out;
      const auto attr = kw.find("attribute");
      for (const auto& v : items_of(x)) {
        if (attr != kw.end()) {
          Value got = attribute_path(v, str(attr->second));
          auto dflt = kw.find("default");
          out.push_back(!got.defined() && dflt != kw.end() ? dflt->second : got);
        } else {
          if (a.empty()) throw Error("map needs a filter name or attribute=");
          out.push_back(filter(str(a[0]), v, Args(a.begin() + 1, a.end()), {}));
        }
      }
      return Value::list_of(std::move(out));
    }
    if (name == "indent") {
      const int64_t width = arg(a, kw, 0, "width", Value::integer(4)).kind == K::String ? 0 : to_int(arg(a, kw, 0, "width", Value::integer(4)));
      const std::string pad = arg(a, kw, 0, "width").kind == K::String ? arg(a, kw, 0, "width").s : std::string(size_t(width), ' ');
      const bool first = arg(a, kw, 1, "first", Value::boolean(false)).truthy();
      const bool blank = arg(a, kw, 2, "blank", Value::boolean(false)).truthy();
      const std::string s = str(x);
      std::string out;
      size_t i = 0;
      bool first_line = true;
      while (i <= s.size()) {
        const size_t nl = std::min(s.find('\n', i), s.size());
        const std::string line = s.substr(i, nl - i);
        if ((!first_line || first) && (blank || !line.empty()) && !(first_line && !first)) out += pad;
        out += line;
        if (nl < s.size()) out += "\n";
        first_line = false;
        i = nl + 1;
      }
      return Value::string(out);
    }
    if (name == "escape" || name == "e") {
      std::string out;
      for (char c : str(x)) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out += c;
        }
      }
      return Value::string(out);
    }
    throw Error("unknown filter '" + name + "'");
  }

  std::vector<std::map<std::string, Value>> scopes_;
};

}  // namespace

Template::Template(std::string_view source) : root_(parse_template(source)) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& context) const {
  Renderer r(context);
  std::string out;
  r.exec(*root_, out);
  return out;
}

}  // namespace m3::serve::jinja
