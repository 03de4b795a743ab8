// StreamDecoder: the tokenizers library's DecodeStream rule. Text is decoded from a few tokens
// of already-emitted context so that context-dependent decoders (Metaspace's leading space,
// Strip) behave as in a full decode; new text is released once it no longer ends in U+FFFD,
// i.e. once the bytes of the last character are complete, and no run of ByteFallback bytes is
// still open (a later byte can turn the whole run into U+FFFDs, which the library's
// DecodeStream reports as an error instead).
#include "m3/tokenizer.h"

namespace m3 {

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
// A trailing U+FFFD usually means the last character is still incomplete, but it can be real
// output (an invalid byte sequence, or the character itself). Past this many pending tokens --
// far more than a 4-byte character plus skipped special tokens needs -- the text is released
// anyway, which bounds the cost of re-decoding the pending tokens.
constexpr size_t kMaxPendingTokens = 32;
}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), skip_special_(skip_special_tokens) {}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  // An open run is held however long it gets (ids that add no text do not close it): releasing
  // part of it could print a character that the full decode turns into U+FFFD.
  const Tokenizer::Piece piece = tokenizer_->piece(id, skip_special_);
  if (piece != Tokenizer::Piece::kNothing) open_ = piece == Tokenizer::Piece::kOpen;
  if (open_) return "";
  const std::string text = tokenizer_->decode(ids_, skip_special_);
  const size_t pending = ids_.size() - prefix_ids_;
  if (text.size() <= prefix_text_.size() && pending <= kMaxPendingTokens) return "";
  if (text.ends_with(kReplacement) && pending <= kMaxPendingTokens) return "";
  // A decoder may rewrite the context's text once more tokens follow; then emit nothing for it
  // rather than a wrong suffix, and restart the context here.
  std::string fresh = text.starts_with(prefix_text_) ? text.substr(prefix_text_.size()) : text;
  // The tokens just emitted become the context: they start where a character started, so
  // their decode is clean.
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_ids_));
  prefix_ids_ = ids_.size();
  prefix_text_ = tokenizer_->decode(ids_, skip_special_);
  return fresh;
}

std::string StreamDecoder::flush() {
  if (ids_.size() == prefix_ids_) return "";
  const std::string text = tokenizer_->decode(ids_, skip_special_);
  std::string rest = text.starts_with(prefix_text_) ? text.substr(prefix_text_.size()) : text;
  ids_.clear();
  prefix_ids_ = 0;
  prefix_text_.clear();
  open_ = false;
  return rest;
}

}  // namespace m3
