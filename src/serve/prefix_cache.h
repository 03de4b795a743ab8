// Prefix-state cache: the recurrent state after a prompt prefix (a system prompt, a shared
// document), kept in a slot of the model's state pool and forked by later prompts that start with
// the same tokens, so they prefill only the rest — the SSM counterpart of a KV prefix cache (a
// hybrid model's state carries its attention layers' KV rows too). Least recently used entries go
// first when the byte budget or the pool's slots run short. Prefixes are cut at multiples of the
// scheduler's prefill chunk, so a resumed prompt runs exactly the chunks an uncached one runs.
#pragma once
#include <cstdint>
#include <list>
#include <span>
#include <string>
#include <unordered_map>

#include "m3/state.h"

namespace m3::serve {

class PrefixCache {
 public:
  explicit PrefixCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // The cached state of the longest prefix of `tokens` that is a multiple of `chunk` and shorter
  // than tokens (the last token is always run, for its logits); null when none. Marks it used.
  const SequenceState* longest_prefix(std::span<const int32_t> tokens, int64_t chunk);
  bool contains(std::span<const int32_t> prefix) const;
  // Forks `state` (a new pool slot) as the state after `prefix`; evicts least recently used
  // entries to stay within the byte budget. False (nothing cached) when the state alone is over it.
  bool insert(std::span<const int32_t> prefix, const SequenceState& state);
  // Drops the least recently used entry, freeing its slot; false when empty. `keep` is not dropped.
  bool evict_one(const SequenceState* keep = nullptr);

  size_t entries() const { return lru_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    std::string key;  // the prefix's token ids as bytes
    SequenceState state;
    size_t bytes;
  };
  static std::string key_of(std::span<const int32_t> tokens);

  size_t max_bytes_, bytes_ = 0;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace m3::serve
