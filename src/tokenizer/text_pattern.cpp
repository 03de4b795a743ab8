#include "tokenizer/text_pattern.h"

#include "m3/error.h"

namespace m3::tok {

TextPattern TextPattern::from_json(const Json& j, const std::string& where) {
  check(j.is_object() && j.size() == 1,
        where + ": expected {\"String\": ...} or {\"Regex\": ...}, found " + j.dump());
  TextPattern p;
  if (j.contains("String")) {
    p.literal_ = require_string(j, "String", where);
  } else if (j.contains("Regex")) {
    p.regex_.emplace(require_string(j, "Regex", where));
  } else {
    throw Error(where + ": expected {\"String\": ...} or {\"Regex\": ...}, found " + j.dump());
  }
  return p;
}

void TextPattern::find(std::string_view text, std::vector<Segment>& out) const {
  if (regex_) {
    find_segments(*regex_, text, out);
  } else {
    find_literal_segments(literal_, text, out);
  }
}

void TextPattern::replace_all(std::string_view text, std::string_view content, std::string& out) const {
  thread_local std::vector<Segment> segs;
  segs.clear();
  find(text, segs);
  for (const Segment& s : segs) {
    if (s.is_match) {
      out.append(content);
    } else {
      out.append(text.substr(s.begin, s.end - s.begin));
    }
  }
}

}  // namespace m3::tok
