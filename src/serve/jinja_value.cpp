#include "serve/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "m3/error.h"

namespace m3::serve::jinja {

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned: return integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float: return real(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Items l;
      for (const auto& x : j) l.push_back(from_json(x));
      return list_of(std::move(l));
    }
    case nlohmann::ordered_json::value_t::object: {
      Entries d;
      for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(it.key(), from_json(it.value()));
      return dict_of(std::move(d));
    }
    default: return Value();
  }
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b;
    case Kind::Int: return i != 0;
    case Kind::Float: return f != 0;
    case Kind::String: return !s.empty();
    case Kind::List: return !list->empty();
    case Kind::Dict: return !dict->empty();
    case Kind::Callable: return true;
  }
  return false;
}

const Value* Value::find(const std::string& key) const {
  if (kind != Kind::Dict) return nullptr;
  for (const auto& [k, v] : *dict)
    if (k == key) return &v;
  return nullptr;
}

namespace {

// Python's float repr: the shortest digits that read back, fixed between 1e-4 and 1e16.
std::string float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, end);  // d.ddde±XX
  const size_t e = sci.find('e');
  const int exp = std::stoi(sci.substr(e + 1));
  std::string digits = sci.substr(0, e);
  const bool neg = digits[0] == '-';
  if (neg) digits.erase(0, 1);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  std::string out;
  if (exp >= -5 && exp < 16) {
    if (exp < 0) {
      out = "0." + std::string(size_t(-exp - 1), '0') + digits;
    } else if (size_t(exp) + 1 >= digits.size()) {
      out = digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
    }
  } else {
    out = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "") + "e" + (exp < 0 ? "-" : "+") +
          (std::abs(exp) < 10 ? "0" : "") + std::to_string(std::abs(exp));
  }
  return (neg ? "-" : "") + out;
}

std::string string_repr(const std::string& s) {
  const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == q) out += std::string("\\") + char(c);
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else out += char(c);
  }
  return out + q;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

void json_into(std::string& out, const Value& v, int indent, int depth) {
  using K = Value::Kind;
  const std::string nl = indent < 0 ? "" : "\n" + std::string(size_t(indent * (depth + 1)), ' ');
  const std::string close = indent < 0 ? "" : "\n" + std::string(size_t(indent * depth), ' ');
  const std::string sep = indent < 0 ? ", " : ",";
  switch (v.kind) {
    case K::Undefined:
    case K::None: out += "null"; return;
    case K::Bool: out += v.b ? "true" : "false"; return;
    case K::Int: out += std::to_string(v.i); return;
    case K::Float: out += std::isfinite(v.f) ? float_repr(v.f) : std::isnan(v.f) ? "NaN" : v.f > 0 ? "Infinity" : "-Infinity"; return;
    case K::String: out += json_string(v.s); return;
    case K::List:
      if (v.list->empty()) { out += "[]"; return; }
      out += "[";
      for (size_t i = 0; i < v.list->size(); ++i) {
        out += (i ? sep : "") + nl;
        json_into(out, (*v.list)[i], indent, depth + 1);
      }
      out += close + "]";
      return;
    case K::Dict:
      if (v.dict->empty()) { out += "{}"; return; }
      out += "{";
      for (size_t i = 0; i < v.dict->size(); ++i) {
        out += (i ? sep : "") + nl + json_string((*v.dict)[i].first) + ": ";
        json_into(out, (*v.dict)[i].second, indent, depth + 1);
      }
      out += close + "}";
      return;
    case K::Callable: throw Error("tojson: a function is not JSON");
  }
}

}  // namespace

std::string repr(const Value& v) {
  return v.kind == Value::Kind::String ? string_repr(v.s) : str(v);
}

std::string str(const Value& v) {
  using K = Value::Kind;
  switch (v.kind) {
    case K::Undefined: return "";
    case K::None: return "None";
    case K::Bool: return v.b ? "True" : "False";
    case K::Int: return std::to_string(v.i);
    case K::Float: return float_repr(v.f);
    case K::String: return v.s;
    case K::List: {
      std::string out = "[";
      for (size_t i = 0; i < v.list->size(); ++i) out += (i ? ", " : "") + repr((*v.list)[i]);
      return out + "]";
    }
    case K::Dict: {
      std::string out = "{";
      for (size_t i = 0; i < v.dict->size(); ++i)
        out += (i ? ", " : "") + string_repr((*v.dict)[i].first) + ": " + repr((*v.dict)[i].second);
      return out + "}";
    }
    case K::Callable: return "<function " + v.s + ">";
  }
  return "";
}

std::string to_json(const Value& v, int indent) {
  std::string out;
  json_into(out, v, indent, 0);
  return out;
}

bool equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) return a.number() == b.number();
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case K::String: return a.s == b.s;
    case K::List:
      if (a.list->size() != b.list->size()) return false;
      for (size_t i = 0; i < a.list->size(); ++i)
        if (!equal((*a.list)[i], (*b.list)[i])) return false;
      return true;
    case K::Dict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, v] : *a.dict) {
        const Value* o = b.find(k);
        if (!o || !equal(v, *o)) return false;
      }
      return true;
    case K::Callable: return a.s == b.s && a.macro == b.macro;
    default: return true;  // undefined, none
  }
}

bool less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.number() < b.number();
  if (a.kind == Value::Kind::String && b.kind == Value::Kind::String) return a.s < b.s;
  if (a.kind == Value::Kind::List && b.kind == Value::Kind::List) {
    for (size_t i = 0; i < std::min(a.list->size(), b.list->size()); ++i) {
      if (less((*a.list)[i], (*b.list)[i])) return true;
      if (less((*b.list)[i], (*a.list)[i])) return false;
    }
    return a.list->size() < b.list->size();
  }
  throw Error("cannot order " + repr(a) + " and " + repr(b));
}

std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = 1;
    while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace m3::serve::jinja
