// Typed access to tokenizer.json fields that turns a missing or mistyped field into an m3::Error
// naming where it was expected (e.g. "tokenizer.json: model.vocab: expected an object").
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace m3::tok {

using Json = nlohmann::json;

const Json& require_field(const Json& obj, const char* key, const std::string& where);
std::string require_string(const Json& obj, const char* key, const std::string& where);
// Missing or null fields give the fallback; a present field of another type is an error.
std::string optional_string(const Json& obj, const char* key, const std::string& where,
                            const std::string& fallback = "");
bool optional_bool(const Json& obj, const char* key, const std::string& where, bool fallback);
int64_t optional_int(const Json& obj, const char* key, const std::string& where, int64_t fallback);
// The "type" tag of a component object.
std::string type_tag(const Json& obj, const std::string& where);

}  // namespace m3::tok
