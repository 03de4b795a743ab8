// Decoders of tokenizer.json ("decoder" field): turn the token strings of ids back into text.
// Each decoder maps a list of token strings to a new list (tokenizers' decode_chain); the final
// text is their concatenation. Supported: ByteLevel, ByteFallback, Metaspace, Fuse, Strip,
// Replace, Sequence.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_fields.h"

namespace m3::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
  // Whether the text of `token` may still change when more tokens follow it: a "<0xXX>" byte
  // under ByteFallback, whose whole run becomes U+FFFDs unless it is valid UTF-8.
  virtual bool open_ended(const std::string& token) const { return false; }
};

std::unique_ptr<Decoder> make_decoder(const Json& j, const std::string& where);

}  // namespace m3::tok
