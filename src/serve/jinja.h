// A Jinja2 interpreter for chat templates: the subset that real chat templates use, under the
// settings Hugging Face renders them with (trim_blocks, lstrip_blocks, loop controls, tojson as
// json.dumps, raise_exception). Statements: if/elif/else, for (loop variables, `if` filter,
// else, break/continue, unpacking), set (names, namespace attributes, blocks), macro, and
// generation blocks (rendered as their body). Expressions: literals, lists, dicts, attribute and
// item access, slices, calls, filters, tests (`is`), arithmetic, `~`, comparisons, in, and/or/not,
// conditional expressions; Python string and dict methods templates call. Anything else is an
// m3::Error naming it, never a silent wrong answer.
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace m3::serve::jinja {

struct Node;

class Template {
 public:
  explicit Template(std::string_view source);  // parses; m3::Error with the line on bad syntax
  ~Template();
  Template(Template&&) noexcept;
  // Renders with the context's keys as variables (messages, bos_token, add_generation_prompt...);
  // objects keep their key order, as Python dicts do (tojson writes them in it).
  std::string render(const nlohmann::ordered_json& context) const;

 private:
  std::shared_ptr<const Node> root_;
};

}  // namespace m3::serve::jinja
