#include "tokenizer/post_processor.h"

#include "m3/error.h"

namespace m3::tok {

namespace {

// ["<s>", 1] -> 1
int32_t token_pair_id(const Json& j, const char* key, const std::string& where) {
  const Json& v = require_field(j, key, where);
  check(v.is_array() && v.size() == 2, where + "." + key + ": expected [token, id], found " + v.dump());
  return token_id(v[1], where + "." + key + "[1]");
}

PostProcessor from_template(const Json& j, const std::string& where) {
  PostProcessor pp;
  const Json& single = require_field(j, "single", where);
  check(single.is_array(), where + ".single: expected an array of pieces");
  const Json empty = Json::object();
  const Json& specials = j.contains("special_tokens") ? j["special_tokens"] : empty;
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string at = where + ".single[" + std::to_string(i) + "]";
    const Json& piece = single[i];
    check(piece.is_object() && piece.size() == 1, at + ": expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    if (piece.contains("Sequence")) {
      const std::string seq = require_string(piece["Sequence"], "id", at + ".Sequence");
      check(seq == "A", at + ": a single-sequence template can only use sequence A, found " + seq);
      check(!seen_sequence, at + ": sequence A appears twice");
      seen_sequence = true;
      continue;
    }
    check(piece.contains("SpecialToken"), at + ": expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    const std::string name = require_string(piece["SpecialToken"], "id", at + ".SpecialToken");
    check(specials.is_object() && specials.contains(name),
          at + ": special token '" + name + "' is not listed in " + where + ".special_tokens");
    const Json& ids = require_field(specials[name], "ids", where + ".special_tokens." + name);
    check(ids.is_array(), where + ".special_tokens." + name + ".ids: expected an array");
    for (const Json& id : ids) {
      (seen_sequence ? pp.suffix : pp.prefix).push_back(token_id(id, where + ".special_tokens." + name + ".ids"));
    }
  }
  check(seen_sequence, where + ".single: the template has no $A sequence");
  return pp;
}

}  // namespace

PostProcessor PostProcessor::from_json(const Json& j, const std::string& where) {
  const std::string type = type_tag(j, where);
  if (type == "TemplateProcessing") return from_template(j, where);
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    return PostProcessor{{token_pair_id(j, "cls", where)}, {token_pair_id(j, "sep", where)}};
  }
  if (type == "ByteLevel") return {};
  if (type == "Sequence") {
    const Json& list = require_field(j, "processors", where);
    check(list.is_array(), where + ".processors: expected an array");
    PostProcessor all;
    // Each processor wraps the result of the previous ones.
    for (size_t i = 0; i < list.size(); ++i) {
      PostProcessor p = from_json(list[i], where + ".processors[" + std::to_string(i) + "]");
      p.prefix.insert(p.prefix.end(), all.prefix.begin(), all.prefix.end());
      all.prefix = std::move(p.prefix);
      all.suffix.insert(all.suffix.end(), p.suffix.begin(), p.suffix.end());
    }
    return all;
  }
  throw Error(where + ": unsupported post_processor type '" + type +
              "' (supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)");
}

}  // namespace m3::tok
