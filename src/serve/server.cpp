#include "serve/server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>

#include "m3/error.h"
#include "serve/chat_template.h"
#include "serve/text_codec.h"

namespace m3::serve {

namespace {

using nlohmann::json;

// JSON text; invalid UTF-8 (a byte-level model may generate any byte) becomes U+FFFD.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(e.body(), "application/json");
}

uint64_t random_seed() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  return rng();
}

// httplib 0.11 (Debian's) listens with a backlog of 5 and keeps its socket private: a burst of
// clients connecting at once overflows the queue and waits for SYN retransmits (1 s, then 3 s).
// listen() again on the bound socket raises the backlog; the socket is found among this process's
// descriptors as the listening one on `port`.
void raise_listen_backlog(int port) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    try {
      fd = std::stoi(e.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    int listening = 0;
    socklen_t len = sizeof listening;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0)
      continue;
    const int p = addr.ss_family == AF_INET    ? ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port)
                  : addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                               : -1;
    if (p == port) ::listen(fd, SOMAXCONN);
  }
}

}  // namespace

int64_t slots_for_memory(const Model& model, size_t bytes, int64_t max_context) {
  const size_t per = model.state_bytes(max_context);
  check(per > 0 && bytes >= per, "--state-memory " + std::to_string(bytes) + " bytes does not hold one sequence's state (" +
                                     std::to_string(per) + " bytes at " + std::to_string(max_context) + " tokens)");
  return int64_t(bytes / per);
}

struct Server::Impl {
  Model model;
  TextCodec codec;
  ServerOptions opt;
  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  httplib::Server http;
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_id{0};
  const int64_t created = int64_t(std::time(nullptr));

  Impl(Model m, std::optional<Tokenizer> tok, std::vector<int32_t> eos, ServerOptions o, SchedulerOptions s)
      : model(std::move(m)), codec(std::move(tok), model.config().vocab_size), opt(std::move(o)) {
    check(opt.max_context >= 2, "--max-context must be at least 2 tokens");
    model.fix_state_pool(s.slots, opt.max_context);
    scheduler = std::make_unique<Scheduler>(model, codec, std::move(eos), s, metrics);
    // A thread per connection in flight: every slot and queue place may hold a streaming client.
    const size_t threads = size_t(std::min<int64_t>(s.slots + s.max_queue + 8, 1024));
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(opt.max_body_bytes);
    routes();
  }

  bool authorized(const httplib::Request& req) const {
    return opt.api_key.empty() || req.get_header_value("Authorization") == "Bearer " + opt.api_key;
  }

  void routes() {
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.path == "/health" || authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, ApiError{401, "missing or wrong API key (Authorization: Bearer KEY)", "", "invalid_api_key"});
      return httplib::Server::HandlerResponse::Handled;
    });
    // httplib calls this before writing any response of status >= 400, ours or its own (404, 413).
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      count(req, res.status);
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // ours already
      if (res.status == 413)
        send_error(res, ApiError{413, "the request body is over the server's size limit", "", ""});
      else if (res.status == 404)
        send_error(res, ApiError{404, "no route " + req.method + " " + req.path, "", ""});
      else
        send_error(res, ApiError{res.status, "HTTP error " + std::to_string(res.status), "", ""});
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what += std::string(": ") + e.what();
      } catch (...) {
      }
      send_error(res, ApiError{500, what, "", ""});
    });
    http.Get("/health", [this](const httplib::Request& req, httplib::Response& res) {
      if (draining) return send_error(res, ApiError{503, "the server is shutting down", "", ""});
      ok(req, res, R"({"status":"ok"})", "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
      ok(req, res, metrics.render(), "text/plain; version=0.0.4");
    });
    http.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      json list = {{"object", "list"}, {"data", json::array({model_card()})}};
      ok(req, res, dump(list), "application/json");
    });
    http.Get("/v1/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.matches[1] != opt.model_name) return send_error(res, unknown_model(req.matches[1]));
      ok(req, res, dump(model_card()), "application/json");
    });
    http.Post("/v1/completions",
              [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, false); });
    http.Post("/v1/chat/completions",
              [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, true); });
  }

  // Requests answered, counted before the response is written (a client that has its answer
  // sees it in /metrics), labelled by route so that unknown paths do not grow the label set.
  void count(const httplib::Request& req, int status) {
    static const char* const routes[] = {"/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"};
    std::string label = "other";
    for (const char* r : routes)
      if (req.path == r) label = r;
    if (req.path.starts_with("/v1/models/")) label = "/v1/models/{id}";
    metrics.count_request(label, status);
  }
  void ok(const httplib::Request& req, httplib::Response& res, const std::string& body, const char* type) {
    count(req, 200);
    res.set_content(body, type);
  }

  json model_card() const {
    return {{"id", opt.model_name}, {"object", "model"}, {"created", created}, {"owned_by", "m3"}};
  }
  ApiError unknown_model(const std::string& name) const {
    return ApiError{404, "the model '" + name + "' does not exist; this server serves '" + opt.model_name + "'", "model",
                    "model_not_found"};
  }

  // The prompt's token ids, or why not.
  std::variant<std::vector<int32_t>, ApiError> prompt_tokens(const CompletionRequest& r, bool chat) const {
    std::vector<int32_t> ids;
    if (chat) {
      const Tokenizer* tok = codec.tokenizer();
      if (!tok || tok->chat_template().empty())
        return bad_request("the model '" + opt.model_name +
                               "' has no chat template (tokenizer_config.json's chat_template); use /v1/completions",
                           "messages");
      std::string text;
      try {
        text = render_chat(tok->chat_template(), r.messages, *tok);
      } catch (const Error& e) {
        return bad_request(std::string("the chat template failed: ") + e.what(), "messages");
      }
      // The template writes the BOS token itself when the model wants one.
      ids = tok->encode(text, false);
    } else if (r.prompt_is_ids) {
      ids = r.prompt_ids;
      for (int32_t t : ids)
        if (t >= codec.vocab_size())
          return bad_request("prompt token " + std::to_string(t) + " is outside the vocabulary [0, " +
                                 std::to_string(codec.vocab_size()) + ")",
                             "prompt");
    } else {
      ids = codec.encode(r.prompt);
    }
    if (ids.empty()) return bad_request("the prompt is empty", chat ? "messages" : "prompt");
    return ids;
  }

  void generate(const httplib::Request& req, httplib::Response& res, bool chat) {
    ParsedRequest parsed = chat ? parse_chat_request(req.body, opt.limits) : parse_completion_request(req.body, opt.limits);
    if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
    CompletionRequest& r = std::get<CompletionRequest>(parsed);
    if (!r.model.empty() && r.model != opt.model_name) return send_error(res, unknown_model(r.model));
    auto ids_or = prompt_tokens(r, chat);
    if (auto* e = std::get_if<ApiError>(&ids_or)) return send_error(res, *e);
    std::vector<int32_t> ids = std::move(std::get<std::vector<int32_t>>(ids_or));
    const int64_t room = opt.max_context - int64_t(ids.size());
    // Chat's default max_tokens is "what fits"; an explicit one that does not fit is an error.
    if (chat && !r.max_tokens_given) r.gen.max_tokens = std::min(r.gen.max_tokens, room);
    if (r.gen.max_tokens > room || room < 1)
      return send_error(res, bad_request("the prompt's " + std::to_string(ids.size()) + " tokens plus max_tokens " +
                                             std::to_string(r.gen.max_tokens) + " exceed the context of " +
                                             std::to_string(opt.max_context) + " tokens",
                                         ids.size() >= size_t(opt.max_context) ? (chat ? "messages" : "prompt") : "max_tokens"));
    if (!r.seed_given) r.gen.seed = random_seed();
    auto stream = std::make_shared<GenerationStream>(r.gen.n);
    if (auto e = scheduler->submit(ids, r.gen, stream)) return send_error(res, *e);
    const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(created) + "-" + std::to_string(next_id++);
    if (r.stream) {
      count(req, 200);
      stream_response(res, stream, id, chat, r.include_usage, r.gen.n, r.gen.logprobs >= 0);
    } else {
      whole_response(req, res, *stream, id, chat, r.gen.n, r.gen.logprobs >= 0);
    }
  }

  // OpenAI's logprobs objects: completions {tokens, token_logprobs, top_logprobs, text_offset}
  // (offsets into the choice's text so far, `offset`), chat {content: [{token, logprob, bytes,
  // top_logprobs}]}.
  // A token that is not whole UTF-8 (a byte of a longer character) is written as OpenAI writes
  // it, "bytes:\\xe2\\x80", so that distinct tokens stay distinct keys of top_logprobs.
  static std::string display(const std::string& token) {
    try {
      (void)json(token).dump();
      return token;
    } catch (const json::type_error&) {
      std::string out = "bytes:";
      char b[8];
      for (unsigned char ch : token) {
        std::snprintf(b, sizeof b, "\\x%02x", ch);
        out += b;
      }
      return out;
    }
  }

  static json logprobs_json(const std::vector<TokenLogprob>& lps, bool chat, size_t& offset) {
    auto bytes = [](const std::string& s) {
      json b = json::array();
      for (unsigned char ch : s) b.push_back(int(ch));
      return b;
    };
    if (chat) {
      json content = json::array();
      for (const auto& t : lps) {
        json top = json::array();
        for (const auto& [tok, lp] : t.top) top.push_back({{"token", display(tok)}, {"logprob", lp}, {"bytes", bytes(tok)}});
        content.push_back({{"token", display(t.token)}, {"logprob", t.logprob}, {"bytes", bytes(t.token)}, {"top_logprobs", top}});
      }
      return {{"content", content}};
    }
    json tokens = json::array(), token_lps = json::array(), tops = json::array(), offsets = json::array();
    for (const auto& t : lps) {
      tokens.push_back(display(t.token));
      token_lps.push_back(t.logprob);
      json top = json::object();
      for (const auto& [tok, lp] : t.top) top[display(tok)] = lp;
      tops.push_back(top);
      offsets.push_back(offset);
      offset += t.token.size();
    }
    return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
  }

  json usage(const GenerationStream& s) const {
    return {{"prompt_tokens", s.prompt_tokens()},
            {"completion_tokens", s.completion_tokens()},
            {"total_tokens", s.prompt_tokens() + s.completion_tokens()}};
  }

  void whole_response(const httplib::Request& req, httplib::Response& res, GenerationStream& s, const std::string& id, bool chat, int64_t n,
                      bool want_logprobs) {
    std::vector<std::string> text(static_cast<size_t>(n)), finish(static_cast<size_t>(n));
    std::vector<std::vector<TokenLogprob>> lps(static_cast<size_t>(n));
    std::vector<StreamEvent> events;
    while (s.wait(events)) {
      for (auto& e : events) {
        text[size_t(e.index)] += e.text;
        if (!e.finish_reason.empty()) finish[size_t(e.index)] = e.finish_reason;
        for (auto& t : e.logprobs) lps[size_t(e.index)].push_back(std::move(t));
      }
      events.clear();
    }
    if (auto e = s.error()) return send_error(res, *e);
    json choices = json::array();
    for (int64_t i = 0; i < n; ++i) {
      size_t offset = 0;
      json c = {{"index", i},
                {"logprobs", want_logprobs ? logprobs_json(lps[size_t(i)], chat, offset) : json(nullptr)},
                {"finish_reason", finish[size_t(i)]}};
      if (chat)
        c["message"] = {{"role", "assistant"}, {"content", text[size_t(i)]}};
      else
        c["text"] = text[size_t(i)];
      choices.push_back(std::move(c));
    }
    json body = {{"id", id},
                 {"object", chat ? "chat.completion" : "text_completion"},
                 {"created", int64_t(std::time(nullptr))},
                 {"model", opt.model_name},
                 {"choices", std::move(choices)},
                 {"usage", usage(s)}};
    ok(req, res, dump(body), "application/json");
  }

  // Server-sent events: one chunk per text piece (OpenAI's chunk objects), a last chunk per choice
  // with its finish_reason, the usage chunk when asked for, then `data: [DONE]`.
  void stream_response(httplib::Response& res, std::shared_ptr<GenerationStream> s, const std::string& id, bool chat,
                       bool include_usage, int64_t n, bool want_logprobs) {
    res.set_header("Cache-Control", "no-cache");
    auto chunk = [this, id, chat](json choices) {
      json c = {{"id", id},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", int64_t(std::time(nullptr))},
                {"model", opt.model_name},
                {"choices", std::move(choices)}};
      return c;
    };
    auto sent_role = std::make_shared<std::vector<bool>>(size_t(n), false);
    auto offsets = std::make_shared<std::vector<size_t>>(size_t(n), 0);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, s, chunk, chat, include_usage, sent_role, offsets, want_logprobs](size_t, httplib::DataSink& sink) {
          auto send = [&](const json& j) {
            const std::string line = "data: " + dump(j) + "\n\n";
            return sink.write(line.data(), line.size());
          };
          std::vector<StreamEvent> events;
          while (s->wait(events)) {
            for (auto& e : events) {
              json c = {{"index", e.index},
                        {"logprobs", want_logprobs ? logprobs_json(e.logprobs, chat, (*offsets)[size_t(e.index)]) : json(nullptr)},
                        {"finish_reason", e.finish_reason.empty() ? json(nullptr) : json(e.finish_reason)}};
              if (chat) {
                c["delta"] = json::object();
                if (!(*sent_role)[size_t(e.index)]) c["delta"]["role"] = "assistant";
                (*sent_role)[size_t(e.index)] = true;
                if (!e.text.empty() || e.finish_reason.empty()) c["delta"]["content"] = e.text;
              } else {
                c["text"] = e.text;
              }
              if (!send(chunk(json::array({c})))) {
                s->cancel();  // the client went away
                return false;
              }
            }
            events.clear();
          }
          if (auto e = s->error()) {
            json err = json::parse(e->body());
            const std::string line = "data: " + dump(err) + "\n\n";
            sink.write(line.data(), line.size());
          } else if (include_usage) {
            json u = chunk(json::array());
            u["usage"] = usage(*s);
            send(u);
          }
          static const std::string done = "data: [DONE]\n\n";
          sink.write(done.data(), done.size());
          sink.done();
          return true;
        },
        [s](bool success) {
          if (!success) s->cancel();
        });
  }
};

Server::Server(Model model, std::optional<Tokenizer> tokenizer, std::vector<int32_t> eos_ids, ServerOptions opt,
               SchedulerOptions sched)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(tokenizer), std::move(eos_ids), std::move(opt), sched)) {}

Server::~Server() = default;

int Server::bind() {
  Impl& m = *impl_;
  if (m.opt.port == 0) {
    m.opt.port = m.http.bind_to_any_port(m.opt.host);
    check(m.opt.port > 0, "cannot listen on " + m.opt.host + " (any port)");
  } else {
    check(m.http.bind_to_port(m.opt.host, m.opt.port), "cannot listen on " + m.opt.host + ":" + std::to_string(m.opt.port) +
                                                          " (in use, or not an address of this machine)");
  }
  raise_listen_backlog(m.opt.port);
  return m.opt.port;
}

void Server::run() { impl_->http.listen_after_bind(); }

void Server::shutdown(std::chrono::milliseconds drain) {
  impl_->draining = true;
  impl_->scheduler->drain(drain);
  impl_->http.stop();
}

}  // namespace m3::serve
