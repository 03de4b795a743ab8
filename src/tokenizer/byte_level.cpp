#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace m3::tok {

namespace {

struct Alphabet {
  std::array<char32_t, 256> chars{};
  std::array<std::string, 256> utf8;
  Alphabet() {
    // Bytes that are printable keep their code point; the rest are numbered from U+0100 upwards
    // in byte order.
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      chars[b] = printable ? static_cast<char32_t>(b) : next++;
      append_utf8(utf8[b], chars[b]);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}

}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return alphabet().utf8; }

int unicode_to_byte(char32_t cp) {
  if (cp < 0x100) {
    const bool printable = (cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || cp >= 0xAE;
    return printable ? static_cast<int>(cp) : -1;
  }
  if (cp >= 0x100 && cp < 0x100 + 68) {
    static const auto reverse = [] {
      std::array<int, 68> r{};
      const Alphabet& a = alphabet();
      for (int b = 0; b < 256; ++b)
        if (a.chars[b] >= 0x100) r[a.chars[b] - 0x100] = b;
      return r;
    }();
    return reverse[cp - 0x100];
  }
  return -1;
}

void append_byte_level(std::string& out, std::string_view bytes) {
  // Every character of the alphabet is below U+0800, so at most two UTF-8 bytes per input byte.
  const auto& table = byte_to_unicode();
  const size_t old = out.size();
  out.resize(old + 2 * bytes.size());
  char* p = out.data() + old;
  for (unsigned char b : bytes) {
    const std::string& c = table[b];
    p[0] = c[0];
    if (c.size() == 2) p[1] = c[1];
    p += c.size();
  }
  out.resize(static_cast<size_t>(p - out.data()));
}

}  // namespace m3::tok
