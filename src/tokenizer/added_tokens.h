// Added tokens of tokenizer.json ("added_tokens"): strings matched in the text before the model
// runs and encoded as one id each. Tokens with normalized=false (special tokens usually) are
// found in the raw text, the others in the normalized text; matching is leftmost-longest, with
// the single_word / lstrip / rstrip rules of the tokenizers library's AddedVocabulary.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tokenizer/bpe_model.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/pieces.h"

namespace m3::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// Finds the leftmost-longest, non-overlapping occurrences of a set of strings.
class StringSetMatcher {
 public:
  void add(const std::string& pattern, size_t value);
  // Calls on_match(begin, end, value) for each match in order.
  template <class F>
  void find_all(std::string_view text, F&& on_match) const;
  bool empty() const { return nodes_.size() <= 1; }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, uint32_t>> children;  // sorted by byte
    int64_t value = -1;
  };
  uint32_t child(uint32_t node, unsigned char b) const;  // 0 when absent (0 is the root)
  std::vector<Node> nodes_{Node{}};
  std::array<bool, 256> first_byte_{};
};

class AddedVocabulary {
 public:
  // Reads "added_tokens" and assigns ids the way the tokenizers library does on load: a token
  // already in the model vocabulary takes the model's id, new ones are numbered after the model.
  void load(const Json& list, const BpeModel& model, const Normalizer* normalizer);

  // Cuts the added tokens of one kind (normalized or not) out of the non-token pieces.
  void split(Pieces& pieces, bool normalized_kind) const;

  std::optional<int32_t> token_to_id(std::string_view content) const;
  // The string decode() uses for an added token's id (the normalized content for normalized
  // tokens, as the tokenizers library does), or nullptr.
  const std::string* decode_string(int32_t id) const;
  bool is_special_string(const std::string& s) const { return special_contents_.count(s) != 0; }
  bool is_special_id(int32_t id) const;
  int32_t id_limit() const { return id_limit_; }

 private:
  std::vector<AddedToken> tokens_;                    // one per distinct id
  std::unordered_map<int32_t, size_t> by_id_;         // id -> index in tokens_
  std::unordered_map<std::string, int32_t> by_content_;
  std::unordered_map<int32_t, std::string> decode_strings_;
  std::unordered_set<std::string> special_contents_;
  StringSetMatcher raw_matcher_, normalized_matcher_;
  int32_t id_limit_ = 0;
};

// ---- template definitions ----

template <class F>
void StringSetMatcher::find_all(std::string_view text, F&& on_match) const {
  if (empty()) return;
  size_t i = 0;
  while (i < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    uint32_t node = 0;
    int64_t best_value = -1;
    size_t best_end = 0;
    for (size_t k = i; k < text.size(); ++k) {
      node = child(node, static_cast<unsigned char>(text[k]));
      if (node == 0) break;
      if (nodes_[node].value >= 0) {
        best_value = nodes_[node].value;
        best_end = k + 1;
      }
    }
    if (best_value < 0) {
      ++i;
      continue;
    }
    on_match(i, best_end, static_cast<size_t>(best_value));
    i = best_end;
  }
}

}  // namespace m3::tok
