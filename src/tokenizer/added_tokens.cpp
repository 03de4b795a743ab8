#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "m3/error.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace m3::tok {

void StringSetMatcher::add(const std::string& pattern, size_t value) {
  if (pattern.empty()) return;
  uint32_t node = 0;
  for (unsigned char b : pattern) {
    uint32_t next = child(node, b);
    if (next == 0) {
      next = static_cast<uint32_t>(nodes_.size());
      nodes_.emplace_back();
      auto& ch = nodes_[node].children;
      ch.insert(std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, uint32_t{0})), {b, next});
    }
    node = next;
  }
  nodes_[node].value = static_cast<int64_t>(value);
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
}

uint32_t StringSetMatcher::child(uint32_t node, unsigned char b) const {
  const auto& ch = nodes_[node].children;
  const auto it = std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, uint32_t{0}));
  return it != ch.end() && it->first == b ? it->second : 0;
}

void AddedVocabulary::load(const Json& list, const BpeModel& model, const Normalizer* normalizer) {
  check(list.is_array(), "added_tokens: expected an array, found " + std::string(list.type_name()));
  // The tokenizers library numbers new tokens from the model's vocabulary size (its number of
  // entries), ignoring the ids written in the file (it only warns when they differ).
  int32_t next_id = 0;
  for (int32_t id = 0; id < model.id_limit(); ++id) next_id += model.id_to_token(id) ? 1 : 0;
  std::unordered_map<int32_t, AddedToken> by_id;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    const Json& e = list[i];
    AddedToken t;
    t.content = require_string(e, "content", where);
    t.single_word = optional_bool(e, "single_word", where, false);
    t.lstrip = optional_bool(e, "lstrip", where, false);
    t.rstrip = optional_bool(e, "rstrip", where, false);
    t.special = optional_bool(e, "special", where, false);
    t.normalized = optional_bool(e, "normalized", where, !t.special);
    if (t.content.empty()) continue;
    check(valid_utf8_prefix(t.content) == t.content.size(), where + ".content: invalid UTF-8");
    if (const auto known = by_content_.find(t.content); known != by_content_.end()) {
      const AddedToken& old = by_id[known->second];
      if (old.single_word == t.single_word && old.lstrip == t.lstrip && old.rstrip == t.rstrip &&
          old.normalized == t.normalized && old.special == t.special)
        continue;
      t.id = known->second;
    } else if (const auto in_model = model.token_to_id(t.content)) {
      t.id = *in_model;
    } else {
      t.id = next_id++;
    }
    by_content_[t.content] = t.id;
    if (t.special) special_contents_.insert(t.content);
    by_id[t.id] = t;
  }
  for (auto& [id, t] : by_id) {
    by_id_[id] = tokens_.size();
    id_limit_ = std::max(id_limit_, id + 1);
    std::string pattern = t.content;
    if (t.normalized && normalizer) {
      pattern = normalizer->normalized(t.content);
      if (pattern != t.content) decode_strings_[id] = pattern;
    }
    (t.normalized ? normalized_matcher_ : raw_matcher_).add(pattern, tokens_.size());
    tokens_.push_back(std::move(t));
  }
}

void AddedVocabulary::split(Pieces& p, bool normalized_kind) const {
  const StringSetMatcher& matcher = normalized_kind ? normalized_matcher_ : raw_matcher_;
  if (matcher.empty()) return;
  std::vector<Span> spans;
  for (const Span& span : p.spans) {
    if (span.token >= 0) {
      spans.push_back(span);
      continue;
    }
    const std::string_view s = p.view(span);
    size_t start_offset = 0;
    auto emit = [&](size_t b, size_t e, int32_t token) {
      if (e > b) spans.push_back({span.begin + b, span.begin + e, token, span.at_origin && b == 0});
    };
    matcher.find_all(s, [&](size_t b, size_t e, size_t index) {
      const AddedToken& t = tokens_[index];
      if (t.single_word) {
        // Only a whole word: no word character touching either end.
        const bool start_ok = b == 0 || !is_word_char(last_code_point(s.substr(0, b)));
        size_t k = e;
        const bool stop_ok = e == s.size() || !is_word_char(next_code_point(s, k));
        if (!start_ok || !stop_ok) return;
      }
      if (t.lstrip) {
        // Swallow the whitespace before the token, but not what an earlier match took.
        size_t nb = b;
        while (nb > 0) {
          const size_t c = prev_code_point_start(s, nb);
          size_t k = c;
          if (!is_white_space(next_code_point(s, k))) break;
          nb = c;
        }
        b = std::max(nb, start_offset);
      }
      if (t.rstrip) {
        while (e < s.size()) {
          size_t k = e;
          if (!is_white_space(next_code_point(s, k))) break;
          e = k;
        }
      }
      if (start_offset < b) emit(start_offset, b, -1);
      emit(b, e, t.id);
      start_offset = e;
    });
    if (start_offset < s.size()) emit(start_offset, s.size(), -1);
  }
  p.spans = std::move(spans);
}

std::optional<int32_t> AddedVocabulary::token_to_id(std::string_view content) const {
  const auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

const std::string* AddedVocabulary::decode_string(int32_t id) const {
  const auto it = by_id_.find(id);
  if (it == by_id_.end()) return nullptr;
  const auto norm = decode_strings_.find(id);
  return norm != decode_strings_.end() ? &norm->second : &tokens_[it->second].content;
}

bool AddedVocabulary::is_special_id(int32_t id) const {
  const auto it = by_id_.find(id);
  return it != by_id_.end() && tokens_[it->second].special;
}

}  // namespace m3::tok
