// Byte-level BPE training: count the pre-tokens of the corpus (Llama-3 split regex), start from
// the 256 byte symbols, and repeatedly merge the most frequent adjacent pair, updating pair
// counts only in the words that contain the merged pair. Writes tokenizer.json text that the
// tokenizers library loads (Split + ByteLevel pre-tokenizer, ByteLevel decoder).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "core/omp_exceptions.h"
#include "io/files.h"
#include "m3/error.h"
#include "m3/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pieces.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace m3 {

namespace {

using tok::StringMap;
using OrderedJson = nlohmann::ordered_json;

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Counts the pre-tokens of every text, with special tokens cut out first so that no merge
// learns their pieces.
StringMap<int64_t> count_words(const std::vector<std::string>& texts, const std::vector<std::string>& specials) {
  const tok::Regex split(tok::kLlama3SplitPattern);
  tok::StringSetMatcher special_matcher;
  for (size_t i = 0; i < specials.size(); ++i) special_matcher.add(specials[i], i);
  StringMap<int64_t> total;
  OmpExceptions errors;  // bad_alloc, a regex over its match limit
#pragma omp parallel
  {
    StringMap<int64_t> local;
    std::vector<tok::Segment> segs;
#pragma omp for schedule(dynamic, 1)
    for (size_t t = 0; t < texts.size(); ++t) errors.run([&] {
      const std::string text = tok::to_valid_utf8(texts[t]);
      std::vector<std::string_view> parts;
      size_t last = 0;
      special_matcher.find_all(text, [&](size_t b, size_t e, size_t) {
        parts.push_back(std::string_view(text).substr(last, b - last));
        last = e;
      });
      parts.push_back(std::string_view(text).substr(last));
      for (const std::string_view part : parts) {
        segs.clear();
        tok::find_segments(split, part, segs);
        for (const tok::Segment& s : segs) {
          const std::string_view w = part.substr(s.begin, s.end - s.begin);
          auto it = local.find(w);
          if (it == local.end()) it = local.emplace(std::string(w), 0).first;
          ++it->second;
        }
      }
    });
#pragma omp critical
    errors.run([&] {
      for (auto& [w, c] : local) total[w] += c;
    });
  }
  errors.rethrow();
  return total;
}

// Everything the merge loop needs: words, pair statistics, and the vocabulary built so far.
class Trainer {
 public:
  Trainer(const StringMap<int64_t>& word_counts, const BpeTrainerOptions& opt) : opt_(opt) {
    for (const std::string& s : opt.special_tokens) add_token(s);
    const auto& alphabet = tok::byte_to_unicode();
    for (int b = 0; b < 256; ++b) {
      byte_ids_[b] = add_token(alphabet[b]);
      token_bytes_.back() = std::string(1, static_cast<char>(b));
    }
    words_.reserve(word_counts.size());
    for (const auto& [w, c] : word_counts) {
      Word word{{}, c};
      for (unsigned char b : w) word.symbols.push_back(byte_ids_[b]);
      words_.push_back(std::move(word));
    }
    for (size_t i = 0; i < words_.size(); ++i) add_pairs(static_cast<int32_t>(i), +1);
    for (const uint64_t k : touched_) push(k);
    touched_.clear();
  }

  void run() {
    while (static_cast<int32_t>(tokens_.size()) < opt_.vocab_size && !heap_.empty()) {
      const auto [count, key] = heap_.top();
      heap_.pop();
      const auto it = pair_counts_.find(key);
      if (it == pair_counts_.end() || it->second != count) continue;  // stale entry
      if (count < opt_.min_frequency) break;
      const auto a = static_cast<int32_t>(key >> 32), b = static_cast<int32_t>(key & 0xFFFFFFFF);
      if (token_bytes_[a].size() + token_bytes_[b].size() > opt_.max_token_bytes) {
        pair_counts_.erase(it);  // never merged: drop it for good
        continue;
      }
      merge(a, b);
    }
  }

  std::string to_json() const {
    OrderedJson vocab = OrderedJson::object();
    for (size_t id = 0; id < tokens_.size(); ++id) vocab[tokens_[id]] = id;
    OrderedJson merges = OrderedJson::array();
    for (const auto& [a, b] : merges_) merges.push_back({tokens_[a], tokens_[b]});
    const OrderedJson byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false},
                                    {"trim_offsets", true}, {"use_regex", false}};
    OrderedJson added = OrderedJson::array();
    for (size_t i = 0; i < opt_.special_tokens.size(); ++i) {
      added.push_back({{"id", i}, {"content", opt_.special_tokens[i]}, {"single_word", false},
                       {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}});
    }
    OrderedJson post = byte_level;
    if (opt_.bos_token) {
      const std::string& bos = *opt_.bos_token;
      const OrderedJson bos_piece = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
      post = {{"type", "TemplateProcessing"},
              {"single", {bos_piece, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
              {"pair", {bos_piece, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
              {"special_tokens", {{bos, {{"id", bos}, {"ids", {special_id(bos)}}, {"tokens", {bos}}}}}}};
    }
    OrderedJson j = {
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", added},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", tok::kLlama3SplitPattern}}}, {"behavior", "Isolated"},
             {"invert", false}},
            byte_level}}}},
        {"post_processor", post},
        {"decoder", byte_level},
        {"model",
         {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
          {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}}},
    };
    return j.dump(1);
  }

 private:
  int32_t add_token(const std::string& text) {
    const auto id = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(text);
    token_bytes_.push_back(text);
    return id;
  }

  int32_t special_id(const std::string& s) const {
    const auto it = std::find(opt_.special_tokens.begin(), opt_.special_tokens.end(), s);
    return static_cast<int32_t>(it - opt_.special_tokens.begin());
  }

  // Adds (sign = +1) or removes (-1) the pairs of word w to/from the statistics.
  void add_pairs(int32_t w, int sign) {
    const Word& word = words_[w];
    for (size_t k = 0; k + 1 < word.symbols.size(); ++k) {
      const uint64_t key = pair_key(word.symbols[k], word.symbols[k + 1]);
      pair_counts_[key] += sign * word.count;
      if (sign > 0) where_[key].push_back(w);
      touched_.insert(key);
    }
  }

  void push(uint64_t key) {
    const auto it = pair_counts_.find(key);
    if (it == pair_counts_.end()) return;
    if (it->second <= 0) {
      pair_counts_.erase(it);
      return;
    }
    heap_.push({it->second, key});
  }

  void merge(int32_t a, int32_t b) {
    const int32_t merged = add_token(tokens_[a] + tokens_[b]);
    token_bytes_.back() = token_bytes_[a] + token_bytes_[b];
    merges_.emplace_back(a, b);
    const uint64_t key = pair_key(a, b);
    std::vector<int32_t> ws = std::move(where_[key]);
    where_.erase(key);
    std::sort(ws.begin(), ws.end());
    ws.erase(std::unique(ws.begin(), ws.end()), ws.end());
    for (const int32_t w : ws) {
      std::vector<int32_t>& s = words_[w].symbols;
      bool has = false;
      for (size_t k = 0; k + 1 < s.size() && !has; ++k) has = s[k] == a && s[k + 1] == b;
      if (!has) continue;  // a stale entry: the word no longer holds the pair
      add_pairs(w, -1);
      std::vector<int32_t> out;
      out.reserve(s.size());
      for (size_t k = 0; k < s.size(); ++k) {
        if (k + 1 < s.size() && s[k] == a && s[k + 1] == b) {
          out.push_back(merged);
          ++k;
        } else {
          out.push_back(s[k]);
        }
      }
      s = std::move(out);
      add_pairs(w, +1);
    }
    pair_counts_.erase(key);
    for (const uint64_t k : touched_) push(k);
    touched_.clear();
  }

  // Max-heap on count; among equal counts the smaller pair key (older tokens) first.
  struct Entry {
    int64_t count;
    uint64_t key;
    bool operator<(const Entry& o) const { return count != o.count ? count < o.count : key > o.key; }
  };

  const BpeTrainerOptions& opt_;
  std::vector<std::string> tokens_;       // vocabulary strings (byte-level alphabet)
  std::vector<std::string> token_bytes_;  // the raw bytes each token stands for
  std::array<int32_t, 256> byte_ids_{};
  std::vector<std::pair<int32_t, int32_t>> merges_;
  std::vector<Word> words_;
  std::unordered_map<uint64_t, int64_t> pair_counts_;
  std::unordered_map<uint64_t, std::vector<int32_t>> where_;  // pair -> words that (may) hold it
  std::unordered_set<uint64_t> touched_;                        // pairs whose count changed
  std::priority_queue<Entry> heap_;
};

BpeTrainerOptions checked(BpeTrainerOptions opt) {
  // BOS/EOS must be special tokens; add them when the caller did not list them.
  for (const auto* t : {&opt.bos_token, &opt.eos_token}) {
    if (*t && std::find(opt.special_tokens.begin(), opt.special_tokens.end(), **t) == opt.special_tokens.end())
      opt.special_tokens.push_back(**t);
  }
  std::unordered_set<std::string> seen;
  for (const std::string& s : opt.special_tokens) {
    check(!s.empty(), "tokenizer train: empty special token");
    check(tok::valid_utf8_prefix(s) == s.size(), "tokenizer train: special token is not valid UTF-8");
    check(seen.insert(s).second, "tokenizer train: special token '" + s + "' listed twice");
  }
  const auto minimum = static_cast<int32_t>(opt.special_tokens.size() + 256);
  check(opt.vocab_size >= minimum, "tokenizer train: vocab size " + std::to_string(opt.vocab_size) +
                                       " is below the " + std::to_string(minimum) +
                                       " tokens the byte alphabet and special tokens need");
  check(opt.min_frequency >= 1, "tokenizer train: min frequency must be at least 1");
  check(opt.max_token_bytes >= 2, "tokenizer train: max token length must be at least 2 bytes");
  return opt;
}

}  // namespace

std::string train_bpe_tokenizer_from_texts(const std::vector<std::string>& texts, const BpeTrainerOptions& options) {
  const BpeTrainerOptions opt = checked(options);
  Trainer trainer(count_words(texts, opt.special_tokens), opt);
  trainer.run();
  return trainer.to_json();
}

std::string train_bpe_tokenizer(const std::vector<std::string>& files, const BpeTrainerOptions& options) {
  check(!files.empty(), "tokenizer train: no training files given");
  // Files are cut into ~1 MiB chunks at line starts that are not indented, so that chunks can be
  // counted in parallel without splitting a whitespace run the split regex would keep whole.
  constexpr size_t kChunk = 1 << 20;
  std::vector<std::string> chunks;
  for (const std::string& f : files) {
    const std::string text = read_file(f);
    size_t start = 0;
    while (start < text.size()) {
      size_t cut = std::min(text.size(), start + kChunk);
      while (cut < text.size() &&
             !(text[cut - 1] == '\n' && text[cut] != ' ' && text[cut] != '\t' && text[cut] != '\n' && text[cut] != '\r'))
        ++cut;
      chunks.push_back(text.substr(start, cut - start));
      start = cut;
    }
  }
  return train_bpe_tokenizer_from_texts(chunks, options);
}

}  // namespace m3
