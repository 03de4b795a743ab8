#include "tokenizer/normalizers.h"

#include <vector>

#include "m3/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/text_pattern.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace m3::tok {

namespace {

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm form) : form_(form) {}
  void normalize(std::string_view in, std::string& out) const override {
    out += normalize_unicode(in, form_);
  }

 private:
  NormalForm form_;
};

class Lowercase final : public Normalizer {
 public:
  void normalize(std::string_view in, std::string& out) const override { out += lowercase(in); }
};

class Replace final : public Normalizer {
 public:
  Replace(TextPattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string_view in, std::string& out) const override {
    pattern_.replace_all(in, content_, out);
  }

 private:
  TextPattern pattern_;
  std::string content_;
};

// Prepends a string to every non-empty piece.
class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string_view in, std::string& out) const override {
    if (!in.empty()) out += prefix_;
    out += in;
  }

 private:
  std::string prefix_;
};

// Removes leading and/or trailing Unicode whitespace.
class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string_view in, std::string& out) const override {
    size_t b = 0, e = in.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!is_white_space(next_code_point(in, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        const size_t start = prev_code_point_start(in, e, b);
        size_t i = start;
        if (!is_white_space(next_code_point(in, i))) break;
        e = start;
      }
    }
    out += in.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

// Maps every byte to its byte-level alphabet character.
class ByteLevelNormalizer final : public Normalizer {
 public:
  void normalize(std::string_view in, std::string& out) const override { append_byte_level(out, in); }
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void normalize(std::string_view in, std::string& out) const override {
    std::string cur(in), next;
    for (const auto& step : steps_) {
      next.clear();
      step->normalize(cur, next);
      cur.swap(next);
    }
    out += cur;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const Json& j, const std::string& where) {
  const std::string type = type_tag(j, where);
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalForm::NFC);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalForm::NFD);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalForm::NFKC);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalForm::NFKD);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Replace") {
    return std::make_unique<Replace>(TextPattern::from_json(require_field(j, "pattern", where), where + ".pattern"),
                                     require_string(j, "content", where));
  }
  if (type == "Prepend") return std::make_unique<Prepend>(require_string(j, "prepend", where));
  if (type == "Strip") {
    return std::make_unique<Strip>(optional_bool(j, "strip_left", where, true),
                                   optional_bool(j, "strip_right", where, true));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "Sequence") {
    return std::make_unique<Sequence>(parse_list(j, "normalizers", where, make_normalizer));
  }
  throw Error(where + ": unsupported normalizer type '" + type +
              "' (supported: NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip, ByteLevel, Sequence)");
}

}  // namespace m3::tok
