// Tokenizer: loads tokenizer.json (+ tokenizer_config.json) and runs the tokenizers library's
// pipeline: added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor; and back
// through the decoder.
#include "m3/tokenizer.h"

#include <filesystem>

#include "io/files.h"
#include "m3/error.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoders.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/utf8.h"

namespace m3 {

using tok::Json;

struct Tokenizer::Impl {
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  tok::BpeModel model;
  tok::AddedVocabulary added;
  std::unique_ptr<tok::Decoder> decoder;
  tok::PostProcessor post;
  std::optional<int32_t> bos, eos;
  std::string chat_template;
  // The string decode() gives `id`: an added token's content, else the model's token.
  const std::string* token_string(int32_t id) const;
};

namespace {

Json parse_json(std::string_view text, const std::string& source) {
  check_json_depth(text, source);
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
}

// A token named in tokenizer_config.json: a string, or an AddedToken object with "content".
std::optional<std::string> config_token(const Json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  throw Error(std::string("tokenizer_config.json: ") + key + ": expected a string or {\"content\": ...}");
}

// chat_template is a string, or a list of {"name", "template"} of which "default" is the one used.
std::string config_chat_template(const Json& config) {
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  check(it->is_array(), "tokenizer_config.json: chat_template: expected a string or a list");
  std::string first;
  for (const Json& t : *it) {
    check(t.is_object() && t.contains("template") && t["template"].is_string(),
          "tokenizer_config.json: chat_template: expected {\"name\", \"template\"} entries");
    if (first.empty()) first = t["template"].get<std::string>();
    if (t.value("name", "") == "default") return t["template"].get<std::string>();
  }
  return first;
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& source) {
  const Json j = parse_json(json_text, source);
  try {
    check(j.is_object(), "expected a JSON object at the top level");
    auto impl = std::make_unique<Impl>();
    auto component = [&](const char* key) -> const Json* {
      const auto it = j.find(key);
      return it == j.end() || it->is_null() ? nullptr : &*it;
    };
    const Json* model = component("model");
    check(model != nullptr, "model: missing");
    impl->model = tok::BpeModel::from_json(*model, "model");
    if (const Json* n = component("normalizer")) impl->normalizer = tok::make_normalizer(*n, "normalizer");
    if (const Json* p = component("pre_tokenizer")) impl->pre_tokenizer = tok::make_pre_tokenizer(*p, "pre_tokenizer");
    if (const Json* d = component("decoder")) impl->decoder = tok::make_decoder(*d, "decoder");
    if (const Json* p = component("post_processor")) impl->post = tok::PostProcessor::from_json(*p, "post_processor");
    if (const Json* a = component("added_tokens")) impl->added.load(*a, impl->model, impl->normalizer.get());
    // Without tokenizer_config.json, a template that adds exactly one token before (after) the
    // text names the BOS (EOS) token.
    if (impl->post.prefix.size() == 1) impl->bos = impl->post.prefix[0];
    if (impl->post.suffix.size() == 1) impl->eos = impl->post.suffix[0];
    return Tokenizer(std::move(impl));
  } catch (const Json::exception& e) {
    throw Error(source + ": " + e.what());
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
}

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  std::error_code ec;  // an unreadable path reads as "not found"
  const fs::path file = fs::is_directory(p, ec) ? p / "tokenizer.json" : p;
  check(fs::exists(file, ec), "tokenizer not found: " + file.string());
  Tokenizer t = from_json(read_file(file.string()), file.string());
  const fs::path config_path = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(config_path, ec)) {
    const Json config = read_json_file(config_path.string());
    check(config.is_object(), config_path.string() + ": expected a JSON object");
    for (const auto& [key, slot] : {std::pair{"bos_token", &t.impl_->bos}, std::pair{"eos_token", &t.impl_->eos}}) {
      if (const auto name = config_token(config, key)) {
        const auto id = t.token_to_id(*name);
        check(id.has_value(), config_path.string() + ": " + key + " '" + *name + "' is not in the vocabulary");
        *slot = *id;
      }
    }
    t.impl_->chat_template = config_chat_template(config);
  }
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view input, bool add_special_tokens) const {
  const Impl& m = *impl_;
  tok::Pieces p;
  if (tok::valid_utf8_prefix(input) == input.size()) {
    p.text.assign(input);
  } else {
    p.text = tok::to_valid_utf8(input);
  }
  if (!p.text.empty()) p.spans.push_back({0, p.text.size(), -1, true});
  m.added.split(p, /*normalized_kind=*/false);
  if (m.normalizer) {
    tok::rewrite_pieces(p, [&](std::string_view s, bool, std::string& out) { m.normalizer->normalize(s, out); });
  }
  m.added.split(p, /*normalized_kind=*/true);
  if (m.pre_tokenizer) m.pre_tokenizer->pre_tokenize(p);

  std::vector<int32_t> ids;
  ids.reserve(p.text.size() / 3 + m.post.prefix.size() + m.post.suffix.size() + 4);
  if (add_special_tokens) ids = m.post.prefix;
  for (const tok::Span& s : p.spans) {
    if (s.token >= 0) {
      ids.push_back(s.token);
    } else {
      m.model.tokenize(p.view(s), ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), m.post.suffix.begin(), m.post.suffix.end());
  return ids;
}

const std::string* Tokenizer::Impl::token_string(int32_t id) const {
  if (const std::string* s = added.decode_string(id)) return s;
  return model.id_to_token(id);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    const std::string* s = m.token_string(id);
    if (!s) continue;
    if (skip_special_tokens && m.added.is_special_string(*s)) continue;
    tokens.push_back(*s);
  }
  std::string text;
  if (m.decoder) {
    for (const std::string& piece : m.decoder->decode_chain(std::move(tokens))) text += piece;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) text += ' ';
      text += tokens[i];
    }
  }
  return text;
}

int32_t Tokenizer::vocab_size() const { return std::max(impl_->model.id_limit(), impl_->added.id_limit()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (const auto id = impl_->added.token_to_id(token)) return id;
  return impl_->model.token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (const std::string* s = impl_->token_string(id)) return *s;
  return std::nullopt;
}

Tokenizer::Piece Tokenizer::piece(int32_t id, bool skip_special_tokens) const {
  const std::string* s = impl_->token_string(id);
  if (!s || (skip_special_tokens && impl_->added.is_special_string(*s))) return Piece::kNothing;
  return impl_->decoder && impl_->decoder->open_ended(*s) ? Piece::kOpen : Piece::kFinal;
}

bool Tokenizer::is_special(int32_t id) const { return impl_->added.is_special_id(id); }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }

}  // namespace m3
