// `m3 serve` over loopback HTTP: completions equal to the library's own greedy decode, streamed
// text equal to whole responses, every error status, concurrent requests equal to each alone
// (continuous batching), the prefix cache equal to uncached runs, metrics, and the CLI draining
// on SIGTERM. The model is the byte-level mamba3-tiny preset (SISO Mamba-3 + attention + MLP).
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "m3/model.h"
#include "m3/presets.h"
#include "m3/tokenizer.h"
#include "run_m3.h"
#include "serve/chat_template.h"
#include "serve/server.h"
#include "serve/text_codec.h"
#include "temp_dir.h"

namespace m3::serve {
namespace {

using nlohmann::json;
constexpr uint64_t kModelSeed = 7;

Model tiny_model() { return Model::init(preset_config("mamba3-tiny"), kModelSeed); }

// A server on 127.0.0.1 at a free port, running on its own thread until the test ends.
struct LiveServer {
  std::unique_ptr<Server> server;
  std::thread thread;
  int port = 0;

  explicit LiveServer(SchedulerOptions s = {}, ServerOptions o = {}, Model model = tiny_model(),
                      std::optional<Tokenizer> tok = std::nullopt, std::vector<int32_t> eos = {}) {
    o.port = 0;
    o.model_name = "tiny";
    server = std::make_unique<Server>(std::move(model), std::move(tok), std::move(eos), o, s);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
    httplib::Client c = client();
    for (int i = 0; i < 200 && !c.Get("/health"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~LiveServer() {
    server->shutdown(std::chrono::milliseconds(0));
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60);
    return c;
  }
  httplib::Result post(const json& body, const std::string& path = "/v1/completions") const {
    return client().Post(path, body.dump(), "application/json");
  }
  json complete(const json& body) const {
    auto r = post(body);
    EXPECT_TRUE(r) << "no response";
    if (!r) return {};
    EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body);
  }
};

// What the library itself generates greedily for `prompt` (prefilled in chunks of `chunk`, as the
// server does), as text after the JSON round trip the server's answer goes through.
std::string library_greedy(const std::string& prompt, int64_t n_tokens, int64_t chunk = 256) {
  Model m = tiny_model();
  TextCodec codec(std::nullopt, m.config().vocab_size);
  const std::vector<int32_t> ids = codec.encode(prompt);
  SequenceState st = m.new_state();
  SequenceState* sp = &st;
  const size_t V = size_t(m.config().vocab_size);
  std::vector<float> logits(size_t(m.config().vocab_padded()));
  for (size_t pos = 0; pos < ids.size(); pos += size_t(chunk)) {
    const size_t len = std::min(ids.size() - pos, size_t(chunk));
    const int64_t cu[2] = {0, int64_t(len)};
    m.forward(std::span<const int32_t>(ids).subspan(pos, len), cu, std::span<SequenceState* const>(&sp, 1),
              logits.data(), true);
  }
  TextCodec::Decoder dec(codec);
  std::string text;
  for (int64_t i = 0; i < n_tokens; ++i) {
    const int32_t t = int32_t(std::max_element(logits.begin(), logits.begin() + long(V)) - logits.begin());
    text += dec.push(t);
    if (i + 1 < n_tokens) m.step(std::span<const int32_t>(&t, 1), std::span<SequenceState* const>(&sp, 1), logits.data());
  }
  text += dec.flush();
  return json::parse(json(text).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
}

// The text of an SSE completion stream per choice; checks the framing on the way.
struct Streamed {
  std::vector<std::string> text, finish;
  json usage;
};
Streamed parse_sse(const std::string& body, size_t n) {
  Streamed s{std::vector<std::string>(n), std::vector<std::string>(n), nullptr};
  size_t at = 0;
  bool done = false;
  while (at < body.size()) {
    const size_t end = body.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "an event does not end with a blank line";
    if (end == std::string::npos) break;
    const std::string ev = body.substr(at, end - at);
    at = end + 2;
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    EXPECT_FALSE(done) << "an event after [DONE]";
    if (ev == "data: [DONE]") {
      done = true;
      continue;
    }
    const json j = json::parse(ev.substr(6));
    EXPECT_EQ(j["object"], "text_completion");
    if (j.contains("usage")) s.usage = j["usage"];
    for (const auto& c : j["choices"]) {
      const size_t i = c["index"].get<size_t>();
      s.text[i] += c["text"].get<std::string>();
      if (!c["finish_reason"].is_null()) s.finish[i] = c["finish_reason"].get<std::string>();
    }
  }
  EXPECT_TRUE(done) << "no data: [DONE]";
  return s;
}

TEST(Serve, CompletionEqualsTheLibrarysGreedyDecode) {
  LiveServer s;
  const json r = s.complete({{"model", "tiny"}, {"prompt", "The state of"}, {"max_tokens", 12}, {"temperature", 0}});
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["model"], "tiny");
  EXPECT_EQ(r["choices"][0]["text"], library_greedy("The state of", 12));
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"], (json{{"prompt_tokens", 12}, {"completion_tokens", 12}, {"total_tokens", 24}}));
  // Token ids as the prompt give the same.
  json ids = json::array();
  for (unsigned char c : std::string("The state of")) ids.push_back(int(c));
  EXPECT_EQ(s.complete({{"prompt", ids}, {"max_tokens", 12}, {"temperature", 0}})["choices"][0]["text"],
            r["choices"][0]["text"]);
  const json models = json::parse(s.client().Get("/v1/models")->body);
  EXPECT_EQ(models["data"][0]["id"], "tiny");
}

TEST(Serve, StreamedTextEqualsTheWholeResponseForTheSameSeed) {
  LiveServer s;
  json req = {{"prompt", "Once upon"}, {"max_tokens", 20}, {"temperature", 0.9}, {"top_p", 0.95}, {"seed", 11},
              {"n", 2}, {"presence_penalty", 0.5}, {"frequency_penalty", 0.3}};
  const json whole = s.complete(req);
  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  auto r = s.post(req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  const Streamed st = parse_sse(r->body, 2);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(st.text[i], whole["choices"][i]["text"]) << i;
    EXPECT_EQ(st.finish[i], "length");
  }
  EXPECT_NE(st.text[0], st.text[1]);  // choices sample with their own seeds
  EXPECT_EQ(st.usage, whole["usage"]);
  EXPECT_EQ(whole["usage"]["completion_tokens"], 40);
  // Another seed samples something else.
  req.erase("stream");
  req.erase("stream_options");
  req["seed"] = 12;
  EXPECT_NE(s.complete(req)["choices"][0]["text"], whole["choices"][0]["text"]);
}

// Logprobs are the library's log-softmax of each step's logits: greedy tokens are the most likely,
// streamed chunks carry the same numbers as the whole answer.
TEST(Serve, LogprobsAreTheModelsLogSoftmax) {
  LiveServer s;
  json req = {{"prompt", "The state of"}, {"max_tokens", 6}, {"temperature", 0}, {"logprobs", 3}};
  const json lp = s.complete(req)["choices"][0]["logprobs"];
  ASSERT_EQ(lp["token_logprobs"].size(), 6u);
  // The library's log-softmax over the same steps.
  Model m = tiny_model();
  const size_t V = size_t(m.config().vocab_size);
  std::vector<int32_t> ids;
  for (unsigned char c : std::string("The state of")) ids.push_back(c);
  SequenceState st = m.new_state();
  SequenceState* sp = &st;
  std::vector<float> logits(size_t(m.config().vocab_padded()));
  const int64_t cu[2] = {0, int64_t(ids.size())};
  m.forward(ids, cu, std::span<SequenceState* const>(&sp, 1), logits.data(), true);
  for (size_t i = 0; i < 6; ++i) {
    double mx = -INFINITY, sum = 0;
    for (size_t v = 0; v < V; ++v) mx = std::max(mx, double(logits[v]));
    for (size_t v = 0; v < V; ++v) sum += std::exp(double(logits[v]) - mx);
    const int32_t t = int32_t(std::max_element(logits.begin(), logits.begin() + long(V)) - logits.begin());
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), double(logits[size_t(t)]) - mx - std::log(sum), 1e-5) << i;
    EXPECT_EQ(lp["top_logprobs"][i].size(), 3u) << i;
    double best = -INFINITY;
    for (const auto& [tok, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
    EXPECT_EQ(best, lp["token_logprobs"][i].get<double>()) << i;
    EXPECT_EQ(lp["text_offset"][i], i);  // one byte per token
    m.step(std::span<const int32_t>(&t, 1), std::span<SequenceState* const>(&sp, 1), logits.data());
  }
  req["stream"] = true;
  auto r = s.post(req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  std::vector<double> streamed;
  for (size_t at = 0, end; (end = r->body.find("\n\n", at)) != std::string::npos; at = end + 2) {
    const std::string ev = r->body.substr(at + 6, end - at - 6);
    if (ev == "[DONE]") break;
    const json chunk = json::parse(ev);
    for (const auto& x : chunk["choices"][0]["logprobs"]["token_logprobs"]) streamed.push_back(x.get<double>());
  }
  EXPECT_EQ(json(streamed), lp["token_logprobs"]);
}

TEST(Serve, StopSequenceEndsTheChoice) {
  LiveServer s;
  const std::string full = library_greedy("abc", 40);
  // A two-character stop sequence (two byte tokens: it spans a token boundary) from the middle of
  // the greedy text, ASCII so that the raw bytes the server matches are the text we see.
  auto ascii = [&](size_t i) { return i < full.size() && full[i] >= 0x20 && full[i] < 0x7f; };
  size_t from = 4;
  while (from < full.size() && !(ascii(from) && ascii(from + 1))) ++from;
  ASSERT_LT(from + 1, full.size()) << "no two ASCII characters in a row in " << full;
  const std::string stop = full.substr(from, 2);
  const json r = s.complete({{"prompt", "abc"}, {"max_tokens", 40}, {"temperature", 0}, {"stop", {stop}}});
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(r["choices"][0]["text"], full.substr(0, full.find(stop)));
}

TEST(Serve, ErrorsHaveTheirStatusAndOpenAiBody) {
  ServerOptions o;
  o.max_body_bytes = 4096;
  o.max_context = 64;
  LiveServer s({}, o);
  auto expect = [&](httplib::Result r, int status, const std::string& param = "") {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    const json j = json::parse(r->body);
    EXPECT_TRUE(j["error"]["message"].is_string()) << r->body;
    EXPECT_TRUE(j["error"]["type"].is_string()) << r->body;
    if (!param.empty()) {
      EXPECT_EQ(j["error"]["param"], param) << r->body;
    }
  };
  httplib::Client c = s.client();
  expect(c.Post("/v1/completions", "{not json", "application/json"), 400);
  expect(s.post({{"prompt", "x"}, {"max_tokens", "many"}}), 400, "max_tokens");
  expect(s.post({{"prompt", ""}}), 400, "prompt");
  expect(s.post({{"prompt", {1, 300}}}), 400, "prompt");
  expect(s.post({{"prompt", std::string(60, 'a')}, {"max_tokens", 10}}), 400, "max_tokens");
  expect(s.post({{"prompt", std::string(70, 'a')}}), 400, "prompt");
  expect(s.post({{"prompt", "x"}, {"model", "gpt-4"}}), 404, "model");
  expect(c.Get("/v1/models/gpt-4"), 404, "model");
  expect(c.Get("/nowhere"), 404);
  expect(c.Post("/v1/completions", std::string(5000, ' '), "application/json"), 413);
  expect(s.post({{"messages", {{{"role", "user"}, {"content", "hi"}}}}}, "/v1/chat/completions"), 400, "messages");
  expect(s.post({{"prompt", "x"}, {"n", 17}}), 400, "n");
  // The server still answers after all that.
  EXPECT_EQ(s.complete({{"prompt", "x"}, {"max_tokens", 2}})["choices"][0]["finish_reason"], "length");
}

TEST(Serve, ApiKeyIsRequiredWhenSet) {
  ServerOptions o;
  o.api_key = "sekret";
  LiveServer s({}, o);
  httplib::Client c = s.client();
  auto r = c.Post("/v1/completions", R"({"prompt":"x","max_tokens":1})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "authentication_error");
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  EXPECT_EQ(c.Get("/metrics")->status, 401);
  EXPECT_EQ(c.Get("/health")->status, 200);
  c.set_bearer_token_auth("wrong");
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  c.set_bearer_token_auth("sekret");
  EXPECT_EQ(c.Post("/v1/completions", R"({"prompt":"x","max_tokens":1})", "application/json")->status, 200);
}

TEST(Serve, FullQueueIs429AndDrainingIs503) {
  SchedulerOptions sched;
  sched.max_queue = 0;  // nothing may wait
  {
    LiveServer s(sched);
    auto r = s.post({{"prompt", "x"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 429) << r->body;
    EXPECT_EQ(json::parse(r->body)["error"]["type"], "rate_limit_error");
  }
  LiveServer s;
  // A long request runs while the server drains: it finishes, new ones are refused.
  json long_req = {{"prompt", "x"}, {"max_tokens", 400}, {"temperature", 0}};
  int long_status = 0;
  json long_body;
  std::thread t([&] {
    auto r = s.post(long_req);
    if (!r) return;
    long_status = r->status;
    long_body = json::parse(r->body);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::thread drain([&] { s.server->shutdown(std::chrono::seconds(30)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto refused = s.post({{"prompt", "y"}});
  auto health = s.client().Get("/health");
  t.join();
  drain.join();
  EXPECT_EQ(long_status, 200);
  EXPECT_EQ(long_body["usage"]["completion_tokens"], 400);
  if (refused) {  // else the socket was already closed
    EXPECT_EQ(refused->status, 503) << refused->body;
  }
  if (health) {
    EXPECT_EQ(health->status, 503);
  }
  s.thread.join();
  s.thread = std::thread([] {});  // the destructor's shutdown finds a stopped server
}

// Continuous batching must not change what a greedy request generates.
TEST(Serve, ConcurrentGreedyRequestsGiveWhatEachGivesAlone) {
  SchedulerOptions sched;
  sched.prefill_chunk = 16;
  LiveServer s(sched);
  const std::vector<std::string> prompts = {"a", "Mamba state spaces", "0123456789012345678901234567890123456789", "Hi!"};
  std::vector<std::string> alone;
  for (const auto& p : prompts)
    alone.push_back(s.complete({{"prompt", p}, {"max_tokens", 24}, {"temperature", 0}})["choices"][0]["text"]);
  for (int round = 0; round < 2; ++round) {
    std::vector<std::string> together(prompts.size());
    std::vector<std::thread> ts;
    for (size_t i = 0; i < prompts.size(); ++i)
      ts.emplace_back([&, i] {
        together[i] = s.complete({{"prompt", prompts[i]}, {"max_tokens", 24}, {"temperature", 0}})["choices"][0]["text"];
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(together, alone);
  }
  EXPECT_EQ(alone[1], library_greedy(prompts[1], 24, 16));
}

// Chat through the model's template: the same text as a completion of the rendered prompt,
// streamed as OpenAI's chunks (the role first, then content deltas); a template that raises is a 400.
TEST(Serve, ChatCompletionRendersTheTemplate) {
  test::TempDir tmp;
  BpeTrainerOptions bpe;
  bpe.vocab_size = 300;
  bpe.eos_token = "<|end|>";
  {
    std::ofstream(tmp.file("tokenizer.json")) << train_bpe_tokenizer_from_texts({"state space models and memory"}, bpe);
    const json config = {{"eos_token", "<|end|>"},
                         {"chat_template",
                          "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools here') }}{% endif %}"
                          "{{ '<|' + m.role + '|>\n' + m.content | trim + '<|end|>\n' }}{% endfor %}"
                          "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"}};
    std::ofstream(tmp.file("tokenizer_config.json")) << config.dump();
  }
  Tokenizer tok = Tokenizer::load(tmp.path());
  ModelConfig cfg = preset_config("mamba3-tiny");
  cfg.vocab_size = 304;
  const std::vector<ChatMessage> messages = {{"system", "Be brief. "}, {"user", " What is memory?"}};
  const std::string rendered = render_chat(tok.chat_template(), messages, tok);
  EXPECT_EQ(rendered, "<|system|>\nBe brief.<|end|>\n<|user|>\nWhat is memory?<|end|>\n<|assistant|>\n");
  LiveServer s({}, {}, Model::init(cfg, kModelSeed), Tokenizer::load(tmp.path()), {*tok.eos_id()});
  json req = {{"messages", {{{"role", "system"}, {"content", "Be brief. "}}, {{"role", "user"}, {"content", " What is memory?"}}}},
              {"max_tokens", 10},
              {"temperature", 0}};
  auto r = s.post(req, "/v1/chat/completions");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json chat = json::parse(r->body);
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  const std::string content = chat["choices"][0]["message"]["content"];
  const json completion = s.complete({{"prompt", rendered}, {"max_tokens", 10}, {"temperature", 0}});
  EXPECT_EQ(content, completion["choices"][0]["text"]);
  EXPECT_EQ(chat["usage"], completion["usage"]);

  req["stream"] = true;
  r = s.post(req, "/v1/chat/completions");
  ASSERT_TRUE(r);
  std::string streamed;
  size_t events = 0;
  for (size_t at = 0, end; (end = r->body.find("\n\n", at)) != std::string::npos; at = end + 2, ++events) {
    const std::string ev = r->body.substr(at + 6, end - at - 6);
    if (ev == "[DONE]") break;
    const json j = json::parse(ev);
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    const json& delta = j["choices"][0]["delta"];
    EXPECT_EQ(delta.contains("role"), events == 0) << ev;
    if (delta.contains("content")) streamed += delta["content"].get<std::string>();
  }
  EXPECT_EQ(streamed, content);

  auto bad = s.post({{"messages", {{{"role", "tool"}, {"content", "x"}}}}}, "/v1/chat/completions");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("no tools here"), std::string::npos) << bad->body;
}

int64_t metric(const LiveServer& s, const std::string& name) {
  const std::string text = s.client().Get("/metrics")->body;
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + name.size() + 2));
}

TEST(Serve, PrefixCacheGivesTheUncachedOutput) {
  SchedulerOptions cached;
  cached.prefill_chunk = 8;
  SchedulerOptions uncached = cached;
  uncached.prefix_cache_bytes = 0;
  LiveServer a(cached), b(uncached);
  const std::string doc = "A shared document that many prompts start with. ";
  for (const char* tail : {"Q1", "Q1", "Another question"}) {
    const json req = {{"prompt", doc + tail}, {"max_tokens", 16}, {"temperature", 0}};
    EXPECT_EQ(a.complete(req)["choices"][0]["text"], b.complete(req)["choices"][0]["text"]) << tail;
  }
  EXPECT_EQ(metric(a, "m3_prefix_cache_hits_total"), 2);
  EXPECT_EQ(metric(a, "m3_prefix_cache_misses_total"), 1);
  // The second and third prompts resumed after the 48 cached tokens (multiples of 8 below 51).
  EXPECT_EQ(metric(a, "m3_prefix_cache_tokens_reused_total"), 96);
  EXPECT_GT(metric(a, "m3_prefix_cache_bytes"), 0);
  EXPECT_EQ(metric(b, "m3_prefix_cache_hits_total"), 0);
}

// A streaming client that goes away frees its slot at the next write, not after max_tokens: with
// one slot, the next request runs as soon as the first client has closed its socket.
TEST(Serve, ClientDisconnectCancelsTheRequest) {
  SchedulerOptions sched;
  sched.slots = 1;
  LiveServer s(sched);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(s.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string body = R"({"prompt":"Hello","max_tokens":4000,"stream":true})";
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(write(fd, req.data(), req.size()), ssize_t(req.size()));
  char buf[512];
  EXPECT_GT(read(fd, buf, sizeof buf), 0);  // the stream has started
  close(fd);
  const json r = s.complete({{"prompt", "Hi"}, {"max_tokens", 5}});
  EXPECT_EQ(r["usage"]["completion_tokens"], 5);
  EXPECT_LT(metric(s, "m3_generated_tokens_total"), 4000);
}

TEST(Serve, MetricsCountTraffic) {
  LiveServer s;
  s.complete({{"prompt", "abcd"}, {"max_tokens", 5}});
  s.post({{"prompt", 1}});
  const std::string text = s.client().Get("/metrics")->body;
  EXPECT_NE(text.find("m3_requests_total{path=\"/v1/completions\",status=\"200\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("m3_requests_total{path=\"/v1/completions\",status=\"400\"} 1"), std::string::npos) << text;
  EXPECT_EQ(metric(s, "m3_prompt_tokens_total"), 4);
  EXPECT_EQ(metric(s, "m3_generated_tokens_total"), 5);
  EXPECT_EQ(metric(s, "m3_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(metric(s, "m3_inter_token_latency_seconds_count"), 4);
  EXPECT_EQ(metric(s, "m3_state_slots"), 16);
  EXPECT_EQ(metric(s, "m3_queue_depth"), 0);
}

// A state-memory budget below one sequence's state is refused before anything listens.
TEST(ServeCli, StateMemoryBelowOneSequenceIsAnError) {
  test::TempDir tmp;
  const std::string dir = tmp.file("tiny");
  ASSERT_EQ(test::run_m3("init --preset mamba3-tiny " + test::quote(dir), tmp).code, 0);
  const test::Result r = test::run_m3("serve " + test::quote(dir) + " --port 0 --state-memory 1K", tmp);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--state-memory 1024 bytes does not hold one sequence's state"), std::string::npos) << r.err;
  EXPECT_NE(test::run_m3("serve " + test::quote(dir) + " --slots 2 --state-memory 1M", tmp).code, 0);
}

// The CLI end to end: init a model, serve it on a free port, answer, then SIGTERM exits 0.
TEST(ServeCli, ServesAndExitsCleanlyOnSigterm) {
  test::TempDir tmp;
  const std::string dir = tmp.file("tiny");
  ASSERT_EQ(test::run_m3("init --preset mamba3-tiny " + test::quote(dir), tmp).code, 0);
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const std::string bin = test::m3_binary_dir() + "/m3";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    execl(bin.c_str(), bin.c_str(), "serve", dir.c_str(), "--port", "0", "--slots", "4", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char ch;
  while (read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
  const size_t colon = line.rfind(':', line.find(" (model"));
  ASSERT_NE(line.find("listening on http://127.0.0.1:"), std::string::npos) << line;
  const int port = std::stoi(line.substr(colon + 1));
  EXPECT_NE(line.find("model tiny, 4 state slots"), std::string::npos) << line;
  httplib::Client c("127.0.0.1", port);
  auto r = c.Post("/v1/completions", R"({"prompt":"hello","max_tokens":3})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  close(out[0]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace m3::serve
