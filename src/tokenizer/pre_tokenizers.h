// Pre-tokenizers of tokenizer.json ("pre_tokenizer" field): cut the normalized pieces into the
// words the model encodes one by one. Supported: ByteLevel, Split, Digits, Metaspace,
// WhitespaceSplit, Sequence.
#pragma once
#include <memory>
#include <string>

#include "tokenizer/json_fields.h"
#include "tokenizer/pieces.h"

namespace m3::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(Pieces& pieces) const = 0;
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& j, const std::string& where);

// The GPT-2 split regex ByteLevel uses when use_regex is true.
extern const char* const kGpt2SplitPattern;
// Llama 3's split regex (numbers in groups of up to three digits, newlines kept together).
extern const char* const kLlama3SplitPattern;

}  // namespace m3::tok
