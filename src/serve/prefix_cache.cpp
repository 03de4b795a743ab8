#include "serve/prefix_cache.h"

namespace m3::serve {

std::string PrefixCache::key_of(std::span<const int32_t> tokens) {
  return std::string(reinterpret_cast<const char*>(tokens.data()), tokens.size_bytes());
}

const SequenceState* PrefixCache::longest_prefix(std::span<const int32_t> tokens, int64_t chunk) {
  if (lru_.empty() || chunk <= 0) return nullptr;
  for (int64_t len = (int64_t(tokens.size()) - 1) / chunk * chunk; len > 0; len -= chunk) {
    auto it = index_.find(key_of(tokens.first(size_t(len))));
    if (it == index_.end()) continue;
    lru_.splice(lru_.begin(), lru_, it->second);
    return &it->second->state;
  }
  return nullptr;
}

bool PrefixCache::contains(std::span<const int32_t> prefix) const { return index_.count(key_of(prefix)) > 0; }

bool PrefixCache::insert(std::span<const int32_t> prefix, const SequenceState& state) {
  const size_t b = state.bytes() + prefix.size_bytes();
  if (b > max_bytes_ || contains(prefix)) return false;
  while (bytes_ + b > max_bytes_ && evict_one()) {
  }
  lru_.push_front(Entry{key_of(prefix), state, b});
  index_[lru_.front().key] = lru_.begin();
  bytes_ += b;
  return true;
}

bool PrefixCache::evict_one(const SequenceState* keep) {
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    if (&it->state == keep) continue;
    bytes_ -= it->bytes;
    index_.erase(it->key);
    lru_.erase(std::next(it).base());
    return true;
  }
  return false;
}

}  // namespace m3::serve
