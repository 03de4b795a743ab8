// Regular expressions for the patterns tokenizer.json files carry. The tokenizers library runs
// them with Oniguruma (Ruby syntax); here PCRE2 (UTF + UCP + JIT) runs them after a small
// translation of the escapes whose meaning differs between the two engines.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace m3::tok {

struct Match {
  size_t begin, end;
};

class Regex {
 public:
  // Throws m3::Error naming the pattern and PCRE2's message when it does not compile.
  explicit Regex(const std::string& pattern);
  Regex(Regex&& other) noexcept;
  Regex& operator=(Regex&& other) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  // Appends the successive non-overlapping matches in `text` (valid UTF-8) to `out`, with the
  // iteration rule of the onig crate's find_iter: an empty match right where the previous match
  // ended is skipped by moving one character on.
  void find_all(std::string_view text, std::vector<Match>& out) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
};

// Rewrites Oniguruma escapes into PCRE2 ones with the same meaning (exposed for tests):
// \s/\S (Unicode White_Space: PCRE2 also counts U+180E), \w/\W (onig adds marks and Pc),
// \h/\H (hex digit in Ruby syntax, horizontal space in PCRE2).
std::string onig_to_pcre2(const std::string& pattern);

}  // namespace m3::tok
