// The pattern of Split, Replace (normalizer and decoder): {"String": "..."} matches a literal,
// {"Regex": "..."} a regular expression.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/json_fields.h"
#include "tokenizer/pieces.h"
#include "tokenizer/regex.h"

namespace m3::tok {

class TextPattern {
 public:
  static TextPattern from_json(const Json& j, const std::string& where);
  // tokenizers' find_matches: matches and the text between them, covering `text` in order.
  void find(std::string_view text, std::vector<Segment>& out) const;
  // Every match replaced by `content`.
  void replace_all(std::string_view text, std::string_view content, std::string& out) const;

 private:
  std::string literal_;
  std::optional<Regex> regex_;
};

}  // namespace m3::tok
