// Reading a JSON file (config.json, a safetensors index, tokenizer_config.json) with errors that
// name the file.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace m3 {

// The parsed file; Error "PATH: cannot open" or "PATH: malformed JSON: ..." otherwise.
nlohmann::json read_json_file(const std::string& path);

}  // namespace m3
