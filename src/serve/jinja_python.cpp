#include "serve/jinja_python.h"

#include <algorithm>
#include <cctype>

#include "m3/error.h"

namespace m3::serve::jinja {

using K = Value::Kind;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string strip(const std::string& s, bool left, bool right, const Value* chars) {
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

std::string replace_all(std::string s, const std::string& from, const std::string& to, int64_t count) {
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

Value arg(const Args& a, const Kwargs& kw, size_t i, const char* name, Value fallback) {
  if (i < a.size()) return a[i];
  auto it = kw.find(name);
  return it != kw.end() ? it->second : fallback;
}

void set_key(Entries& d, const std::string& k, Value v) {
  for (auto& [key, x] : d)
    if (key == k) {
      x = std::move(v);
      return;
    }
  d.emplace_back(k, std::move(v));
}

bool contains(const Value& hay, const Value& needle) {
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

Value attribute(const Value& obj, const std::string& name) {
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

Value index(const Value& obj, const Value& key) {
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

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step_v) {
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

Value method(const Value& self, const std::string& name, const Args& a, const Kwargs& kw) {
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

Value attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t i = 0;
  while (i <= path.size()) {
    const size_t dot = std::min(path.find('.', i), path.size());
    const std::string part = path.substr(i, dot - i);
    // Digits past int64 (a stoll overflow) are looked up as a string key instead.
    const bool numeric = !part.empty() && part.size() < 19 && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = numeric ? index(cur, Value::integer(std::stoll(part))) : index(cur, Value::string(part));
    i = dot + 1;
  }
  return cur;
}

}  // namespace m3::serve::jinja
