#include "tokenizer/decoders.h"

#include "m3/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/text_pattern.h"
#include "tokenizer/utf8.h"

namespace m3::tok {

namespace {

constexpr const char* kReplacementChar = "\xEF\xBF\xBD";

// Maps byte-level characters back to bytes and repairs the result into valid UTF-8. A token with
// a character outside the byte alphabet (an added token) contributes its own UTF-8 unchanged.
class ByteLevelDecoder final : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      const size_t mark = bytes.size();
      bool all_mapped = true;
      size_t i = 0;
      while (i < t.size()) {
        const int b = unicode_to_byte(next_code_point(t, i));
        if (b < 0) {
          all_mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      if (!all_mapped) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    return {to_valid_utf8(bytes)};
  }
};

// Turns runs of "<0xXX>" tokens into the string of those bytes, or one U+FFFD per byte when the
// run is not valid UTF-8.
class ByteFallbackDecoder final : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string run;
    size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (valid_utf8_prefix(run) == run.size()) {
        out.push_back(run);
      } else {
        for (size_t k = 0; k < run_len; ++k) out.emplace_back(kReplacementChar);
      }
      run.clear();
      run_len = 0;
    };
    for (std::string& t : tokens) {
      const int byte = byte_of(t);
      if (byte >= 0) {
        run.push_back(static_cast<char>(byte));
        ++run_len;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    return out;
  }
  bool open_ended(const std::string& token) const override { return byte_of(token) >= 0; }

 private:
  // The byte a "<0xXX>" token stands for; -1 for other tokens.
  static int byte_of(const std::string& t) {
    return t.size() == 6 && t.starts_with("<0x") && t.back() == '>' ? parse_hex_byte(t[3], t[4]) : -1;
  }
  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static int parse_hex_byte(char hi, char lo) {
    const int h = hex_digit(hi), l = hex_digit(lo);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

// Replacement characters become spaces, except in the first token when a prefix was prepended
// at encode time (prepend_scheme other than "never"): there they are dropped.
class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool prepended)
      : replacement_(std::move(replacement)), prepended_(prepended) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      const std::string& t = tokens[k];
      std::string s;
      for (size_t pos = 0; pos < t.size();) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          if (k != 0 || !prepended_) s += ' ';
          pos += replacement_.size();
        } else {
          s += t[pos++];
        }
      }
      tokens[k] = std::move(s);
    }
    return tokens;
  }

 private:
  std::string replacement_;
  bool prepended_;
};

class FuseDecoder final : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    return {all};
  }
};

// Removes up to `start` leading and `stop` trailing occurrences of one character per token.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      std::vector<char32_t> chars;
      for (size_t i = 0; i < t.size();) chars.push_back(next_code_point(t, i));
      size_t cut_start = 0;
      for (size_t k = 0; k < start_ && k < chars.size() && chars[k] == content_; ++k) cut_start = k + 1;
      size_t cut_stop = chars.size();
      for (size_t k = 0; k < stop_ && k < chars.size(); ++k) {
        const size_t idx = chars.size() - k - 1;
        if (chars[idx] != content_) break;
        cut_stop = idx;
      }
      std::string s;
      for (size_t k = cut_start; k < cut_stop; ++k) append_utf8(s, chars[k]);
      t = std::move(s);
    }
    return tokens;
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(TextPattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      std::string s;
      pattern_.replace_all(t, content_, s);
      t = std::move(s);
    }
    return tokens;
  }

 private:
  TextPattern pattern_;
  std::string content_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& step : steps_) tokens = step->decode_chain(std::move(tokens));
    return tokens;
  }
  bool open_ended(const std::string& token) const override {
    for (const auto& step : steps_)
      if (step->open_ended(token)) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

char32_t single_code_point(const std::string& s, const std::string& where) {
  size_t i = 0;
  check(!s.empty(), where + ": expected a single character, found an empty string");
  const char32_t cp = next_code_point(s, i);
  check(i == s.size(), where + ": expected a single character, found '" + s + "'");
  return cp;
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const Json& j, const std::string& where) {
  const std::string type = type_tag(j, where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Metaspace") {
    const std::string rep = require_string(j, "replacement", where);
    single_code_point(rep, where + ".replacement");
    std::string scheme = optional_string(j, "prepend_scheme", where, "always");
    if (!optional_bool(j, "add_prefix_space", where, true)) scheme = "never";
    return std::make_unique<MetaspaceDecoder>(rep, scheme != "never");
  }
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const int64_t start = optional_int(j, "start", where, 0), stop = optional_int(j, "stop", where, 0);
    check(start >= 0 && stop >= 0, where + ": start and stop must be non-negative");
    return std::make_unique<StripDecoder>(single_code_point(require_string(j, "content", where), where + ".content"),
                                          static_cast<size_t>(start), static_cast<size_t>(stop));
  }
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(TextPattern::from_json(require_field(j, "pattern", where), where + ".pattern"),
                                            require_string(j, "content", where));
  }
  if (type == "Sequence") {
    return std::make_unique<SequenceDecoder>(parse_list(j, "decoders", where, make_decoder));
  }
  throw Error(where + ": unsupported decoder type '" + type +
              "' (supported: ByteLevel, ByteFallback, Metaspace, Fuse, Strip, Replace, Sequence)");
}

}  // namespace m3::tok
