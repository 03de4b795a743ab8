#include "io/files.h"

#include <fstream>
#include <sstream>

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
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed JSON: " + e.what());
  }
}

}  // namespace m3
