// m3 generate DIR: prefill a prompt with the parallel form, then decode token by token with the
// recurrent form (spec/model.md §7), printing tokens as they come and a closing throughput line.
// Text goes through a tokenizer.json when there is one (DIR's, or --tokenizer), else it is
// byte-level: one token per UTF-8 byte.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <sstream>

#include "core/limits.h"
#include "io/files.h"
#include "m3/error.h"
#include "m3/model.h"
#include "m3/sampler.h"
#include "m3/tokenizer.h"
#include "model/model_text.h"
#include "tools/commands.h"
#include "tools/flag_checks.h"

namespace m3::cli {

namespace {

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::istringstream in(s);
  std::string tok;
  while (in >> tok) {
    try {
      size_t used = 0;
      long v = std::stol(tok, &used);
      check(used == tok.size() && v >= INT32_MIN && v <= INT32_MAX, "");  // no silent wrap to int32
      ids.push_back(int32_t(v));
    } catch (const std::exception&) {
      throw Error("--prompt-ids: '" + tok + "' is not an integer token id");
    }
  }
  return ids;
}

void write_out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "generate",
      "Generate a continuation of a prompt. Text is encoded and decoded with DIR/tokenizer.json (or --tokenizer) "
      "when present, else byte-level (one token per UTF-8 byte, ids 0-255)");
  struct Args {
    std::string dir, prompt, prompt_ids, tokenizer;
    int64_t max_new = 64;
    SamplerOptions s;
    bool ids_out = false, no_special = false, ignore_eos = false;
    DeviceOptions dev;
  };
  auto a = std::make_shared<Args>();
  add_device_options(cmd, a->dev);
  cmd->add_option("DIR", a->dir, "checkpoint directory")->required();
  auto* p = cmd->add_option("--prompt", a->prompt,
                            "prompt text, encoded with the tokenizer (byte-level without one)");
  auto* pi = cmd->add_option("--prompt-ids", a->prompt_ids, "prompt as space-separated token ids");
  p->excludes(pi);
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json, or a directory holding one (default: DIR's)");
  cmd->add_flag("--no-special", a->no_special, "do not add the tokenizer's BOS/EOS tokens to the --prompt text");
  cmd->add_flag("--ignore-eos", a->ignore_eos,
                "keep going past the EOS token (tokenizer_config.json's eos_token, config.json's eos_token_id)");
  cmd->add_option("--max-new-tokens,-n", a->max_new, "tokens to generate")
      ->default_val(64)
      ->check(between(0, double(limits::kNewTokens)));
  // Sampling: greedy unless asked otherwise. --temperature, --top-p or --min-p turn sampling on,
  // and --top-k then defaults to 0 (all tokens); with --top-k 1 (greedy) they are an error, as
  // they would change nothing.
  auto* temperature = cmd->add_option("--temperature", a->s.temperature,
                                      "sampling temperature (turns sampling on; default 1 when sampling)")
                          ->check(between(0, 1e6, true));
  auto* top_k = cmd->add_option("--top-k", a->s.top_k,
                                "keep the k most likely tokens (1 = greedy, the default unless --temperature, "
                                "--top-p or --min-p is given; 0 = all)")
                    ->check(between(0, 2147483647));
  auto* top_p = cmd->add_option("--top-p", a->s.top_p, "nucleus probability (turns sampling on)")
                    ->default_val(1.0)
                    ->check(between(0, 1, true));
  auto* min_p = cmd->add_option("--min-p", a->s.min_p, "drop tokens below min_p x the top probability (turns sampling on)")
                    ->default_val(0.0)
                    ->check(between(0, 1));
  cmd->add_option("--repetition-penalty", a->s.repetition_penalty, "penalty for tokens already seen")
      ->default_val(1.0)
      ->check(between(0, 1e6, true));
  cmd->add_option("--seed", a->s.seed, "random seed")->default_val(0);
  cmd->add_flag("--print-ids", a->ids_out, "print token ids instead of text");
  cmd->callback([a, temperature, top_k, top_p, min_p] {
    if (temperature->count() || top_p->count() || min_p->count()) {
      check(top_k->count() == 0 || a->s.top_k != 1,
            "--top-k 1 is greedy decoding, which --temperature, --top-p and --min-p would not change; drop "
            "--top-k 1 to sample");
      if (top_k->count() == 0) a->s.top_k = 0;
    }
    Model m = Model::load(a->dir, a->dev.spec());
    const int64_t V = m.config().vocab_size;
    const std::optional<Tokenizer> tok = load_model_tokenizer(a->dir, a->tokenizer, V);
    std::vector<int32_t> prompt;
    if (!a->prompt_ids.empty()) {
      prompt = parse_ids(a->prompt_ids);
    } else if (tok) {
      prompt = tok->encode(a->prompt, !a->no_special);
    } else {
      check(V >= 256, "byte-level text prompts need a vocabulary of at least 256 tokens; use --prompt-ids");
      for (unsigned char c : a->prompt) prompt.push_back(c);
    }
    check(!prompt.empty(), "the prompt is empty: give --prompt or --prompt-ids");
    check(int64_t(prompt.size()) <= limits::kPromptTokens,
          "the prompt has " + std::to_string(prompt.size()) + " tokens, more than the limit of " +
              std::to_string(limits::kPromptTokens) + " (kPromptTokens, src/core/limits.h)");
    for (int32_t t : prompt)
      check(t >= 0 && t < V, "prompt token " + std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
    const std::vector<int32_t> stop = a->ignore_eos ? std::vector<int32_t>{} : model_eos_ids(a->dir, tok);
    Sampler sampler(a->s);
    SequenceState st = m.new_state();
    SequenceState* sp = &st;
    std::vector<float> logits(size_t(m.config().vocab_padded()));
    std::vector<int32_t> history = prompt;
    // With a tokenizer, text is written only once its characters are complete, so that no
    // UTF-8 character is split across writes.
    std::optional<StreamDecoder> stream;
    if (tok && !a->ids_out) stream.emplace(*tok);
    auto emit = [&](int32_t t) {
      if (stream)
        write_out(stream->push(t));
      else if (a->ids_out || V < 256 || t > 255)
        write_out(std::to_string(t) + " ");
      else
        write_out(std::string(1, char(t)));
    };
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    int64_t cu[2] = {0, int64_t(prompt.size())};
    m.forward(prompt, cu, std::span<SequenceState* const>(&sp, 1), logits.data(), true);
    auto t1 = clock::now();
    int64_t generated = 0;
    for (int64_t i = 0; i < a->max_new; ++i) {
      int32_t next = sampler.sample(std::span<float>(logits.data(), size_t(V)), history);
      history.push_back(next);
      emit(next);
      ++generated;
      if (i + 1 == a->max_new || std::find(stop.begin(), stop.end(), next) != stop.end()) break;
      m.step(std::span<const int32_t>(&next, 1), std::span<SequenceState* const>(&sp, 1), logits.data());
    }
    if (stream) write_out(stream->flush());
    auto t2 = clock::now();
    const double pre = std::chrono::duration<double>(t1 - t0).count();
    const double dec = std::chrono::duration<double>(t2 - t1).count();
    std::fprintf(stderr, "\nprefill: %zu tokens in %.3f s (%.1f tok/s); decode: %lld tokens in %.3f s (%.1f tok/s)\n",
                 prompt.size(), pre, double(prompt.size()) / pre, (long long)generated, dec,
                 generated > 1 ? double(generated - 1) / dec : 0.0);
  });
}

}  // namespace m3::cli
