// m3 data tokenize --output FILE.tokens [--tokenizer DIR | --bytes] TEXT...: one document per
// text file, as token ids (through tokenizer.json, or one token per byte), into a token file
// (src/train/token_file.h). With a tokenizer that has an EOS token, each document ends with it.
#include <cstdio>

#include "io/files.h"
#include "m3/error.h"
#include "m3/tokenizer.h"
#include "tools/commands.h"
#include "train/token_file.h"

namespace m3::cli {

void add_data_commands(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Prepare training data");
  data->require_subcommand(1);
  auto* cmd = data->add_subcommand("tokenize", "Text files → a token file (one document per file)");
  struct Args { std::string output, tokenizer; bool bytes = false; std::vector<std::string> files; };
  auto a = std::make_shared<Args>();
  cmd->add_option("--output", a->output, "token file to write")->required();
  auto* tok = cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json or a directory holding one");
  auto* by = cmd->add_flag("--bytes", a->bytes, "byte-level: one token per byte (ids 0..255)");
  tok->excludes(by);
  cmd->add_option("TEXT", a->files, "text files")->required();
  cmd->callback([a] {
    check(a->bytes != !a->tokenizer.empty(), "data tokenize: give one of --tokenizer DIR or --bytes");
    std::optional<Tokenizer> t;
    if (!a->bytes) t = Tokenizer::load(a->tokenizer);
    train::TokenData d;
    d.doc_offsets.push_back(0);
    for (const auto& f : a->files) {
      const std::string text = read_file(f);
      if (t) {
        const auto ids = t->encode(text, false);
        d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
        if (auto eos = t->eos_id()) d.tokens.push_back(*eos);
      } else {
        for (unsigned char ch : text) d.tokens.push_back(int32_t(ch));
      }
      d.doc_offsets.push_back(int64_t(d.tokens.size()));
    }
    train::write_token_file(a->output, d);
    std::printf("wrote %s: %zu tokens in %lld documents (%s)\n", a->output.c_str(), d.tokens.size(),
                (long long)d.n_docs(), d.max_token() < 65536 ? "uint16" : "uint32");
  });
}

}  // namespace m3::cli
