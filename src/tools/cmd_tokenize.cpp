// m3 tokenize / detokenize / tokenizer train: text <-> ids with a tokenizer.json, and training
// a byte-level BPE tokenizer.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "core/limits.h"
#include "io/files.h"
#include "m3/error.h"
#include "m3/safetensors.h"
#include "m3/tokenizer.h"
#include "tools/commands.h"
#include "tools/flag_checks.h"

namespace m3::cli {

namespace {

using Json = nlohmann::json;

std::string read_input(const std::string& path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  return read_file(path);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

void print_ids(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(ids[i]);
  }
  out += '\n';
  std::fwrite(out.data(), 1, out.size(), stdout);
}

// Ids outside the tokenizer's [0, vocab_size) are an error, not silently dropped text.
std::vector<int32_t> parse_ids(const std::string& text, int32_t vocab_size) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    check(used == word.size(), "'" + word + "' is not a token id");
    check(v >= 0 && v < vocab_size, "token id " + word + " is outside the tokenizer's vocabulary [0, " +
                                         std::to_string(vocab_size) + ")");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

std::string json_line_string(const std::string& line) {
  try {
    check_json_depth(line, "--jsonl");
    const Json j = Json::parse(line);
    check(j.is_string(), "--jsonl: expected a JSON string per line, found " + std::string(j.type_name()));
    return j.get<std::string>();
  } catch (const Json::exception& e) {
    throw Error(std::string("--jsonl: ") + e.what());
  }
}

void add_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Encode text to token ids (printed space-separated)");
  struct Opts {
    std::string tokenizer, text, file;
    bool no_special = false, jsonl = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("TOKENIZER", o->tokenizer, "tokenizer.json, or a directory holding one")->required();
  auto* text = cmd->add_option("--text", o->text, "text to encode");
  auto* file = cmd->add_option("--file", o->file, "file to encode ('-' for stdin)")->excludes(text);
  cmd->add_flag("--no-special", o->no_special, "do not add the post-processor's BOS/EOS tokens");
  cmd->add_flag("--jsonl", o->jsonl, "input has one JSON string per line; print one line of ids per line");
  cmd->callback([o, text, file] {
    check(text->count() > 0 || file->count() > 0, "tokenize: give --text or --file");
    const Tokenizer tok = Tokenizer::load(o->tokenizer);
    const std::string input = o->file.empty() ? o->text : read_input(o->file);
    if (!o->jsonl) {
      print_ids(tok.encode(input, !o->no_special));
      return;
    }
    for (const std::string& line : lines_of(input)) print_ids(tok.encode(json_line_string(line), !o->no_special));
  });
}

void add_detokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("detokenize", "Decode token ids to text");
  struct Opts {
    std::string tokenizer, file;
    std::vector<std::string> ids;
    bool keep_special = false, jsonl = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("TOKENIZER", o->tokenizer, "tokenizer.json, or a directory holding one")->required();
  cmd->add_option("IDS", o->ids, "token ids");
  cmd->add_option("--file", o->file, "file of whitespace-separated ids ('-' for stdin)");
  cmd->add_flag("--keep-special", o->keep_special, "keep special tokens in the text");
  cmd->add_flag("--jsonl", o->jsonl, "one line of ids per line in; one JSON string per line out");
  cmd->callback([o] {
    const Tokenizer tok = Tokenizer::load(o->tokenizer);
    std::string input;
    for (const std::string& id : o->ids) input += id + " ";
    if (!o->file.empty()) input += read_input(o->file);
    if (!o->jsonl) {
      const std::string text = tok.decode(parse_ids(input, tok.vocab_size()), !o->keep_special) + "\n";
      std::fwrite(text.data(), 1, text.size(), stdout);
      return;
    }
    std::istringstream in(input);
    for (std::string line; std::getline(in, line);) {
      const std::string text = Json(tok.decode(parse_ids(line, tok.vocab_size()), !o->keep_special)).dump() + "\n";
      std::fwrite(text.data(), 1, text.size(), stdout);
    }
  });
}

void add_train(CLI::App& app) {
  auto* group = app.add_subcommand("tokenizer", "Tokenizer tools");
  group->require_subcommand(1);
  auto* cmd = group->add_subcommand("train", "Train a byte-level BPE tokenizer (Llama-3 split regex)");
  struct Opts {
    BpeTrainerOptions train;
    std::vector<std::string> files, specials;
    std::string output, bos, eos;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--vocab-size", o->train.vocab_size, "vocabulary size, including 256 byte tokens and special tokens")
      ->required()
      ->check(between(1, double(limits::kTokenIds)));
  cmd->add_option("--files", o->files, "UTF-8 text files to train on")->required();
  cmd->add_option("--output", o->output, "output directory (tokenizer.json + tokenizer_config.json) or .json file")
      ->required();
  cmd->add_option("--min-frequency", o->train.min_frequency, "minimum count of a pair to be merged")
      ->capture_default_str()
      ->check(between(1, 9.2e18));
  cmd->add_option("--special-tokens", o->specials, "special tokens, given the first ids in order")->delimiter(',');
  cmd->add_option("--bos", o->bos, "BOS token: added before every encoded text (made special)");
  cmd->add_option("--eos", o->eos, "EOS token: recorded in tokenizer_config.json (made special)");
  cmd->add_option("--max-token-bytes", o->train.max_token_bytes, "longest token, in bytes")
      ->capture_default_str()
      ->check(between(2, 1 << 20));
  cmd->callback([o] {
    namespace fs = std::filesystem;
    BpeTrainerOptions opt = o->train;
    opt.special_tokens = o->specials;
    if (!o->bos.empty()) opt.bos_token = o->bos;
    if (!o->eos.empty()) opt.eos_token = o->eos;
    const std::string json = train_bpe_tokenizer(o->files, opt);
    const bool to_file = fs::path(o->output).extension() == ".json";
    const fs::path dir = to_file ? fs::path(o->output).parent_path() : fs::path(o->output);
    if (!dir.empty()) fs::create_directories(dir);
    const fs::path tokenizer_path = to_file ? fs::path(o->output) : dir / "tokenizer.json";
    write_file_atomic(tokenizer_path.string(), json);
    if (!to_file) {
      Json config = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"clean_up_tokenization_spaces", false}};
      if (opt.bos_token) config["bos_token"] = *opt.bos_token;
      if (opt.eos_token) config["eos_token"] = *opt.eos_token;
      write_file_atomic((dir / "tokenizer_config.json").string(), config.dump(2) + "\n");
    }
    const Tokenizer tok = Tokenizer::load(tokenizer_path.string());
    std::printf("wrote %s (%d tokens)\n", tokenizer_path.c_str(), tok.vocab_size());
  });
}

}  // namespace

void add_tokenize_commands(CLI::App& app) {
  add_tokenize(app);
  add_detokenize(app);
  add_train(app);
}

}  // namespace m3::cli
