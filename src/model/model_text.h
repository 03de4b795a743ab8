// The text side of a checkpoint directory, shared by `m3 generate` and `m3 serve`: its tokenizer
// (none means byte-level text) and the token ids generation stops at.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "m3/tokenizer.h"

namespace m3 {

// `option` (a tokenizer.json or a directory holding one) when given, else DIR/tokenizer.json when
// present; nullopt means byte-level text. A tokenizer with more ids than the model's vocabulary is
// an error.
std::optional<Tokenizer> load_model_tokenizer(const std::string& dir, const std::string& option, int64_t vocab_size);

// Token ids generation stops at: the tokenizer's EOS (tokenizer_config.json's eos_token, else the
// one its post-processor appends) and config.json's eos_token_id (a number or a list of them;
// Hugging Face checkpoints carry it).
std::vector<int32_t> model_eos_ids(const std::string& dir, const std::optional<Tokenizer>& tok);

}  // namespace m3
