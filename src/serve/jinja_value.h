// Values of the Jinja interpreter (jinja.h), with Python's semantics where templates rely on
// them: truthiness, str() and repr() text, ==, <, and JSON as Hugging Face's tojson writes it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace m3::serve::jinja {

struct Value;
using Items = std::vector<Value>;
using Entries = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python's dict
struct Macro;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Callable };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                // String; Callable: the builtin's or method's name
  std::shared_ptr<Items> list;    // List (shared: values are cheap to pass around)
  std::shared_ptr<Entries> dict;  // Dict; namespace() objects are dicts changed in place
  std::shared_ptr<Value> self;  // Callable: the bound object of a method (x.strip)
  std::shared_ptr<const Macro> macro;  // Callable: a {% macro %}

  static Value none() { return with(Kind::None); }
  static Value boolean(bool v) { Value r = with(Kind::Bool); r.b = v; return r; }
  static Value integer(int64_t v) { Value r = with(Kind::Int); r.i = v; return r; }
  static Value real(double v) { Value r = with(Kind::Float); r.f = v; return r; }
  static Value string(std::string v) { Value r = with(Kind::String); r.s = std::move(v); return r; }
  static Value list_of(Items v) { Value r = with(Kind::List); r.list = std::make_shared<Items>(std::move(v)); return r; }
  static Value dict_of(Entries v) { Value r = with(Kind::Dict); r.dict = std::make_shared<Entries>(std::move(v)); return r; }
  static Value builtin(std::string name, std::shared_ptr<Value> self = nullptr) {
    Value r = with(Kind::Callable);
    r.s = std::move(name);
    r.self = std::move(self);
    return r;
  }
  static Value from_json(const nlohmann::ordered_json& j);  // objects keep their key order

  bool defined() const { return kind != Kind::Undefined; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  double number() const { return kind == Kind::Float ? f : kind == Kind::Int ? double(i) : double(b); }
  bool truthy() const;
  const Value* find(const std::string& key) const;  // a dict's entry, or null

 private:
  static Value with(Kind k) { Value r; r.kind = k; return r; }
};

// Python's str(v) ("None", "True", "[1, 'a']"; "" for undefined) and repr(v).
std::string str(const Value& v);
std::string repr(const Value& v);
// json.dumps(v, ensure_ascii=False, indent=indent (< 0: none)), as Hugging Face's tojson.
std::string to_json(const Value& v, int indent = -1);
bool equal(const Value& a, const Value& b);
// a < b for numbers, strings and lists; an m3::Error otherwise.
bool less(const Value& a, const Value& b);
// Code points of a UTF-8 string (Python's len and indexing count these).
std::vector<std::string> code_points(const std::string& s);

}  // namespace m3::serve::jinja
