// GPT-2's byte-level alphabet: each byte is shown as a printable character (printable ASCII and
// Latin-1 map to themselves, the other 68 bytes to U+0100..U+0143), so that BPE vocabularies of
// byte sequences are valid strings.
#pragma once
#include <array>
#include <string>

namespace m3::tok {

// UTF-8 of the character standing for each byte.
const std::array<std::string, 256>& byte_to_unicode();
// The byte a character stands for, or -1 when it is not in the alphabet.
int unicode_to_byte(char32_t cp);
// Appends the byte-level characters of every byte of `bytes`.
void append_byte_level(std::string& out, std::string_view bytes);

}  // namespace m3::tok
