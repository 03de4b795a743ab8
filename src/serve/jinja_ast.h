// The parsed form of a Jinja template (jinja.h): one node type for expressions and statements.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "serve/jinja_value.h"

namespace m3::serve::jinja {

struct Node;
using NodePtr = std::shared_ptr<const Node>;

struct Node {
  enum class Kind {
    // expressions
    Literal,    // value
    Name,       // name
    Attr,       // a[0].name
    Index,      // a[0][a[1]]
    Slice,      // a[0][a[1]:a[2]:a[3]] (null parts omitted)
    Call,       // a[0](a[1..]) with kwargs named in `names` for the last names.size() args
    Filter,     // a[0] | name(a[1..]), kwargs as for Call
    Test,       // a[0] is [not] name(a[1..]); negate
    Unary,      // op a[0]: "-", "+", "not"
    Binary,     // a[0] op a[1]
    Cond,       // a[1] if a[0] else a[2] (a[2] may be null)
    ListLit,    // [a...]
    DictLit,    // {a[0]: a[1], ...}
    // statements
    Body,       // a... in order
    Text,       // name = the text
    Output,     // {{ a[0] }}
    If,         // a = cond, body, cond, body, ..., [else body]
    For,        // names = targets; a[0] iter, a[1] body, a[2] filter (or null), a[3] else (or null)
    Set,        // names = [target] or [ns, attr]; a[0] value (or, for a block set, a[1] body)
    Macro,      // name; names = params; a[0] body; a[1..] defaults for the last params
    Break,
    Continue,
  };
  Kind kind;
  std::string name, op;
  Value value;
  std::vector<std::string> names;
  std::vector<NodePtr> a;
  bool negate = false;
  int line = 0;
};

// Parses a template into a Body node; m3::Error with the line on bad syntax.
NodePtr parse_template(std::string_view source);

struct Macro {
  NodePtr node;
};

}  // namespace m3::serve::jinja
