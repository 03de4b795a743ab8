// Jinja template text to nodes (jinja_ast.h): the text is cut into text, {{ }}, {% %} and {# #}
// segments with whitespace control as Hugging Face configures it (trim_blocks, lstrip_blocks,
// and the '-' / '+' markers), each tag's inside is tokenised, and a recursive-descent parser
// follows Jinja's own precedence (jinja2/parser.py): conditional < or < and < not < comparisons
// < ~ < + - < * / // % < ** < unary minus < postfix (. [] ()) and filters / tests.
#include <cctype>
#include <set>

#include "m3/error.h"
#include "serve/jinja_ast.h"
#include "serve/jinja_python.h"

namespace m3::serve::jinja {

namespace {

struct Segment {
  enum class Kind { Text, Output, Statement, Comment } kind;
  std::string text;
  int line;
  bool strip_before = false, strip_after = false;  // '-' markers
  bool keep_before = false, keep_after = false;    // '+' markers
};

// Line numbers for messages, counted incrementally as the scan moves forward.
struct LineCounter {
  std::string_view src;
  size_t at = 0;
  int line = 1;
  int operator()(size_t pos) {
    for (; at < pos && at < src.size(); ++at) line += src[at] == '\n';
    return line;
  }
};

std::vector<Segment> segments(std::string_view src) {
  std::vector<Segment> out;
  LineCounter line_at{src};
  size_t pos = 0;
  while (pos < src.size()) {
    size_t open = std::string_view::npos;
    for (size_t i = src.find('{', pos); i != std::string_view::npos && i + 1 < src.size(); i = src.find('{', i + 1))
      if (src[i + 1] == '{' || src[i + 1] == '%' || src[i + 1] == '#') {
        open = i;
        break;
      }
    if (open == std::string_view::npos) {
      out.push_back({Segment::Kind::Text, std::string(src.substr(pos)), line_at(pos)});
      break;
    }
    if (open > pos) out.push_back({Segment::Kind::Text, std::string(src.substr(pos, open - pos)), line_at(pos)});
    const char t = src[open + 1];
    Segment s{t == '{' ? Segment::Kind::Output : t == '%' ? Segment::Kind::Statement : Segment::Kind::Comment, "",
              line_at(open)};
    size_t i = open + 2;
    if (i < src.size() && (src[i] == '-' || src[i] == '+')) {
      (src[i] == '-' ? s.strip_before : s.keep_before) = true;
      ++i;
    }
    const char close = t == '{' ? '}' : t;
    // The closing marker, outside string literals and brackets (`{{ {'a': {'b': 1}} }}`), as
    // Jinja's lexer balances them; comments have neither.
    size_t end = std::string_view::npos;
    char quote = 0;
    int depth = 0;
    for (size_t k = i; k + 1 < src.size(); ++k) {
      const char c = src[k];
      if (quote) {
        if (c == '\\') ++k;
        else if (c == quote) quote = 0;
        continue;
      }
      if (t != '#' && (c == '\'' || c == '"')) quote = c;
      else if (t != '#' && (c == '(' || c == '[' || c == '{')) ++depth;
      else if (t != '#' && depth > 0 && (c == ')' || c == ']' || c == '}')) --depth;
      else if (c == close && src[k + 1] == '}') {
        end = k;
        break;
      }
    }
    if (end == std::string_view::npos) throw Error("line " + std::to_string(s.line) + ": unclosed tag");
    size_t inner_end = end;
    if (inner_end > i && (src[inner_end - 1] == '-' || src[inner_end - 1] == '+')) {
      (src[inner_end - 1] == '-' ? s.strip_after : s.keep_after) = true;
      --inner_end;
    }
    s.text = std::string(src.substr(i, inner_end - i));
    out.push_back(std::move(s));
    pos = end + 2;
  }
  // Whitespace control on the text around each tag.
  for (size_t k = 0; k < out.size(); ++k) {
    Segment& s = out[k];
    if (s.kind != Segment::Kind::Text) continue;
    const Segment* prev = k > 0 ? &out[k - 1] : nullptr;
    const Segment* next = k + 1 < out.size() ? &out[k + 1] : nullptr;
    auto block = [](const Segment* g) { return g && (g->kind == Segment::Kind::Statement || g->kind == Segment::Kind::Comment); };
    if (next && next->strip_before) {
      while (!s.text.empty() && is_space(s.text.back())) s.text.pop_back();
    } else if (block(next) && !next->keep_before) {  // lstrip_blocks
      const size_t nl = s.text.find_last_of('\n');
      const size_t from = nl == std::string::npos ? 0 : nl + 1;
      if ((nl != std::string::npos || k == 0) && s.text.find_first_not_of(" \t", from) == std::string::npos)
        s.text.erase(from);
    }
    if (prev && prev->strip_after) {
      size_t n = 0;
      while (n < s.text.size() && is_space(s.text[n])) ++n;
      s.text.erase(0, n);
    } else if (block(prev) && !prev->keep_after) {  // trim_blocks
      if (s.text.starts_with("\r\n")) s.text.erase(0, 2);
      else if (s.text.starts_with("\n")) s.text.erase(0, 1);
    }
  }
  return out;
}

struct Token {
  enum class Kind { Name, String, Int, Float, Op, End } kind;
  std::string text;
  Value value;
};

std::vector<Token> tokenize(const std::string& s, int line) {
  std::vector<Token> out;
  auto fail = [&](const std::string& m) -> void { throw Error("line " + std::to_string(line) + ": " + m); };
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (is_space(c)) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Token::Kind::Name, s.substr(i, j - i), {}});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      bool real = false;
      if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
        real = true;
        ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      }
      if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
        real = true;
        ++j;
        if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      }
      std::string digits;
      for (size_t k = i; k < j; ++k)
        if (s[k] != '_') digits += s[k];
      try {
        out.push_back({real ? Token::Kind::Float : Token::Kind::Int, digits,
                       real ? Value::real(std::stod(digits)) : Value::integer(std::stoll(digits))});
      } catch (const std::exception&) {
        fail("bad number " + digits);
      }
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] != '\\' || j + 1 >= s.size()) {
          v += s[j];
          continue;
        }
        const char e = s[++j];
        switch (e) {
          case 'n': v += '\n'; break;
          case 't': v += '\t'; break;
          case 'r': v += '\r'; break;
          case '\\': v += '\\'; break;
          case '\'': v += '\''; break;
          case '"': v += '"'; break;
          case '\n': break;
          default: v += '\\'; v += e;
        }
      }
      if (j >= s.size()) fail("unterminated string");
      out.push_back({Token::Kind::String, v, Value::string(v)});
      i = j + 1;
    } else {
      static const char* const ops[] = {"//", "**", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",", ".",
                                        ":", "|", "~", "+", "-", "*", "/", "%", "=", "<", ">"};
      bool found = false;
      for (const char* op : ops)
        if (s.compare(i, std::char_traits<char>::length(op), op) == 0) {
          out.push_back({Token::Kind::Op, op, {}});
          i += std::char_traits<char>::length(op);
          found = true;
          break;
        }
      if (!found) fail(std::string("unexpected character '") + c + "'");
    }
  }
  out.push_back({Token::Kind::End, "", {}});
  return out;
}

// Nesting deeper than this (brackets, unary operators, blocks) is an error rather than a stack
// overflow; real templates nest a handful of levels.
constexpr int kMaxNesting = 200;

struct Nesting {
  explicit Nesting(int& depth, int line) : depth_(depth) {
    if (++depth_ > kMaxNesting) {
      --depth_;
      throw Error("line " + std::to_string(line) + ": the template nests deeper than " + std::to_string(kMaxNesting) + " levels");
    }
  }
  ~Nesting() { --depth_; }
  Nesting(const Nesting&) = delete;
  Nesting& operator=(const Nesting&) = delete;

 private:
  int& depth_;
};

NodePtr make(Node::Kind k, std::vector<NodePtr> a = {}, std::string op = "") {
  auto n = std::make_shared<Node>();
  n->kind = k;
  n->a = std::move(a);
  n->op = std::move(op);
  return n;
}

class ExprParser {
 public:
  ExprParser(const std::string& text, int line) : t_(tokenize(text, line)), line_(line) {}

  [[noreturn]] void fail(const std::string& m) const { throw Error("line " + std::to_string(line_) + ": " + m); }
  const Token& peek(size_t k = 0) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  bool at_end() const { return peek().kind == Token::Kind::End; }
  bool is_op(const char* op, size_t k = 0) const { return peek(k).kind == Token::Kind::Op && peek(k).text == op; }
  bool is_name(const char* n, size_t k = 0) const { return peek(k).kind == Token::Kind::Name && peek(k).text == n; }
  bool accept_op(const char* op) { return is_op(op) ? (++p_, true) : false; }
  bool accept_name(const char* n) { return is_name(n) ? (++p_, true) : false; }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail(std::string("expected '") + op + "', found '" + peek().text + "'");
  }
  std::string name() {
    if (peek().kind != Token::Kind::Name) fail("expected a name, found '" + peek().text + "'");
    return t_[p_++].text;
  }
  void expect_end() {
    if (!at_end()) fail("unexpected '" + peek().text + "'");
  }

  // A tuple without brackets where Jinja allows one (`for a, b in`, `set a = 1, 2`).
  NodePtr tuple(bool with_cond = true) {
    NodePtr first = expr(with_cond);
    if (!is_op(",")) return first;
    std::vector<NodePtr> items{first};
    while (accept_op(",")) {
      if (at_end() || is_op(")")) break;
      items.push_back(expr(with_cond));
    }
    return make(Node::Kind::ListLit, std::move(items));
  }

  NodePtr expr(bool with_cond = true) {
    Nesting nest(depth_, line_);
    NodePtr e = or_expr();
    if (!with_cond) return e;
    while (accept_name("if")) {
      NodePtr cond = or_expr();
      NodePtr other = accept_name("else") ? expr() : nullptr;
      e = make(Node::Kind::Cond, {cond, e, other});
    }
    return e;
  }

 private:
  NodePtr or_expr() {
    NodePtr e = and_expr();
    while (accept_name("or")) e = make(Node::Kind::Binary, {e, and_expr()}, "or");
    return e;
  }
  NodePtr and_expr() {
    NodePtr e = not_expr();
    while (accept_name("and")) e = make(Node::Kind::Binary, {e, not_expr()}, "and");
    return e;
  }
  NodePtr not_expr() {
    Nesting nest(depth_, line_);
    if (accept_name("not")) return make(Node::Kind::Unary, {not_expr()}, "not");
    return compare();
  }
  NodePtr compare() {
    NodePtr e = concat();
    for (;;) {
      std::string op;
      for (const char* o : {"==", "!=", "<", ">", "<=", ">="})
        if (is_op(o)) op = o;
      if (!op.empty()) {
        ++p_;
      } else if (is_name("in")) {
        ++p_;
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        p_ += 2;
        op = "not in";
      } else {
        return e;
      }
      e = make(Node::Kind::Binary, {e, concat()}, op);
    }
  }
  NodePtr concat() {
    NodePtr e = math1();
    while (accept_op("~")) e = make(Node::Kind::Binary, {e, math1()}, "~");
    return e;
  }
  NodePtr math1() {
    NodePtr e = math2();
    for (;;) {
      if (accept_op("+")) e = make(Node::Kind::Binary, {e, math2()}, "+");
      else if (accept_op("-")) e = make(Node::Kind::Binary, {e, math2()}, "-");
      else return e;
    }
  }
  NodePtr math2() {
    NodePtr e = power();
    for (;;) {
      std::string op;
      for (const char* o : {"*", "/", "//", "%"})
        if (is_op(o)) op = o;
      if (op.empty()) return e;
      ++p_;
      e = make(Node::Kind::Binary, {e, power()}, op);
    }
  }
  NodePtr power() {
    NodePtr e = unary(true);
    while (accept_op("**")) e = make(Node::Kind::Binary, {e, unary(true)}, "**");
    return e;
  }
  NodePtr unary(bool with_filter) {
    Nesting nest(depth_, line_);
    if (accept_op("-")) return filters(make(Node::Kind::Unary, {unary(false)}, "-"), with_filter);
    if (accept_op("+")) return filters(make(Node::Kind::Unary, {unary(false)}, "+"), with_filter);
    return filters(postfix(primary()), with_filter);
  }
  NodePtr filters(NodePtr e, bool with_filter) {
    if (!with_filter) return e;
    for (;;) {
      if (accept_op("|")) {
        auto f = make(Node::Kind::Filter, {e});
        auto* fm = const_cast<Node*>(f.get());
        fm->name = name();
        while (accept_op(".")) fm->name += "." + name();
        if (accept_op("(")) call_args(*fm);
        e = postfix(f);
      } else if (accept_name("is")) {
        auto t = make(Node::Kind::Test, {e});
        auto* tm = const_cast<Node*>(t.get());
        tm->negate = accept_name("not");
        tm->name = name();
        if (accept_op("(")) {
          call_args(*tm);
        } else if (peek().kind == Token::Kind::String || peek().kind == Token::Kind::Int ||
                   peek().kind == Token::Kind::Float ||
                   (peek().kind == Token::Kind::Name && !is_name("and") && !is_name("or") && !is_name("else") &&
                    !is_name("if") && !is_name("in") && !is_name("not") && !is_name("is"))) {
          tm->a.push_back(postfix(primary()));  // `is divisibleby 3`, `is sameas none`
        }
        e = t;
      } else {
        return e;
      }
    }
  }
  // Arguments after '(' up to ')': positional then name=value.
  void call_args(Node& n) {
    for (size_t count = 0; !accept_op(")"); ++count) {
      if (count > 0) expect_op(",");
      if (accept_op(")")) break;
      if (peek().kind == Token::Kind::Name && is_op("=", 1)) {
        n.names.push_back(name());
        ++p_;
        n.a.push_back(expr());
      } else {
        if (!n.names.empty()) fail("a positional argument after a keyword argument");
        n.a.push_back(expr());
      }
    }
  }
  NodePtr postfix(NodePtr e) {
    for (;;) {
      if (accept_op(".")) {
        auto n = make(Node::Kind::Attr, {e});
        const_cast<Node*>(n.get())->name = peek().kind == Token::Kind::Int ? t_[p_++].text : name();
        e = n;
      } else if (accept_op("[")) {
        NodePtr parts[3] = {nullptr, nullptr, nullptr};
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!is_op(":") && !is_op("]")) parts[k] = expr();
          if (k < 2 && accept_op(":")) {
            slice = true;
            continue;
          }
          break;
        }
        expect_op("]");
        e = slice ? make(Node::Kind::Slice, {e, parts[0], parts[1], parts[2]}) : make(Node::Kind::Index, {e, parts[0]});
        if (!slice && !parts[0]) fail("empty subscript");
      } else if (accept_op("(")) {
        auto c = make(Node::Kind::Call, {e});
        call_args(*const_cast<Node*>(c.get()));
        e = c;
      } else {
        return e;
      }
    }
  }
  NodePtr primary() {
    const Token& t = peek();
    if (t.kind == Token::Kind::String || t.kind == Token::Kind::Int || t.kind == Token::Kind::Float) {
      ++p_;
      auto n = make(Node::Kind::Literal);
      Value v = t.value;
      // Adjacent string literals concatenate, as in Python.
      while (t.kind == Token::Kind::String && peek().kind == Token::Kind::String) v.s += t_[p_++].text;
      const_cast<Node*>(n.get())->value = v;
      return n;
    }
    if (t.kind == Token::Kind::Name) {
      const std::string w = t_[p_++].text;
      auto n = make(Node::Kind::Literal);
      Node* m = const_cast<Node*>(n.get());
      if (w == "true" || w == "True") m->value = Value::boolean(true);
      else if (w == "false" || w == "False") m->value = Value::boolean(false);
      else if (w == "none" || w == "None") m->value = Value::none();
      else {
        m->kind = Node::Kind::Name;
        m->name = w;
      }
      return n;
    }
    if (accept_op("(")) {
      if (accept_op(")")) return make(Node::Kind::ListLit);
      NodePtr e = tuple();
      expect_op(")");
      return e;
    }
    if (accept_op("[")) {
      std::vector<NodePtr> items;
      while (!accept_op("]")) {
        if (!items.empty()) expect_op(",");
        if (accept_op("]")) break;
        items.push_back(expr());
      }
      return make(Node::Kind::ListLit, std::move(items));
    }
    if (accept_op("{")) {
      std::vector<NodePtr> kv;
      while (!accept_op("}")) {
        if (!kv.empty()) expect_op(",");
        if (accept_op("}")) break;
        kv.push_back(expr());
        expect_op(":");
        kv.push_back(expr());
      }
      return make(Node::Kind::DictLit, std::move(kv));
    }
    fail("unexpected '" + t.text + "'");
  }

  std::vector<Token> t_;
  size_t p_ = 0;
  int line_;
  int depth_ = 0;
};

class TemplateParser {
 public:
  explicit TemplateParser(std::vector<Segment> s) : s_(std::move(s)) {}

  NodePtr parse() {
    std::string end;
    NodePtr body = block({}, end);
    return body;
  }

 private:
  // Statements until one whose keyword is in `ends` (returned in `end`, its parser left in ep_).
  NodePtr block(const std::set<std::string>& ends, std::string& end) {
    auto body = make(Node::Kind::Body);
    Node* b = const_cast<Node*>(body.get());
    while (k_ < s_.size()) {
      const Segment& s = s_[k_++];
      if (s.kind == Segment::Kind::Comment) continue;
      if (s.kind == Segment::Kind::Text) {
        if (s.text.empty()) continue;
        auto t = make(Node::Kind::Text);
        const_cast<Node*>(t.get())->name = s.text;
        b->a.push_back(t);
        continue;
      }
      auto ep = std::make_unique<ExprParser>(s.text, s.line);
      if (s.kind == Segment::Kind::Output) {
        auto o = make(Node::Kind::Output, {ep->tuple()});
        ep->expect_end();
        b->a.push_back(o);
        continue;
      }
      const std::string kw = ep->name();
      if (ends.count(kw)) {
        end = kw;
        ep_ = std::move(ep);
        return body;
      }
      b->a.push_back(statement(kw, *ep, s.line));
    }
    if (!ends.empty()) throw Error("the template ends inside a block (expected " + *ends.begin() + ")");
    return body;
  }

  NodePtr statement(const std::string& kw, ExprParser& ep, int line) {
    Nesting nest(depth_, line);
    std::string end;
    if (kw == "if") {
      auto n = make(Node::Kind::If);
      Node* m = const_cast<Node*>(n.get());
      NodePtr cond = ep.tuple();
      ep.expect_end();
      for (;;) {
        NodePtr body = block({"elif", "else", "endif"}, end);
        m->a.push_back(cond);
        m->a.push_back(body);
        if (end == "elif") {
          cond = ep_->tuple();
          ep_->expect_end();
          continue;
        }
        if (end == "else") {
          ep_->expect_end();
          m->a.push_back(block({"endif"}, end));
        }
        ep_->expect_end();
        return n;
      }
    }
    if (kw == "for") {
      auto n = make(Node::Kind::For);
      Node* m = const_cast<Node*>(n.get());
      do m->names.push_back(ep.name());
      while (ep.accept_op(","));
      if (!ep.accept_name("in")) ep.fail("expected 'in' in a for loop");
      NodePtr iter = ep.tuple(false);
      NodePtr filter = ep.accept_name("if") ? ep.expr(false) : nullptr;
      if (ep.accept_name("recursive")) ep.fail("recursive loops are not supported");
      ep.expect_end();
      NodePtr body = block({"else", "endfor"}, end);
      NodePtr other;
      if (end == "else") {
        ep_->expect_end();
        other = block({"endfor"}, end);
      }
      ep_->expect_end();
      m->a = {iter, body, filter, other};
      return n;
    }
    if (kw == "set") {
      auto n = make(Node::Kind::Set);
      Node* m = const_cast<Node*>(n.get());
      m->names.push_back(ep.name());
      if (ep.accept_op(".")) m->names.push_back(ep.name());
      if (ep.is_op(",")) ep.fail("unpacking in set is not supported");
      if (ep.accept_op("=")) {
        m->a.push_back(ep.tuple());
        ep.expect_end();
        return n;
      }
      ep.expect_end();
      m->a.push_back(nullptr);
      m->a.push_back(block({"endset"}, end));
      ep_->expect_end();
      return n;
    }
    if (kw == "macro") {
      auto n = make(Node::Kind::Macro);
      Node* m = const_cast<Node*>(n.get());
      m->name = ep.name();
      ep.expect_op("(");
      std::vector<NodePtr> defaults;
      while (!ep.accept_op(")")) {
        if (!m->names.empty()) ep.expect_op(",");
        if (ep.accept_op(")")) break;
        m->names.push_back(ep.name());
        if (ep.accept_op("=")) defaults.push_back(ep.expr());
        else if (!defaults.empty()) ep.fail("a macro parameter without a default after one with");
      }
      ep.expect_end();
      m->a.push_back(block({"endmacro"}, end));
      ep_->expect_end();
      for (auto& d : defaults) m->a.push_back(d);
      return n;
    }
    if (kw == "generation") {  // Hugging Face's assistant-mask marker: only its body renders
      ep.expect_end();
      NodePtr body = block({"endgeneration"}, end);
      ep_->expect_end();
      return body;
    }
    if (kw == "break" || kw == "continue") {
      ep.expect_end();
      return make(kw == "break" ? Node::Kind::Break : Node::Kind::Continue);
    }
    throw Error("line " + std::to_string(line) + ": unsupported or misplaced statement '" + kw + "'");
  }

  std::vector<Segment> s_;
  size_t k_ = 0;
  std::unique_ptr<ExprParser> ep_;  // the parser of the tag that ended the last block
  int depth_ = 0;
};

}  // namespace

NodePtr parse_template(std::string_view source) { return TemplateParser(segments(source)).parse(); }

}  // namespace m3::serve::jinja
