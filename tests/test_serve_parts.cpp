// The server's pure parts: request parsing (every field's type and range, refused features),
// stop sequences across token boundaries, and byte-level text release in whole characters.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <variant>

#include "serve/request.h"
#include "serve/stop_matcher.h"
#include "serve/text_codec.h"

namespace m3::serve {
namespace {

CompletionRequest ok(const std::string& body) {
  ParsedRequest p = parse_completion_request(body);
  if (auto* e = std::get_if<ApiError>(&p)) ADD_FAILURE() << body << " -> " << e->message;
  return std::holds_alternative<CompletionRequest>(p) ? std::get<CompletionRequest>(p) : CompletionRequest{};
}

void refused(const std::string& body, const std::string& param, bool chat = false) {
  ParsedRequest p = chat ? parse_chat_request(body) : parse_completion_request(body);
  ASSERT_TRUE(std::holds_alternative<ApiError>(p)) << body;
  const ApiError& e = std::get<ApiError>(p);
  EXPECT_EQ(e.status, 400) << body;
  EXPECT_EQ(e.param, param) << body << " -> " << e.message;
  EXPECT_FALSE(e.message.empty());
}

TEST(ServeRequest, ParsesEveryField) {
  CompletionRequest r = ok(R"({"model":"m","prompt":"hi","max_tokens":7,"temperature":0.5,"top_p":0.9,"n":3,
      "seed":-4,"stop":["a","bc"],"presence_penalty":1.5,"frequency_penalty":-0.5,"stream":true,
      "stream_options":{"include_usage":true},"user":"ignored","logprobs":null})");
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.prompt, "hi");
  EXPECT_FALSE(r.prompt_is_ids);
  EXPECT_EQ(r.gen.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.gen.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.gen.top_p, 0.9f);
  EXPECT_EQ(r.gen.n, 3);
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.gen.seed, uint64_t(int64_t(-4)));
  EXPECT_EQ(r.gen.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_FLOAT_EQ(r.gen.presence_penalty, 1.5f);
  EXPECT_FLOAT_EQ(r.gen.frequency_penalty, -0.5f);
  EXPECT_TRUE(r.stream && r.include_usage && r.max_tokens_given);
}

TEST(ServeRequest, DefaultsAndPromptForms) {
  CompletionRequest r = ok(R"({"prompt":"x"})");
  EXPECT_EQ(r.gen.max_tokens, 16);
  EXPECT_EQ(r.gen.n, 1);
  EXPECT_FALSE(r.seed_given || r.stream || r.max_tokens_given);
  EXPECT_EQ(ok(R"({"prompt":[1,2,300]})").prompt_ids, (std::vector<int32_t>{1, 2, 300}));
  EXPECT_EQ(ok(R"({"prompt":[[5]]})").prompt_ids, (std::vector<int32_t>{5}));
  EXPECT_EQ(ok(R"({"prompt":["one"]})").prompt, "one");
  EXPECT_EQ(ok(R"({"prompt":"x","stop":"s"})").gen.stop, (std::vector<std::string>{"s"}));
  EXPECT_EQ(ok(R"({"prompt":"x"})").gen.logprobs, -1);
  EXPECT_EQ(ok(R"({"prompt":"x","logprobs":3})").gen.logprobs, 3);
}

TEST(ServeRequest, RefusesBadInput) {
  refused("", "");
  refused("{", "");
  refused("[1]", "");
  refused(R"({"max_tokens":3})", "prompt");
  refused(R"({"prompt":5})", "prompt");
  refused(R"({"prompt":["a","b"]})", "prompt");
  refused(R"({"prompt":[1,-2]})", "prompt");
  refused(R"({"prompt":[1,4294967296]})", "prompt");
  refused(R"({"prompt":[1.5]})", "prompt");
  refused(R"({"prompt":"x","model":3})", "model");
  refused(R"({"prompt":"x","max_tokens":"9"})", "max_tokens");
  refused(R"({"prompt":"x","max_tokens":0})", "max_tokens");
  refused(R"({"prompt":"x","max_tokens":1e9})", "max_tokens");
  refused(R"({"prompt":"x","max_tokens":99999999})", "max_tokens");
  refused(R"({"prompt":"x","temperature":3})", "temperature");
  refused(R"({"prompt":"x","temperature":"hot"})", "temperature");
  refused(R"({"prompt":"x","top_p":1.5})", "top_p");
  refused(R"({"prompt":"x","n":0})", "n");
  refused(R"({"prompt":"x","n":1000})", "n");
  refused(R"({"prompt":"x","seed":1.5})", "seed");
  refused(R"({"prompt":"x","seed":18446744073709551615})", "seed");
  refused(R"({"prompt":"x","stop":[1]})", "stop");
  refused(R"({"prompt":"x","stop":["a","b","c","d","e"]})", "stop");
  refused(R"({"prompt":"x","stop":[""]})", "stop");
  refused(R"({"prompt":"x","presence_penalty":-3})", "presence_penalty");
  refused(R"({"prompt":"x","stream":"yes"})", "stream");
  refused(R"({"prompt":"x","stream_options":{"include_usage":true}})", "stream_options");
  refused(R"({"prompt":"x","logprobs":6})", "logprobs");
  refused(R"({"prompt":"x","logprobs":true})", "logprobs");
  refused(R"({"prompt":"x","echo":true})", "echo");
  refused(R"({"prompt":"x","best_of":2})", "best_of");
  refused(R"({"prompt":"x","logit_bias":{"5":1}})", "logit_bias");
}

TEST(ServeRequest, Chat) {
  ParsedRequest p = parse_chat_request(
      R"({"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":null}]})");
  ASSERT_TRUE(std::holds_alternative<CompletionRequest>(p));
  const auto& m = std::get<CompletionRequest>(p).messages;
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[1].role, "user");
  EXPECT_EQ(m[1].content, "ab");
  EXPECT_EQ(m[2].content, "");
  EXPECT_FALSE(std::get<CompletionRequest>(p).max_tokens_given);
  auto chat = [](const std::string& body) { return std::get<CompletionRequest>(parse_chat_request(body)).gen.logprobs; };
  EXPECT_EQ(chat(R"({"messages":[{"role":"user","content":"x"}]})"), -1);
  EXPECT_EQ(chat(R"({"messages":[{"role":"user","content":"x"}],"logprobs":true})"), 0);
  EXPECT_EQ(chat(R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":4})"), 4);
  refused(R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs", true);
  refused(R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21})", "top_logprobs", true);
  refused(R"({"messages":[]})", "messages", true);
  refused(R"({"messages":"hi"})", "messages", true);
  refused(R"({"messages":[{"content":"x"}]})", "messages", true);
  refused(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "messages[0].content", true);
}

TEST(ServeRequest, ErrorBodyIsOpenAiShaped) {
  ApiError e{404, "no such model \xff", "model", "model_not_found"};
  const nlohmann::json j = nlohmann::json::parse(e.body());
  EXPECT_EQ(j["error"]["type"], "not_found_error");
  EXPECT_EQ(j["error"]["param"], "model");
  EXPECT_EQ(j["error"]["code"], "model_not_found");
  EXPECT_EQ(j["error"]["message"], "no such model \xef\xbf\xbd");
}

// Pieces in, released text out: a stop sequence split over several pieces is found, text that
// only looked like its start is released once it is clearly not.
TEST(ServeStop, AcrossPieces) {
  StopMatcher m({"END", "xy"});
  std::string out;
  for (const char* piece : {"ab", "E", "N", "o", "E", "xE", "N"}) out += m.push(piece);
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(out, "abENoEx");  // "EN" is still held: it may become "END"
  out += m.push("D tail");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "abENoEx");
  EXPECT_EQ(m.push("more"), "");

  StopMatcher n({"xy"});
  EXPECT_EQ(n.push("aax"), "aa");
  EXPECT_EQ(n.flush(), "x");  // the end of generation releases what was held
  StopMatcher first({"bc", "abcd"});
  EXPECT_EQ(first.push("zabc"), "za");  // the earliest match wins
  EXPECT_TRUE(first.stopped());
}

TEST(ServeText, ByteLevelReleasesWholeCharacters) {
  TextCodec codec(std::nullopt, 256);
  EXPECT_EQ(codec.encode("é"), (std::vector<int32_t>{0xC3, 0xA9}));
  TextCodec::Decoder d(codec);
  EXPECT_EQ(d.push('a'), "a");
  EXPECT_EQ(d.push(0xE2), "");
  EXPECT_EQ(d.push(0x82), "");
  EXPECT_EQ(d.push(0xAC), "\xE2\x82\xAC");
  EXPECT_EQ(d.push(0xFF), "\xFF");  // cannot start a character: released alone
  EXPECT_EQ(d.push(0xC3), "");
  EXPECT_EQ(d.push('b'), "\xC3" "b");  // a broken character does not hold back what follows
  EXPECT_EQ(d.push(0xC3), "");
  EXPECT_EQ(d.flush(), "\xC3");
}

}  // namespace
}  // namespace m3::serve
