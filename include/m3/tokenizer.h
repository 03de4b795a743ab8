// Text <-> token ids, compatible with Hugging Face `tokenizer.json` files (BPE models with their
// normalizers, pre-tokenizers, decoders, added tokens and post-processor), and a byte-level BPE
// trainer that writes such files.
//
// Invalid UTF-8 in encode()'s input is not an error: each maximal ill-formed subsequence is
// replaced by U+FFFD first (the rule Python's bytes.decode(errors="replace") and Rust's
// String::from_utf8_lossy follow), then the text is encoded like the tokenizers library would
// encode that repaired string.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace m3 {

// encode() and decode() are const and may run concurrently on one Tokenizer (their caches and
// scratch buffers are per thread).
class Tokenizer {
 public:
  // `path` is a tokenizer.json, or a directory holding one; a tokenizer_config.json beside it
  // (bos_token, eos_token, chat_template) is read too when present.
  static Tokenizer load(const std::string& path);
  // Parses tokenizer.json text; `source` names it in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& source = "<memory>");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special_tokens applies the post-processor template (BOS/EOS), as in the tokenizers library.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Unknown ids are skipped, as the tokenizers library does.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;

  // One more than the largest id of the model vocabulary and the added tokens: the number of
  // rows an embedding table needs.
  int32_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  // From tokenizer_config.json when present, else guessed from the post-processor template.
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // Empty when tokenizer_config.json has none.
  const std::string& chat_template() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  // For StreamDecoder: what `id` adds to decode()'s text. kOpen: text that may still change when
  // more ids follow (a byte of a ByteFallback run, which becomes U+FFFDs unless valid UTF-8).
  enum class Piece { kNothing, kFinal, kOpen };
  Piece piece(int32_t id, bool skip_special_tokens) const;
  std::unique_ptr<Impl> impl_;
  friend class StreamDecoder;
};

// Incremental detokenizer for streaming generation: push ids one at a time and get back the text
// that became final. Output never ends inside a UTF-8 character nor inside a run of ByteFallback
// byte tokens, and decoders that depend on context (e.g. Metaspace dropping the first token's
// leading space) see the previous tokens, so the concatenated output equals decode() of all ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true);
  // Text made final by this id; empty while a character is still incomplete.
  std::string push(int32_t id);
  // Whatever is still pending (an incomplete character decodes to U+FFFD).
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // context tokens followed by not-yet-emitted tokens
  size_t prefix_ids_ = 0;     // ids_[0, prefix_ids_) were already emitted (kept as context)
  std::string prefix_text_;   // decode of ids_[0, prefix_ids_)
  bool open_ = false;         // the last id that adds text is Piece::kOpen
};

// Options of the byte-level BPE trainer (Llama-3-style split regex + ByteLevel mapping).
struct BpeTrainerOptions {
  int32_t vocab_size = 32000;          // including the 256 byte tokens and special tokens
  int64_t min_frequency = 2;           // a pair must occur this often to be merged
  std::vector<std::string> special_tokens;  // given the first ids, in this order
  std::optional<std::string> bos_token;     // added by the post-processor when set
  std::optional<std::string> eos_token;     // recorded in tokenizer_config.json
  size_t max_token_bytes = 64;         // merges longer than this many bytes are not learned
};

// Trains on the UTF-8 text of `files` and returns tokenizer.json text.
std::string train_bpe_tokenizer(const std::vector<std::string>& files,
                                const BpeTrainerOptions& options);
// Same, on in-memory texts (one per document).
std::string train_bpe_tokenizer_from_texts(const std::vector<std::string>& texts,
                                           const BpeTrainerOptions& options);

}  // namespace m3
