// What Jinja takes from Python for the interpreter (jinja_render.cpp): the str and dict methods
// templates call (strip, split, startswith, items, get, ...), attribute and item access, slices,
// membership, and the string helpers filters share.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "serve/jinja_value.h"

namespace m3::serve::jinja {

using Args = std::vector<Value>;
using Kwargs = std::map<std::string, Value>;

bool is_space(char c);
// str.strip / lstrip / rstrip: whitespace, or the characters of `chars` when it is a string.
std::string strip(const std::string& s, bool left, bool right, const Value* chars = nullptr);
std::string lower(std::string s);
std::string upper(std::string s);
std::string capitalize(const std::string& s);
std::string title(std::string s);
std::string replace_all(std::string s, const std::string& from, const std::string& to, int64_t count = -1);

// The items a for loop or a filter walks: a list's elements, a dict's keys, a string's characters.
Items items_of(const Value& v);
int64_t to_int(const Value& v);
// Argument i, or keyword `name`, or the fallback.
Value arg(const Args& a, const Kwargs& kw, size_t i, const char* name, Value fallback = Value());
void set_key(Entries& d, const std::string& k, Value v);

bool contains(const Value& hay, const Value& needle);      // Python's `in`
Value attribute(const Value& obj, const std::string& name);  // obj.name: a method or a dict entry
Value index(const Value& obj, const Value& key);             // obj[key]; undefined when missing
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
Value attribute_path(const Value& v, const std::string& path);  // "a.b.0", as map(attribute=) takes
Value method(const Value& self, const std::string& name, const Args& a, const Kwargs& kw);

}  // namespace m3::serve::jinja
