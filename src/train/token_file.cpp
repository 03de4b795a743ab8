// Token files and packed training rows (token_file.h).
#include "train/token_file.h"

#include <algorithm>
#include <cstring>

#include "io/files.h"
#include "m3/error.h"
#include "m3/safetensors.h"

namespace m3::train {

namespace {

constexpr char kMagic[8] = {'M', '3', 'T', 'O', 'K', 'E', 'N', 'S'};

template <class T>
T load(const std::string& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}
template <class T>
void store(std::string& b, T v) {
  b.append(reinterpret_cast<const char*>(&v), sizeof v);
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

int32_t TokenData::max_token() const {
  return tokens.empty() ? -1 : *std::max_element(tokens.begin(), tokens.end());
}

TokenData read_token_file(const std::string& path) {
  const std::string b = read_file(path);
  auto fail = [&](const std::string& what) { return Error(path + ": not a valid token file: " + what); };
  if (b.size() < 32 || std::memcmp(b.data(), kMagic, 8) != 0) throw fail("missing M3TOKENS header");
  if (load<uint32_t>(b, 8) != 1) throw fail("unsupported version " + std::to_string(load<uint32_t>(b, 8)));
  const uint32_t width = load<uint32_t>(b, 12);
  if (width != 2 && width != 4) throw fail("bytes per token must be 2 or 4, found " + std::to_string(width));
  const uint64_t n = load<uint64_t>(b, 16), docs = load<uint64_t>(b, 24);
  if (docs > b.size() / 8 || n > b.size()) throw fail("header counts exceed the file size");
  const uint64_t expect = 32 + 8 * (docs + 1) + n * width;
  if (b.size() != expect)
    throw fail("size " + std::to_string(b.size()) + " bytes, header implies " + std::to_string(expect));
  TokenData d;
  d.doc_offsets.resize(docs + 1);
  for (uint64_t i = 0; i <= docs; ++i) {
    const uint64_t o = load<uint64_t>(b, 32 + 8 * i);
    if ((i == 0 && o != 0) || (i > 0 && o < uint64_t(d.doc_offsets[i - 1])) || o > n || (i == docs && o != n))
      throw fail("document offset " + std::to_string(i) + " = " + std::to_string(o) + " out of order");
    d.doc_offsets[i] = int64_t(o);
  }
  d.tokens.resize(n);
  const size_t base = 32 + 8 * (docs + 1);
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t t = width == 2 ? load<uint16_t>(b, base + 2 * i) : load<uint32_t>(b, base + 4 * i);
    if (t > uint32_t(INT32_MAX)) throw fail("token " + std::to_string(i) + " out of range");
    d.tokens[i] = int32_t(t);
  }
  return d;
}

void write_token_file(const std::string& path, const TokenData& d) {
  const bool narrow = d.max_token() < 65536;
  std::string b(kMagic, 8);
  store<uint32_t>(b, 1);
  store<uint32_t>(b, narrow ? 2 : 4);
  store<uint64_t>(b, d.tokens.size());
  store<uint64_t>(b, uint64_t(d.n_docs()));
  for (int64_t o : d.doc_offsets) store<uint64_t>(b, uint64_t(o));
  for (int32_t t : d.tokens) {
    if (narrow) store<uint16_t>(b, uint16_t(t));
    else store<uint32_t>(b, uint32_t(t));
  }
  write_file_atomic(path, b);
}

Rows make_rows(const TokenData& d, const std::vector<int64_t>& order, int64_t L) {
  Rows r;
  r.cu.push_back(0);
  const int64_t n = int64_t(d.tokens.size());
  for (int64_t row : order) {
    const int64_t p0 = row * L;
    check(p0 + L <= n, "training: row past the end of the token stream");
    // The document holding p0 (upper_bound skips empty documents).
    size_t doc = size_t(std::upper_bound(d.doc_offsets.begin(), d.doc_offsets.end(), p0) - d.doc_offsets.begin()) - 1;
    for (int64_t p = p0; p < p0 + L; ++p) {
      if (d.doc_offsets[doc + 1] <= p) {
        while (d.doc_offsets[doc + 1] <= p) ++doc;
        r.cu.push_back(int64_t(r.tokens.size()));
      }
      r.tokens.push_back(d.tokens[size_t(p)]);
      r.targets.push_back(p + 1 < d.doc_offsets[doc + 1] ? d.tokens[size_t(p + 1)] : -1);
    }
    r.cu.push_back(int64_t(r.tokens.size()));
  }
  return r;
}

std::vector<int64_t> epoch_order(int64_t n_rows, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> o(static_cast<size_t>(n_rows));
  for (int64_t i = 0; i < n_rows; ++i) o[size_t(i)] = i;
  uint64_t s = seed * 0x100000001b3ull + uint64_t(epoch);
  for (int64_t i = n_rows - 1; i > 0; --i) std::swap(o[size_t(i)], o[size_t(splitmix64(s) % uint64_t(i + 1))]);
  return o;
}

}  // namespace m3::train
