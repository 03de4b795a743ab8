#include "model/model_text.h"

#include <filesystem>

#include "io/files.h"
#include "m3/error.h"

namespace m3 {

namespace fs = std::filesystem;

std::optional<Tokenizer> load_model_tokenizer(const std::string& dir, const std::string& option, int64_t vocab_size) {
  const std::string path = !option.empty() ? option : (fs::path(dir) / "tokenizer.json").string();
  if (option.empty() && !fs::exists(path)) return std::nullopt;
  Tokenizer tok = Tokenizer::load(path);
  // Ids the embedding has no row for would be out of range; the other way round is common
  // (vocabularies padded for speed) and harmless: ids without a token decode to nothing.
  check(tok.vocab_size() <= vocab_size, "tokenizer " + path + " has " + std::to_string(tok.vocab_size()) +
                                            " tokens, more than the model's vocabulary of " +
                                            std::to_string(vocab_size) + " (vocab_size in " + dir + "/config.json)");
  return tok;
}

std::vector<int32_t> model_eos_ids(const std::string& dir, const std::optional<Tokenizer>& tok) {
  std::vector<int32_t> ids;
  if (tok && tok->eos_id()) ids.push_back(*tok->eos_id());
  const nlohmann::json config = read_json_file((fs::path(dir) / "config.json").string());
  if (!config.is_object() || !config.contains("eos_token_id")) return ids;
  const nlohmann::json& eos = config["eos_token_id"];
  for (const nlohmann::json& id : eos.is_array() ? eos : nlohmann::json::array({eos}))
    if (id.is_number_integer()) ids.push_back(id.get<int32_t>());
  return ids;
}

}  // namespace m3
