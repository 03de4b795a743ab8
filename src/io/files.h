// Reading whole files (config.json, a safetensors index, tokenizer files, text to encode or train
// on) with errors that name the file.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace m3 {

// The file's bytes; Error "PATH: cannot open" otherwise.
std::string read_file(const std::string& path);
// The parsed file; Error "PATH: cannot open" or "PATH: malformed JSON: ..." otherwise.
nlohmann::json read_json_file(const std::string& path);

}  // namespace m3
