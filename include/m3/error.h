// Errors: every failure the library reports is an m3::Error carrying its context (file, tensor,
// expected vs found). The library never exits or asserts on input; the CLI prints the message.
#pragma once
#include <stdexcept>
#include <string>

namespace m3 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws m3::Error with the message when cond is false.
inline void check(bool cond, const std::string& msg) {
  if (!cond) throw Error(msg);
}

}  // namespace m3
