// Rendering parsed templates (jinja_ast.h): scopes as Jinja keeps them (a for loop's body has its
// own, so `set` inside a loop does not leak out — hence namespace()), the loop variable, and the
// filters, tests and builtins chat templates call (Python's methods: jinja_python.h).
#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>

#include "m3/error.h"
#include "serve/jinja.h"
#include "serve/jinja_ast.h"
#include "serve/jinja_python.h"

namespace m3::serve::jinja {

namespace {

using K = Value::Kind;

enum class Flow { Normal, Break, Continue };

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
    if (name == "float") {
      // jinja2: the value as a float, or the default (0.0) when it does not read as one.
      if (x.is_number()) return Value::real(x.number());
      try {
        return Value::real(std::stod(str(x)));
      } catch (const std::exception&) {
        return arg(a, kw, 0, "default", Value::real(0.0));
      }
    }
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
