// Post-processors of tokenizer.json ("post_processor" field) for a single sequence: the ids put
// before and after the encoded text when add_special_tokens is true. Supported:
// TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel (adds nothing), Sequence.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/json_fields.h"

namespace m3::tok {

struct PostProcessor {
  std::vector<int32_t> prefix, suffix;

  static PostProcessor from_json(const Json& j, const std::string& where);
};

}  // namespace m3::tok
