// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}): turns one pre-tokenized word
// into ids by splitting it into characters (with byte fallback / unk handling) and applying the
// merges lowest rank first, leftmost first, exactly as the tokenizers library's Word::merge_all.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/json_fields.h"
#include "tokenizer/string_map.h"

namespace m3::tok {

class BpeModel {
 public:
  static BpeModel from_json(const Json& model, const std::string& where);

  // Appends the ids of `word` to `out`.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  const std::string* id_to_token(int32_t id) const;
  // One more than the largest id.
  int32_t id_limit() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct MergeInfo {
    int32_t rank = 0;
    int32_t new_id = 0;
  };
  // Bits of join_flags_[id].
  static constexpr uint8_t kEndsLeft = 1;     // id can be the last symbol of a merge's left part
  static constexpr uint8_t kStartsRight = 2;  // id can be the first symbol of a merge's right part
  void compute_join_flags(const std::vector<std::array<int32_t, 3>>& merges);
  bool joinable(int32_t left, int32_t right) const {
    return (join_flags_[left] & kEndsLeft) && (join_flags_[right] & kStartsRight);
  }
  void split_into_symbols(std::string_view word, std::vector<int32_t>& symbols) const;
  // Merge a run of symbols in place; return how many symbols remain at its front.
  size_t merge_small(std::span<int32_t> symbols) const;
  size_t merge_large(std::span<int32_t> symbols) const;

  StringMap<int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  PairMap<MergeInfo> merges_;
  std::vector<uint8_t> join_flags_;  // per id: kEndsLeft | kStartsRight
  std::array<int32_t, 128> ascii_ids_{};  // id of each single ASCII character, -1 if none
  std::optional<std::string> unk_token_;
  std::string continuing_subword_prefix_, end_of_word_suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::array<int32_t, 256> byte_fallback_ids_{};  // id of "<0xXX>", -1 if missing
  uint64_t serial_ = 0;                           // identifies this model's per-thread cache
};

}  // namespace m3::tok
