// The text being encoded, cut into pieces: the tokenizers library's PreTokenizedString without
// the offset bookkeeping encode() does not need. Normalizers rewrite the text of each piece,
// pre-tokenizers cut pieces into smaller ones; pieces that are added tokens are left alone.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace m3::tok {

struct Span {
  size_t begin = 0, end = 0;  // bytes of Pieces::text
  int32_t token = -1;         // id when this piece is an added token, else -1
  // Whether the piece starts at offset 0 of the original input (Metaspace's "first" scheme).
  bool at_origin = false;
};

struct Pieces {
  std::string text;
  std::vector<Span> spans;

  std::string_view view(const Span& s) const {
    return std::string_view(text).substr(s.begin, s.end - s.begin);
  }
};

// A found occurrence of a pattern and whether it is a match (else the text between matches):
// the tokenizers library's Pattern::find_matches output, covering the whole input in order.
struct Segment {
  size_t begin, end;
  bool is_match;
};

// How split() treats the matched delimiters (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
SplitBehavior parse_split_behavior(const std::string& name);

// Turns a find_matches result into the [begin, end) ranges of the pieces to keep.
void apply_split_behavior(const std::vector<Segment>& segments, SplitBehavior behavior,
                          std::vector<Match>& out);

// find_matches for a regex, a literal string, and a character predicate.
void find_segments(const Regex& re, std::string_view text, std::vector<Segment>& out);
void find_literal_segments(std::string_view needle, std::string_view text, std::vector<Segment>& out);
template <class Pred>
void find_char_segments(Pred&& pred, std::string_view text, std::vector<Segment>& out);

// Replaces every non-token piece by the ranges `cut(view, ranges)` writes (relative to the
// piece); empty ranges are dropped, as the tokenizers library drops empty splits.
template <class Cut>
void split_pieces(Pieces& p, Cut&& cut);

// Rewrites every non-token piece's text: `rewrite(view, at_origin, out)` appends the new text.
// Pieces whose new text is empty are dropped.
template <class Rewrite>
void rewrite_pieces(Pieces& p, Rewrite&& rewrite);

// ---- template definitions ----

template <class Pred>
void find_char_segments(Pred&& pred, std::string_view text, std::vector<Segment>& out) {
  size_t last = 0, i = 0;
  while (i < text.size()) {
    const size_t start = i;
    const char32_t cp = next_code_point(text, i);
    if (pred(cp)) {
      if (last < start) out.push_back({last, start, false});
      out.push_back({start, i, true});
      last = i;
    }
  }
  if (last < text.size()) out.push_back({last, text.size(), false});
}

template <class Cut>
void split_pieces(Pieces& p, Cut&& cut) {
  std::vector<Span> spans;
  spans.reserve(p.spans.size() * 2);
  std::vector<Match> ranges;
  for (const Span& s : p.spans) {
    if (s.token >= 0) {
      spans.push_back(s);
      continue;
    }
    ranges.clear();
    cut(p.view(s), ranges);
    for (const Match& r : ranges) {
      if (r.end <= r.begin) continue;
      spans.push_back({s.begin + r.begin, s.begin + r.end, -1, s.at_origin && r.begin == 0});
    }
  }
  p.spans = std::move(spans);
}

template <class Rewrite>
void rewrite_pieces(Pieces& p, Rewrite&& rewrite) {
  std::string text;
  text.reserve(p.text.size() + p.text.size() / 4 + 16);
  std::vector<Span> spans;
  spans.reserve(p.spans.size());
  for (const Span& s : p.spans) {
    if (s.token >= 0) {
      spans.push_back({text.size(), text.size(), s.token, s.at_origin});
      continue;
    }
    const size_t begin = text.size();
    rewrite(p.view(s), s.at_origin, text);
    if (text.size() > begin) spans.push_back({begin, text.size(), -1, s.at_origin});
  }
  p.text = std::move(text);
  p.spans = std::move(spans);
}

}  // namespace m3::tok
