// Stop sequences matched in generated text across token boundaries: text that could be the start
// of a stop sequence is held back until the next piece shows whether it is one.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace m3::serve {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends text; returns what can be released now. When a stop sequence appears, returns the text
  // before it and stopped() becomes true (the sequence and anything after it are dropped).
  std::string push(std::string_view text);
  // The held-back text, at the end of generation.
  std::string flush() { return std::exchange(held_, {}); }
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace m3::serve
