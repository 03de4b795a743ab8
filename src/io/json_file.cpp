#include "io/json_file.h"

#include <fstream>

#include "m3/error.h"

namespace m3 {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  check(bool(in), path + ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed JSON: " + e.what());
  }
}

}  // namespace m3
