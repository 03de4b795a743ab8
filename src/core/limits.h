// Resource limits: every size an input file or flag sets that decides how much memory or time m3
// spends, bounded in one place (README "Resource limits"). Each is checked before the allocation
// or the work it guards, and a file that exceeds one gets an m3::Error naming the file, the field
// and the limit. The bounds sit well above every real model and tokenizer (largest vocabulary
// today: 262,144; deepest tokenizer.json: about 8 levels; chunk_size: 64 to 256).
#pragma once
#include <cstdint>

namespace m3::limits {

// JSON files (config.json, tokenizer.json, tokenizer_config.json, safetensors headers and
// indexes): nesting depth of arrays and objects. Recursive code (copies, dumps, Sequence
// components) then never runs deeper than this.
inline constexpr int kJsonDepth = 128;

// tokenizer.json: token ids (model.vocab, added_tokens, post-processor ids) are in
// [0, kTokenIds); tables indexed by id are sized by the largest id.
inline constexpr int64_t kTokenIds = int64_t(1) << 22;  // 4,194,304
// tokenizer.json: a regex pattern's length in bytes, and PCRE2's match limit (backtracking
// steps per match attempt; PCRE2's own default) and JIT stack (bytes).
inline constexpr int64_t kRegexPatternBytes = 64 * 1024;
inline constexpr uint32_t kRegexMatchSteps = 10'000'000;
inline constexpr int64_t kRegexJitStackBytes = int64_t(64) << 20;

// config.json: chunk_size of Mamba-2/Mamba-3 layers; the CPU scans' per-thread scratch grows with
// it (Mamba-3: chunk × state width floats).
inline constexpr int64_t kChunkSize = 1 << 16;

// safetensors: header bytes (as the safetensors format itself) and tensors per file.
inline constexpr uint64_t kSafetensorsHeaderBytes = uint64_t(100) << 20;
inline constexpr int64_t kSafetensorsTensors = 1 << 20;

// m3 generate / logits: tokens in one prompt (prefill scratch is tokens × widest layer), and
// tokens generated in one call.
inline constexpr int64_t kPromptTokens = int64_t(1) << 20;
inline constexpr int64_t kNewTokens = int64_t(1) << 20;
// m3 logits: sequences in one input file (each holds a decode state).
inline constexpr int64_t kSequences = 4096;

}  // namespace m3::limits
