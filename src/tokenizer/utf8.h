// UTF-8 helpers shared by the tokenizer stages. Stages after input repair may assume valid UTF-8.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace m3::tok {

// Number of bytes of the character whose lead byte is `b` (1 for continuation/invalid bytes, so
// that a loop over valid text never stalls).
inline size_t utf8_char_len(unsigned char b) {
  if (b < 0xC0) return 1;
  if (b < 0xE0) return 2;
  if (b < 0xF0) return 3;
  return 4;
}

// Decodes the character starting at s[i] (valid UTF-8 assumed) and advances i past it.
inline char32_t next_code_point(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  const size_t n = utf8_char_len(b0);
  char32_t cp = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

// The start of the code point that ends just before byte i: back from i − 1 over continuation
// bytes, but not below `floor`. i > floor.
inline size_t prev_code_point_start(std::string_view s, size_t i, size_t floor = 0) {
  size_t c = i - 1;
  while (c > floor && (static_cast<unsigned char>(s[c]) & 0xC0) == 0x80) --c;
  return c;
}

// Decodes the last character of non-empty valid UTF-8 text.
char32_t last_code_point(std::string_view s);

void append_utf8(std::string& out, char32_t cp);

inline bool is_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

// Returns the length of the longest valid prefix of s (s.size() when all of s is valid).
size_t valid_utf8_prefix(std::string_view s);

// Replaces each maximal ill-formed subsequence by U+FFFD (Unicode's "substitution of maximal
// subparts", the rule of Python's errors="replace" and Rust's from_utf8_lossy).
std::string to_valid_utf8(std::string_view s);

}  // namespace m3::tok
