#include "io/files.h"

#include <fstream>
#include <sstream>

#include "core/limits.h"
#include "m3/error.h"

namespace m3 {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  check(!in.bad(), path + ": read error");
  return ss.str();
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  check_json_depth(text, path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed JSON: " + e.what());
  }
}

void check_json_depth(std::string_view text, const std::string& source) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limits::kJsonDepth)
        throw Error(source + ": JSON nested deeper than " + std::to_string(limits::kJsonDepth) +
                    " levels at byte " + std::to_string(i) + " (limit kJsonDepth, src/core/limits.h)");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

}  // namespace m3
