// Typed access to tokenizer.json fields that turns a missing or mistyped field into an m3::Error
// naming where it was expected (e.g. "tokenizer.json: model.vocab: expected an object").
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace m3::tok {

using Json = nlohmann::json;

const Json& require_field(const Json& obj, const char* key, const std::string& where);
[[noreturn]] void throw_expected_array(const std::string& where);  // "WHERE: expected an array"
std::string require_string(const Json& obj, const char* key, const std::string& where);
// Missing or null fields give the fallback; a present field of another type is an error.
std::string optional_string(const Json& obj, const char* key, const std::string& where,
                            const std::string& fallback = "");
bool optional_bool(const Json& obj, const char* key, const std::string& where, bool fallback);
int64_t optional_int(const Json& obj, const char* key, const std::string& where, int64_t fallback);
// A token id: an integer in [0, limits::kTokenIds); the error names `where` and the limit.
int32_t token_id(const Json& v, const std::string& where);
// Whether v is a valid token id (token_id's test, for loops that spell out `where` only on failure).
bool is_token_id(const Json& v);
// The "type" tag of a component object.
std::string type_tag(const Json& obj, const std::string& where);

// The array field `key` of obj, each element parsed by make(element, "where.key[i]") (a Sequence
// component's parts).
template <class F>
auto parse_list(const Json& obj, const char* key, const std::string& where, F&& make) {
  const Json& list = require_field(obj, key, where);
  const std::string at = where + "." + key;
  if (!list.is_array()) throw_expected_array(at);
  std::vector<decltype(make(list[0], at))> parts;
  for (size_t i = 0; i < list.size(); ++i) parts.push_back(make(list[i], at + "[" + std::to_string(i) + "]"));
  return parts;
}

}  // namespace m3::tok
