// Prompt text to token ids and generated ids back to text, through the model's tokenizer or, for
// a checkpoint without one, byte-level (one token per UTF-8 byte), as `m3 generate` does.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "m3/tokenizer.h"

namespace m3::serve {

class TextCodec {
 public:
  // tok: nullopt for byte-level text (needs vocab_size >= 256).
  TextCodec(std::optional<Tokenizer> tok, int64_t vocab_size);
  std::vector<int32_t> encode(std::string_view text) const;  // with the tokenizer's BOS/EOS template
  const Tokenizer* tokenizer() const { return tok_ ? &*tok_ : nullptr; }
  // One token's own text (special tokens included), for logprobs.
  std::string token_text(int32_t id) const;
  int64_t vocab_size() const { return vocab_; }

  // One sequence's generated ids to text, released only in whole UTF-8 characters.
  class Decoder {
   public:
    explicit Decoder(const TextCodec& codec);
    std::string push(int32_t id);
    std::string flush();

   private:
    std::optional<StreamDecoder> stream_;
    std::string pending_;  // byte-level: the bytes of an incomplete character
  };

 private:
  std::optional<Tokenizer> tok_;
  int64_t vocab_;
};

}  // namespace m3::serve
