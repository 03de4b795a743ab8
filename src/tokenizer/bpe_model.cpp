#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <queue>

#include "core/lazy_check.h"
#include "m3/error.h"
#include "tokenizer/utf8.h"

namespace m3::tok {

namespace {

// Words shorter than this are cached (the tokenizers library's MAX_LENGTH).
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kCacheCapacity = 1 << 16;
// Up to this many symbols the merge loop rescans a rank array; beyond it a heap keeps the
// quadratic rescans away from pathological runs (a megabyte without a space).
constexpr size_t kSmallRunSymbols = 96;

std::atomic<uint64_t> next_serial{1};

// Per-thread caches of merge results; they belong to one model at a time (the last one used).
struct MergeCache {
  uint64_t owner = 0;
  StringMap<std::vector<int32_t>> words;  // short word's text -> ids
  // Inside longer words (the whole text, without a pre-tokenizer): a run's symbols, as the raw
  // bytes of their ids -> ids.
  StringMap<std::vector<int32_t>> runs;
};

void remember(StringMap<std::vector<int32_t>>& map, std::string key, std::span<const int32_t> ids) {
  if (map.size() >= kCacheCapacity) map.clear();
  map.emplace(std::move(key), std::vector<int32_t>(ids.begin(), ids.end()));
}

std::string_view bytes_of(std::span<const int32_t> ids) {
  return {reinterpret_cast<const char*>(ids.data()), ids.size_bytes()};
}

// `where()` names the merge in errors (built only for one).
template <class Where>
std::pair<std::string, std::string> parse_merge(const Json& m, const Where& where) {
  if (m.is_string()) {
    const std::string& s = m.get_ref<const std::string&>();
    const size_t sp = s.find(' ');
    check(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
          [&] { return where() + ": expected \"left right\" (exactly one space), found \"" + s + "\""; });
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  check(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
        [&] { return where() + ": expected a \"left right\" string or a [left, right] pair, found " + m.dump(); });
  return {m[0].get<std::string>(), m[1].get<std::string>()};
}

}  // namespace

BpeModel BpeModel::from_json(const Json& j, const std::string& where) {
  const std::string type = optional_string(j, "type", where, "BPE");
  check(type == "BPE", where + ".type: unsupported model type '" + type + "' (only BPE is supported)");
  BpeModel m;
  m.serial_ = next_serial.fetch_add(1);
  const Json& vocab = require_field(j, "vocab", where);
  check(vocab.is_object(), where + ".vocab: expected an object of token -> id, found " + vocab.type_name());
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    // Bounded before the id table (sized by the largest id) is allocated. The entry's path is
    // spelled out only for a bad id: vocabularies hold ~10^5 entries.
    if (!is_token_id(*it)) token_id(*it, where + ".vocab[\"" + it.key() + "\"]");  // throws
    max_id = std::max<int64_t>(max_id, it->get<int64_t>());
  }
  m.vocab_.reserve(vocab.size());
  m.id_to_token_.resize(static_cast<size_t>(max_id + 1));
  m.has_id_.resize(static_cast<size_t>(max_id + 1));
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = static_cast<int32_t>(it->get<int64_t>());
    m.vocab_[it.key()] = id;
    m.id_to_token_[id] = it.key();
    m.has_id_[id] = true;
  }
  m.ascii_ids_.fill(-1);
  for (int c = 0; c < 128; ++c) {
    const auto it = m.vocab_.find(std::string_view(reinterpret_cast<const char*>(&c), 1));
    if (it != m.vocab_.end()) m.ascii_ids_[c] = it->second;
  }
  m.byte_fallback_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const auto it = m.vocab_.find(std::string_view(name));
    if (it != m.vocab_.end()) m.byte_fallback_ids_[b] = it->second;
  }

  const std::string unk = optional_string(j, "unk_token", where);
  if (j.contains("unk_token") && !j["unk_token"].is_null()) m.unk_token_ = unk;
  m.continuing_subword_prefix_ = optional_string(j, "continuing_subword_prefix", where);
  m.end_of_word_suffix_ = optional_string(j, "end_of_word_suffix", where);
  m.fuse_unk_ = optional_bool(j, "fuse_unk", where, false);
  m.byte_fallback_ = optional_bool(j, "byte_fallback", where, false);
  m.ignore_merges_ = optional_bool(j, "ignore_merges", where, false);
  if (j.contains("dropout") && !j["dropout"].is_null()) {
    check(j["dropout"].is_number(), where + ".dropout: expected a number or null");
    const double d = j["dropout"].get<double>();
    check(d == 0.0, where + ".dropout: BPE dropout is not supported (found " + std::to_string(d) + ")");
  }

  const Json& merges = require_field(j, "merges", where);
  check(merges.is_array(), where + ".merges: expected an array, found " + merges.type_name());
  m.merges_.reserve(merges.size());
  std::vector<std::array<int32_t, 3>> parsed;  // left, right, merged
  parsed.reserve(merges.size());
  const size_t prefix_len = m.continuing_subword_prefix_.size();
  int32_t rank = 0;
  for (size_t i = 0; i < merges.size(); ++i) {
    // Errors name the merge; its path is built only for one (~10^5 merges per tokenizer).
    const auto at = [&] { return where + ".merges[" + std::to_string(i) + "]"; };
    if (merges[i].is_string() && merges[i].get_ref<const std::string&>().starts_with("#version")) continue;
    const auto pair = parse_merge(merges[i], at);
    const std::string &left = pair.first, &right = pair.second;
    const auto a = m.vocab_.find(left), b = m.vocab_.find(right);
    check(a != m.vocab_.end(), [&] { return at() + ": token '" + left + "' is not in the vocabulary"; });
    check(b != m.vocab_.end(), [&] { return at() + ": token '" + right + "' is not in the vocabulary"; });
    // The right part's continuing-subword prefix disappears inside the merged token.
    check(right.size() >= prefix_len,
          [&] { return at() + ": token '" + right + "' is shorter than the subword prefix"; });
    const std::string merged = left + right.substr(prefix_len);
    const auto c = m.vocab_.find(merged);
    check(c != m.vocab_.end(), [&] { return at() + ": merged token '" + merged + "' is not in the vocabulary"; });
    // A pair listed twice keeps its last rank, as in the tokenizers library's merge map.
    m.merges_.set(a->second, b->second, MergeInfo{rank++, c->second});
    parsed.push_back({a->second, b->second, c->second});
  }
  m.compute_join_flags(parsed);
  return m;
}

// Two adjacent symbols x|y of a word can only become one in a merge (l, r) where x is the last
// initial symbol of l and y the first of r. l ends with l itself or with whatever the right part
// of a merge producing l can end with (and r starts likewise on the left). A boundary where x
// cannot end any left part, or y cannot start any right part, survives every merge, so the runs
// between such boundaries merge independently, with the same result as the whole word: this
// keeps the merge loop short when words are long (without a pre-tokenizer the whole text is one
// word).
void BpeModel::compute_join_flags(const std::vector<std::array<int32_t, 3>>& merges) {
  const size_t n_ids = id_to_token_.size();
  // The merges producing each id: by_result[begin[id], begin[id + 1]).
  std::vector<size_t> begin(n_ids + 1, 0);
  for (const auto& m : merges) ++begin[static_cast<size_t>(m[2]) + 1];
  for (size_t i = 1; i <= n_ids; ++i) begin[i] += begin[i - 1];
  std::vector<std::array<int32_t, 3>> by_result(merges.size());
  std::vector<size_t> fill(begin.begin(), begin.end() - 1);
  for (const auto& m : merges) by_result[fill[static_cast<size_t>(m[2])]++] = m;

  join_flags_.assign(n_ids, 0);
  std::vector<int32_t> stack;
  // Flags `id` and, through the merges producing it, the parts on `side` (0 left, 1 right).
  auto mark = [&](int32_t id, uint8_t flag, size_t side) {
    stack.assign(1, id);
    while (!stack.empty()) {
      const auto t = static_cast<size_t>(stack.back());
      stack.pop_back();
      if (join_flags_[t] & flag) continue;
      join_flags_[t] |= flag;
      for (size_t k = begin[t]; k < begin[t + 1]; ++k) stack.push_back(by_result[k][side]);
    }
  };
  for (const auto& m : merges) {
    mark(m[0], kEndsLeft, 1);
    mark(m[1], kStartsRight, 0);
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::split_into_symbols(std::string_view word, std::vector<int32_t>& symbols) const {
  symbols.clear();
  const bool affixes = !continuing_subword_prefix_.empty() || !end_of_word_suffix_.empty();
  int32_t pending_unk = -1;  // an unknown-character run not yet emitted
  auto flush_unk = [&] {
    if (pending_unk >= 0) symbols.push_back(pending_unk);
    pending_unk = -1;
  };
  std::string piece;
  size_t i = 0;
  while (i < word.size()) {
    const size_t start = i;
    const auto lead = static_cast<unsigned char>(word[i]);
    if (!affixes && lead < 0x80 && ascii_ids_[lead] >= 0) {
      ++i;
      flush_unk();
      symbols.push_back(ascii_ids_[lead]);
      continue;
    }
    i += std::min(utf8_char_len(lead), word.size() - i);
    std::string_view s = word.substr(start, i - start);
    if (affixes) {
      piece.clear();
      if (start > 0) piece += continuing_subword_prefix_;
      piece += s;
      if (i == word.size()) piece += end_of_word_suffix_;
      s = piece;
    }
    const auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      flush_unk();
      symbols.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : s) all = all && byte_fallback_ids_[b] >= 0;
      if (all) {
        // Like the tokenizers library, byte tokens go out before a pending unk is flushed.
        for (unsigned char b : s) symbols.push_back(byte_fallback_ids_[b]);
        continue;
      }
    }
    if (unk_token_) {
      const auto u = vocab_.find(*unk_token_);
      check(u != vocab_.end(), "BPE model: unk_token '" + *unk_token_ + "' is not in the vocabulary");
      if (pending_unk >= 0 && !fuse_unk_) symbols.push_back(pending_unk);
      pending_unk = u->second;
    }
    // Without an unk token, unknown characters are dropped, as in the tokenizers library.
  }
  flush_unk();
}

size_t BpeModel::merge_small(std::span<int32_t> syms) const {
  size_t n = syms.size();
  if (n < 2) return n;
  // rank/new id of the pair (syms[k], syms[k+1]) for k < n - 1; INT_MAX when it has no merge.
  thread_local std::vector<MergeInfo> pairs;
  pairs.resize(n - 1);
  auto lookup = [&](size_t k) {
    const MergeInfo* mi = merges_.find(syms[k], syms[k + 1]);
    pairs[k] = mi ? *mi : MergeInfo{INT_MAX, -1};
  };
  for (size_t k = 0; k + 1 < n; ++k) lookup(k);
  while (n > 1) {
    size_t best = 0;
    for (size_t k = 1; k + 1 < n; ++k)
      if (pairs[k].rank < pairs[best].rank) best = k;
    if (pairs[best].rank == INT_MAX) break;
    syms[best] = pairs[best].new_id;
    std::copy(syms.data() + best + 2, syms.data() + n, syms.data() + best + 1);
    std::copy(pairs.data() + best + 1, pairs.data() + n - 1, pairs.data() + best);
    --n;
    if (best + 1 < n) lookup(best);
    if (best > 0) lookup(best - 1);
  }
  return n;
}

size_t BpeModel::merge_large(std::span<int32_t> syms) const {
  // Doubly linked symbols and a min-heap of candidate merges ordered by (rank, position), with
  // stale entries skipped when popped: the tokenizers library's Word::merge_all.
  struct Sym {
    int32_t id;
    int64_t prev, next;
    bool alive;
  };
  struct Cand {
    int32_t rank;
    size_t pos;
    int32_t new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const size_t n = syms.size();
  std::vector<Sym> s(n);
  for (size_t k = 0; k < n; ++k)
    s[k] = {syms[k], static_cast<int64_t>(k) - 1, k + 1 < n ? static_cast<int64_t>(k + 1) : -1, true};
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](size_t left) {
    const int64_t right = s[left].next;
    if (right < 0) return;
    if (const MergeInfo* mi = merges_.find(s[left].id, s[right].id)) heap.push({mi->rank, left, mi->new_id});
  };
  for (size_t k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& left = s[c.pos];
    if (!left.alive || left.next < 0) continue;
    Sym& right = s[left.next];
    const MergeInfo* mi = merges_.find(left.id, right.id);
    if (!mi || mi->new_id != c.new_id) continue;
    left.id = c.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) s[left.next].prev = static_cast<int64_t>(c.pos);
    if (left.prev >= 0) push(static_cast<size_t>(left.prev));
    push(c.pos);
  }
  size_t kept = 0;
  for (const Sym& x : s)
    if (x.alive) syms[kept++] = x.id;
  return kept;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  thread_local MergeCache cache;
  if (cache.owner != serial_) {
    cache.words.clear();
    cache.runs.clear();
    cache.owner = serial_;
  }
  const bool cache_word = word.size() < kMaxCachedWordBytes;
  if (cache_word) {
    if (const auto hit = cache.words.find(word); hit != cache.words.end()) {
      out.insert(out.end(), hit->second.begin(), hit->second.end());
      return;
    }
  }
  const size_t start = out.size();
  const auto whole = ignore_merges_ ? vocab_.find(word) : vocab_.end();
  if (whole != vocab_.end()) {
    // ignore_merges: a word that is itself a token is that token, whatever the merges say.
    out.push_back(whole->second);
  } else {
    thread_local std::vector<int32_t> syms;
    split_into_symbols(word, syms);
    const std::span<int32_t> all(syms);
    size_t run_begin = 0;
    for (size_t k = 1; k <= syms.size(); ++k) {
      if (k < syms.size() && joinable(syms[k - 1], syms[k])) continue;
      const std::span<int32_t> run = all.subspan(run_begin, k - run_begin);
      run_begin = k;
      if (run.size() == 1) {
        out.push_back(run[0]);
        continue;
      }
      const bool cache_run = !cache_word && run.size() <= kSmallRunSymbols;
      if (cache_run) {
        if (const auto hit = cache.runs.find(bytes_of(run)); hit != cache.runs.end()) {
          out.insert(out.end(), hit->second.begin(), hit->second.end());
          continue;
        }
      }
      // The key is taken now: merging rewrites the run.
      std::string key = cache_run ? std::string(bytes_of(run)) : std::string();
      const size_t kept = run.size() <= kSmallRunSymbols ? merge_small(run) : merge_large(run);
      out.insert(out.end(), run.begin(), run.begin() + static_cast<std::ptrdiff_t>(kept));
      if (cache_run) remember(cache.runs, std::move(key), run.first(kept));
    }
  }
  if (cache_word) remember(cache.words, std::string(word), std::span(out).subspan(start));
}

}  // namespace m3::tok
