// Token files for training (`m3 data tokenize`). Layout, all integers little-endian:
//   bytes 0..7    magic "M3TOKENS"
//   bytes 8..11   uint32 version (1)
//   bytes 12..15  uint32 bytes per token (2: uint16, 4: uint32)
//   bytes 16..23  uint64 n_tokens
//   bytes 24..31  uint64 n_docs
//   then          uint64 doc_offsets[n_docs + 1] (0 = first, n_tokens = last; non-decreasing):
//                 document i is tokens [doc_offsets[i], doc_offsets[i+1])
//   then          n_tokens tokens of the given width.
// The file's size must be exactly what the header says.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace m3::train {

struct TokenData {
  std::vector<int32_t> tokens;
  std::vector<int64_t> doc_offsets;  // n_docs + 1 entries
  int64_t n_docs() const { return int64_t(doc_offsets.size()) - 1; }
  int32_t max_token() const;
};

// Reads and validates a token file; errors name the file and the defect.
TokenData read_token_file(const std::string& path);
// Writes atomically, as uint16 when every token fits, else uint32.
void write_token_file(const std::string& path, const TokenData& d);

// Rows of a training batch cut from the token stream: row r holds stream tokens
// [r·L, (r+1)·L); its sequences are split at document boundaries (each starts from a zero
// state) and each token's target is the next token of the same document (−1 at a document's
// last token).
struct Rows {
  std::vector<int32_t> tokens, targets;
  std::vector<int64_t> cu;  // sequence offsets over all rows, packed
};
// Rows in `order` (row indices into the stream), appended into one packed batch.
Rows make_rows(const TokenData& d, const std::vector<int64_t>& order, int64_t L);
// The seeded permutation of the stream's n_rows rows for an epoch (Fisher–Yates with a
// splitmix64 stream, the same on every platform).
std::vector<int64_t> epoch_order(int64_t n_rows, uint64_t seed, int64_t epoch);

}  // namespace m3::train
