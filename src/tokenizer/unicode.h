// Unicode properties and transforms with the semantics of the Rust std/regex functions the
// tokenizers library calls (char::is_whitespace, char::is_numeric, char::to_lowercase, `\w`),
// computed with utf8proc.
#pragma once
#include <string>
#include <string_view>

namespace m3::tok {

bool is_white_space(char32_t cp);  // Unicode White_Space (Rust char::is_whitespace, regex \s)
bool is_numeric(char32_t cp);      // general category Nd, Nl or No (Rust char::is_numeric)
bool is_word_char(char32_t cp);    // Rust regex `\w`: Alphabetic, M, Nd, Pc, Join_Control

enum class NormalForm { NFC, NFD, NFKC, NFKD };
std::string normalize_unicode(std::string_view s, NormalForm form);
// Per-character full lowercase mapping, without context (no final-sigma rule).
std::string lowercase(std::string_view s);

}  // namespace m3::tok
