// Normalizers of tokenizer.json ("normalizer" field): rewrite the text of each piece before
// pre-tokenization. Supported: NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip,
// ByteLevel, Sequence.
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/json_fields.h"

namespace m3::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string_view in, std::string& out) const = 0;
  std::string normalized(std::string_view in) const {
    std::string out;
    normalize(in, out);
    return out;
  }
};

// Builds the normalizer described by `j`; `where` names it in errors.
std::unique_ptr<Normalizer> make_normalizer(const Json& j, const std::string& where);

}  // namespace m3::tok
