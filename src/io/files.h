// Reading whole files (config.json, a safetensors index, tokenizer files, text to encode or train
// on) with errors that name the file.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace m3 {

// The file's bytes; Error "PATH: cannot open" otherwise.
std::string read_file(const std::string& path);
// A whole regular file mapped read-only (data null when the file is empty); Error "PATH: ..." when
// it cannot be opened, is not a regular file or cannot be mapped.
struct MappedFile {
  std::shared_ptr<void> owner;  // unmaps when the last holder goes
  const char* data = nullptr;
  uint64_t size = 0;
};
MappedFile map_file(const std::string& path);

// The parsed file; Error "PATH: cannot open" or "PATH: malformed JSON: ..." otherwise.
nlohmann::json read_json_file(const std::string& path);
// Error "SOURCE: JSON nested deeper than ..." when the arrays and objects of `text` nest deeper
// than limits::kJsonDepth; called before parsing, so that nothing recursive (copies, dumps,
// Sequence components) meets a deeper document. Malformed text is left to the parser.
void check_json_depth(std::string_view text, const std::string& source);

}  // namespace m3
