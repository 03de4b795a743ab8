#include "serve/request.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <optional>

namespace m3::serve {

namespace {

using nlohmann::json;

// Thrown inside the parser and turned into the returned ApiError at its boundary.
struct Invalid {
  ApiError error;
};

[[noreturn]] void fail(const std::string& param, const std::string& message) {
  throw Invalid{bad_request(message, param)};
}

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number_in(const json& body, const char* name, double lo, double hi, double fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) fail(name, std::string("'") + name + "' must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    fail(name, std::string("'") + name + "' must be between " + json(lo).dump() + " and " + json(hi).dump());
  return x;
}

int64_t integer_in(const json& body, const char* name, int64_t lo, int64_t hi, int64_t fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number_integer()) fail(name, std::string("'") + name + "' must be an integer");
  if (v->is_number_unsigned() ? (v->get<uint64_t>() > uint64_t(hi) || (lo > 0 && v->get<uint64_t>() < uint64_t(lo)))
                              : (v->get<int64_t>() < lo || v->get<int64_t>() > hi))
    fail(name, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return v->get<int64_t>();
}

bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) fail(name, std::string("'") + name + "' must be a boolean");
  return v->get<bool>();
}

std::vector<int32_t> token_ids(const json& a, const RequestLimits& limits) {
  if (a.size() > limits.max_prompt_ids) fail("prompt", "the prompt has more than " + std::to_string(limits.max_prompt_ids) + " token ids");
  std::vector<int32_t> ids;
  for (const json& t : a) {
    if (!t.is_number_integer() || (t.is_number_unsigned() ? t.get<uint64_t>() > uint64_t(std::numeric_limits<int32_t>::max())
                                                          : (t.get<int64_t>() < 0 || t.get<int64_t>() > std::numeric_limits<int32_t>::max())))
      fail("prompt", "a token-id prompt must hold non-negative 32-bit integers");
    ids.push_back(t.get<int32_t>());
  }
  return ids;
}

// string | [int...] | [string] | [[int...]]: one prompt (batches of prompts are not served).
void parse_prompt(const json& body, const RequestLimits& limits, CompletionRequest& r) {
  const json* p = field(body, "prompt");
  if (!p) fail("prompt", "'prompt' is required");
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
    return;
  }
  if (!p->is_array()) fail("prompt", "'prompt' must be a string or an array of token ids");
  if (p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) {
    if ((*p)[0].is_string()) {
      r.prompt = (*p)[0].get<std::string>();
      return;
    }
    p = &(*p)[0];
  }
  for (const json& t : *p)
    if (!t.is_number()) fail("prompt", "'prompt' must be one string or one array of token ids (batches of prompts are not supported)");
  r.prompt_ids = token_ids(*p, limits);
  r.prompt_is_ids = true;
}

std::vector<std::string> parse_stop(const json& body, const RequestLimits& limits) {
  const json* s = field(body, "stop");
  if (!s) return {};
  std::vector<std::string> stops;
  if (s->is_string()) {
    stops.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    for (const json& x : *s) {
      if (!x.is_string()) fail("stop", "'stop' must be a string or an array of strings");
      stops.push_back(x.get<std::string>());
    }
  } else {
    fail("stop", "'stop' must be a string or an array of strings");
  }
  if (stops.size() > limits.max_stop) fail("stop", "at most " + std::to_string(limits.max_stop) + " stop sequences");
  for (const std::string& x : stops)
    if (x.empty() || x.size() > limits.max_stop_bytes)
      fail("stop", "each stop sequence must be 1 to " + std::to_string(limits.max_stop_bytes) + " bytes");
  return stops;
}

// Features a client may ask for that this server does not have: refused rather than ignored,
// unless the value asks for nothing.
void refuse_unsupported(const json& body) {
  if (boolean(body, "echo", false)) fail("echo", "echo is not supported by this server");
  if (const json* v = field(body, "suffix"); v && !(v->is_string() && v->get<std::string>().empty()))
    fail("suffix", "suffix is not supported by this server");
  if (const json* v = field(body, "best_of"); v && !(v->is_number_integer() && v->get<int64_t>() == 1))
    fail("best_of", "best_of is not supported by this server");
  if (const json* v = field(body, "logit_bias"); v && !(v->is_object() && v->empty()))
    fail("logit_bias", "logit_bias is not supported by this server");
  if (const json* v = field(body, "tools"); v && !(v->is_array() && v->empty()))
    fail("tools", "tools are not supported by this server");
  if (const json* v = field(body, "response_format"); v && !(v->is_object() && v->value("type", "") == "text"))
    fail("response_format", "only the text response_format is supported");
}

// Completions: logprobs = N alternatives (0..5). Chat: logprobs = true, top_logprobs = N (0..20).
int64_t parse_logprobs(const json& body, bool chat) {
  if (!chat) return integer_in(body, "logprobs", 0, 5, -1);
  const bool on = boolean(body, "logprobs", false);
  const int64_t top = integer_in(body, "top_logprobs", 0, 20, 0);
  if (!on && field(body, "top_logprobs")) fail("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  return on ? top : -1;
}

void parse_common(const json& body, const RequestLimits& limits, int64_t default_max_tokens, bool chat,
                  CompletionRequest& r) {
  if (const json* m = field(body, "model")) {
    if (!m->is_string()) fail("model", "'model' must be a string");
    r.model = m->get<std::string>();
  }
  refuse_unsupported(body);
  GenerationParams& g = r.gen;
  g.max_tokens = integer_in(body, "max_tokens", 1, limits.max_tokens, default_max_tokens);
  g.max_tokens = integer_in(body, "max_completion_tokens", 1, limits.max_tokens, g.max_tokens);
  r.max_tokens_given = field(body, "max_tokens") || field(body, "max_completion_tokens");
  g.temperature = float(number_in(body, "temperature", 0, 2, 1));
  g.top_p = float(number_in(body, "top_p", 0, 1, 1));
  g.n = integer_in(body, "n", 1, limits.max_n, 1);
  g.presence_penalty = float(number_in(body, "presence_penalty", -2, 2, 0));
  g.frequency_penalty = float(number_in(body, "frequency_penalty", -2, 2, 0));
  if (field(body, "seed")) {
    g.seed = uint64_t(integer_in(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 0));
    r.seed_given = true;
  }
  g.stop = parse_stop(body, limits);
  g.logprobs = parse_logprobs(body, chat);
  r.stream = boolean(body, "stream", false);
  if (const json* o = field(body, "stream_options")) {
    if (!o->is_object()) fail("stream_options", "'stream_options' must be an object");
    if (!r.stream) fail("stream_options", "'stream_options' is only allowed with stream: true");
    r.include_usage = boolean(*o, "include_usage", false);
  }
}

// content: a string, or an array of {"type": "text", "text": ...} parts (joined).
std::string message_content(const json& m, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "].content";
  const json* c = field(m, "content");
  if (!c) return "";
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) fail(where, "'" + where + "' must be a string or an array of text parts");
  std::string text;
  for (const json& part : *c) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      fail(where, "'" + where + "' parts must be {\"type\": \"text\", \"text\": ...} (only text is supported)");
    text += part["text"].get<std::string>();
  }
  return text;
}

template <class Fill>
ParsedRequest parse(std::string_view body, Fill&& fill) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad_request("the request body is not valid JSON");
  if (!j.is_object()) return bad_request("the request body must be a JSON object");
  try {
    CompletionRequest r;
    fill(j, r);
    return r;
  } catch (const Invalid& e) {
    return e.error;
  } catch (const json::exception& e) {  // a type the checks above let through by mistake
    return bad_request(std::string("malformed request: ") + e.what());
  }
}

}  // namespace

ParsedRequest parse_completion_request(std::string_view body, const RequestLimits& limits) {
  return parse(body, [&](const json& j, CompletionRequest& r) {
    parse_prompt(j, limits, r);
    parse_common(j, limits, 16, false, r);  // OpenAI's default max_tokens for completions
  });
}

ParsedRequest parse_chat_request(std::string_view body, const RequestLimits& limits) {
  return parse(body, [&](const json& j, CompletionRequest& r) {
    const json* ms = field(j, "messages");
    if (!ms || !ms->is_array() || ms->empty()) fail("messages", "'messages' must be a non-empty array");
    for (size_t i = 0; i < ms->size(); ++i) {
      const json& m = (*ms)[i];
      if (!m.is_object()) fail("messages", "messages[" + std::to_string(i) + "] must be an object");
      const json* role = field(m, "role");
      if (!role || !role->is_string())
        fail("messages", "messages[" + std::to_string(i) + "].role must be a string");
      r.messages.push_back({role->get<std::string>(), message_content(m, i)});
    }
    parse_common(j, limits, limits.max_tokens, true, r);
  });
}

}  // namespace m3::serve
