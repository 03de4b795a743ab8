#include "serve/text_codec.h"

#include <utility>

#include "m3/error.h"

namespace m3::serve {

namespace {

// Bytes of a UTF-8 sequence from its first byte; 1 for bytes that cannot start one (they are
// released as they are, and the JSON writer replaces them).
size_t utf8_length(unsigned char c) {
  if (c >= 0xF0 && c <= 0xF4) return 4;
  if (c >= 0xE0) return c <= 0xEF ? 3 : 1;
  if (c >= 0xC2) return 2;
  return 1;
}

}  // namespace

TextCodec::TextCodec(std::optional<Tokenizer> tok, int64_t vocab_size) : tok_(std::move(tok)), vocab_(vocab_size) {
  check(tok_ || vocab_ >= 256, "a model without tokenizer.json is served byte-level, which needs a vocabulary of at least 256 tokens");
}

std::vector<int32_t> TextCodec::encode(std::string_view text) const {
  if (tok_) return tok_->encode(text, true);
  return std::vector<int32_t>(reinterpret_cast<const unsigned char*>(text.data()),
                              reinterpret_cast<const unsigned char*>(text.data()) + text.size());
}

std::string TextCodec::token_text(int32_t id) const {
  if (tok_) return tok_->decode(std::span<const int32_t>(&id, 1), false);
  return id >= 0 && id < 256 ? std::string(1, char(id)) : std::string();
}

TextCodec::Decoder::Decoder(const TextCodec& codec) {
  if (codec.tok_) stream_.emplace(*codec.tok_);
}

std::string TextCodec::Decoder::push(int32_t id) {
  if (stream_) return stream_->push(id);
  if (id < 0 || id > 255) return "";  // ids past the bytes have no text
  pending_.push_back(char(id));
  // Release every complete character; keep an incomplete one at the end.
  size_t i = 0;
  while (i < pending_.size()) {
    const size_t n = utf8_length(static_cast<unsigned char>(pending_[i]));
    if (i + n > pending_.size()) break;
    bool ok = true;
    for (size_t k = 1; k < n; ++k) ok = ok && (static_cast<unsigned char>(pending_[i + k]) & 0xC0) == 0x80;
    i += ok ? n : 1;
  }
  std::string out = pending_.substr(0, i);
  pending_.erase(0, i);
  return out;
}

std::string TextCodec::Decoder::flush() {
  if (stream_) return stream_->flush();
  return std::exchange(pending_, {});
}

}  // namespace m3::serve
