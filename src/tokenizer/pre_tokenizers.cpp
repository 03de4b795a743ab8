#include "tokenizer/pre_tokenizers.h"

#include <optional>
#include <vector>

#include "m3/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/text_pattern.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace m3::tok {

const char* const kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

const char* const kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

// Optionally prepends a space to each piece, optionally splits with the GPT-2 regex, then maps
// every byte to its byte-level character.
class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_.emplace(kGpt2SplitPattern);
  }
  void pre_tokenize(Pieces& p) const override {
    if (add_prefix_space_) {
      rewrite_pieces(p, [](std::string_view s, bool, std::string& out) {
        if (s.empty() || s[0] != ' ') out += ' ';
        out += s;
      });
    }
    if (regex_) {
      std::vector<Segment> segs;
      split_pieces(p, [&](std::string_view s, std::vector<Match>& out) {
        segs.clear();
        find_segments(*regex_, s, segs);
        apply_split_behavior(segs, SplitBehavior::Isolated, out);
      });
    }
    rewrite_pieces(p, [](std::string_view s, bool, std::string& out) { append_byte_level(out, s); });
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

class Split final : public PreTokenizer {
 public:
  Split(TextPattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(Pieces& p) const override {
    std::vector<Segment> segs;
    split_pieces(p, [&](std::string_view s, std::vector<Match>& out) {
      segs.clear();
      pattern_.find(s, segs);
      if (invert_)
        for (Segment& g : segs) g.is_match = !g.is_match;
      apply_split_behavior(segs, behavior_, out);
    });
  }

 private:
  TextPattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

// Splits on characters for which a predicate holds (Digits, WhitespaceSplit).
template <class Pred>
class CharSplit final : public PreTokenizer {
 public:
  CharSplit(Pred pred, SplitBehavior behavior) : pred_(pred), behavior_(behavior) {}
  void pre_tokenize(Pieces& p) const override {
    std::vector<Segment> segs;
    split_pieces(p, [&](std::string_view s, std::vector<Match>& out) {
      segs.clear();
      find_char_segments(pred_, s, segs);
      apply_split_behavior(segs, behavior_, out);
    });
  }

 private:
  Pred pred_;
  SplitBehavior behavior_;
};

template <class Pred>
std::unique_ptr<PreTokenizer> make_char_split(Pred pred, SplitBehavior behavior) {
  return std::make_unique<CharSplit<Pred>>(pred, behavior);
}

enum class PrependScheme { Always, Never, First };

// Replaces spaces by the replacement character (▁ by default), prepends one to pieces per the
// prepend scheme, and optionally splits so that each word starts with its ▁.
class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void pre_tokenize(Pieces& p) const override {
    rewrite_pieces(p, [&](std::string_view s, bool at_origin, std::string& out) {
      const bool starts_with_rep = (!s.empty() && s[0] == ' ') || s.starts_with(replacement_);
      const bool prepend = scheme_ == PrependScheme::Always ||
                           (scheme_ == PrependScheme::First && at_origin);
      if (prepend && !starts_with_rep) out += replacement_;
      for (char c : s) {
        if (c == ' ') {
          out += replacement_;
        } else {
          out += c;
        }
      }
    });
    if (!split_) return;
    std::vector<Segment> segs;
    split_pieces(p, [&](std::string_view s, std::vector<Match>& out) {
      segs.clear();
      find_literal_segments(replacement_, s, segs);
      apply_split_behavior(segs, SplitBehavior::MergedWithNext, out);
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void pre_tokenize(Pieces& p) const override {
    for (const auto& step : steps_) step->pre_tokenize(p);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

std::string single_char(const Json& j, const char* key, const std::string& where) {
  const std::string s = require_string(j, key, where);
  size_t i = 0;
  check(!s.empty() && (next_code_point(s, i), i == s.size()),
        where + "." + key + ": expected a single character, found '" + s + "'");
  return s;
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& j, const std::string& where) {
  const std::string type = type_tag(j, where);
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevel>(optional_bool(j, "add_prefix_space", where, true),
                                       optional_bool(j, "use_regex", where, true));
  }
  if (type == "Split") {
    return std::make_unique<Split>(TextPattern::from_json(require_field(j, "pattern", where), where + ".pattern"),
                                   parse_split_behavior(require_string(j, "behavior", where)),
                                   optional_bool(j, "invert", where, false));
  }
  if (type == "Digits") {
    const bool individual = optional_bool(j, "individual_digits", where, false);
    return make_char_split([](char32_t c) { return is_numeric(c); },
                           individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous);
  }
  if (type == "WhitespaceSplit") {
    return make_char_split([](char32_t c) { return is_white_space(c); }, SplitBehavior::Removed);
  }
  if (type == "Metaspace") {
    std::string scheme_name = optional_string(j, "prepend_scheme", where, "always");
    // Files from before prepend_scheme existed say add_prefix_space instead.
    if (!optional_bool(j, "add_prefix_space", where, true)) {
      check(!j.contains("prepend_scheme") || scheme_name == "never",
            where + ": add_prefix_space=false contradicts prepend_scheme '" + scheme_name + "'");
      scheme_name = "never";
    }
    PrependScheme scheme;
    if (scheme_name == "always") {
      scheme = PrependScheme::Always;
    } else if (scheme_name == "never") {
      scheme = PrependScheme::Never;
    } else if (scheme_name == "first") {
      scheme = PrependScheme::First;
    } else {
      throw Error(where + ".prepend_scheme: expected always, never or first, found '" + scheme_name + "'");
    }
    return std::make_unique<Metaspace>(single_char(j, "replacement", where), scheme,
                                       optional_bool(j, "split", where, true));
  }
  if (type == "Sequence") {
    return std::make_unique<Sequence>(parse_list(j, "pretokenizers", where, make_pre_tokenizer));
  }
  throw Error(where + ": unsupported pre_tokenizer type '" + type +
              "' (supported: ByteLevel, Split, Digits, Metaspace, WhitespaceSplit, Sequence)");
}

}  // namespace m3::tok
