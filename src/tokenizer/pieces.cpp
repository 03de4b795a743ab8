#include "tokenizer/pieces.h"

#include "m3/error.h"

namespace m3::tok {

SplitBehavior parse_split_behavior(const std::string& name) {
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (name == "Contiguous") return SplitBehavior::Contiguous;
  throw Error("unknown split behavior '" + name +
              "' (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
}

void apply_split_behavior(const std::vector<Segment>& segs, SplitBehavior behavior,
                          std::vector<Match>& out) {
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const Segment& s : segs) out.push_back({s.begin, s.end});
      return;
    case SplitBehavior::Removed:
      for (const Segment& s : segs)
        if (!s.is_match) out.push_back({s.begin, s.end});
      return;
    case SplitBehavior::Contiguous: {
      // Runs of segments with the same is_match flag fuse into one piece.
      bool previous_match = false;
      const size_t first = out.size();
      for (const Segment& s : segs) {
        if (s.is_match == previous_match && out.size() > first) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end});
        }
        previous_match = s.is_match;
      }
      return;
    }
    case SplitBehavior::MergedWithPrevious: {
      // A match (the first of a run) is glued to the end of the piece before it.
      bool previous_match = false;
      const size_t first = out.size();
      for (const Segment& s : segs) {
        if (s.is_match && !previous_match && out.size() > first) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end});
        }
        previous_match = s.is_match;
      }
      return;
    }
    case SplitBehavior::MergedWithNext: {
      // Mirror image: walk backwards, gluing a match to the start of the piece after it.
      bool previous_match = false;
      std::vector<Match> rev;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !previous_match && !rev.empty()) {
          rev.back().begin = it->begin;
        } else {
          rev.push_back({it->begin, it->end});
        }
        previous_match = it->is_match;
      }
      out.insert(out.end(), rev.rbegin(), rev.rend());
      return;
    }
  }
}

void find_segments(const Regex& re, std::string_view text, std::vector<Segment>& out) {
  thread_local std::vector<Match> matches;
  matches.clear();
  re.find_all(text, matches);
  size_t prev = 0;
  for (const Match& m : matches) {
    if (prev != m.begin) out.push_back({prev, m.begin, false});
    out.push_back({m.begin, m.end, true});
    prev = m.end;
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
}

void find_literal_segments(std::string_view needle, std::string_view text, std::vector<Segment>& out) {
  if (needle.empty()) {
    out.push_back({0, text.size(), false});
    return;
  }
  size_t prev = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, prev)) {
    if (prev != at) out.push_back({prev, at, false});
    out.push_back({at, at + needle.size(), true});
    prev = at + needle.size();
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
}

}  // namespace m3::tok
