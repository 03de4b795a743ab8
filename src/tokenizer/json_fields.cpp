#include "tokenizer/json_fields.h"

#include "core/limits.h"
#include "m3/error.h"

namespace m3::tok {

namespace {
std::string field_path(const std::string& where, const char* key) { return where + "." + key; }
}  // namespace

bool is_token_id(const Json& v) {
  // The parser keeps non-negative integers unsigned (up to 2^64 - 1), negative ones signed.
  if (v.is_number_unsigned()) return v.get<uint64_t>() < uint64_t(limits::kTokenIds);
  return v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < limits::kTokenIds;
}

int32_t token_id(const Json& v, const std::string& where) {
  if (is_token_id(v)) return v.get<int32_t>();
  check(v.is_number_integer(), where + ": expected a token id (an integer), found " + v.type_name());
  throw Error(where + ": token id " + v.dump() + " is outside [0, " + std::to_string(limits::kTokenIds) +
              ") (limit kTokenIds, src/core/limits.h)");
}

void throw_expected_array(const std::string& where) { throw Error(where + ": expected an array"); }

const Json& require_field(const Json& obj, const char* key, const std::string& where) {
  check(obj.is_object(), where + ": expected an object, found " + obj.type_name());
  const auto it = obj.find(key);
  check(it != obj.end() && !it->is_null(), field_path(where, key) + ": missing");
  return *it;
}

std::string require_string(const Json& obj, const char* key, const std::string& where) {
  const Json& v = require_field(obj, key, where);
  check(v.is_string(), field_path(where, key) + ": expected a string, found " + v.type_name());
  return v.get<std::string>();
}

std::string optional_string(const Json& obj, const char* key, const std::string& where,
                            const std::string& fallback) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  check(it->is_string(), field_path(where, key) + ": expected a string, found " + it->type_name());
  return it->get<std::string>();
}

bool optional_bool(const Json& obj, const char* key, const std::string& where, bool fallback) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  check(it->is_boolean(), field_path(where, key) + ": expected a boolean, found " + it->type_name());
  return it->get<bool>();
}

int64_t optional_int(const Json& obj, const char* key, const std::string& where, int64_t fallback) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  check(it->is_number_integer(),
        field_path(where, key) + ": expected an integer, found " + it->type_name());
  return it->get<int64_t>();
}

std::string type_tag(const Json& obj, const std::string& where) {
  check(obj.is_object(), where + ": expected an object, found " + obj.type_name());
  return require_string(obj, "type", where);
}

}  // namespace m3::tok
