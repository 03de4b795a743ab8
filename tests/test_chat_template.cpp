// The Jinja interpreter against Python's jinja2: every template under tests/data/chat_template
// (chat templates in the style of the major model families, plus one exercising each supported
// construct), rendered on each conversation of expected.json, must give jinja2's text exactly, or
// fail with the message the template raised. Built by scripts/gen_chat_template_testdata.py.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "m3/error.h"
#include "serve/jinja.h"

namespace m3::serve {
namespace {

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const std::string kDir = std::string(M3_TESTDATA_DIR) + "/chat_template/";

TEST(ChatTemplate, EqualsJinja2OnEveryTemplateAndConversation) {
  const nlohmann::ordered_json expected = nlohmann::ordered_json::parse(read(kDir + "expected.json"));
  ASSERT_GE(expected["results"].size(), 9u);
  for (const auto& [name, results] : expected["results"].items()) {
    std::unique_ptr<jinja::Template> t;
    try {
      t = std::make_unique<jinja::Template>(read(kDir + name + ".jinja"));
    } catch (const Error& e) {
      ADD_FAILURE() << name << ": " << e.what();
      continue;
    }
    for (const auto& c : expected["cases"]) {
      nlohmann::ordered_json context = {{"messages", c["messages"]}, {"bos_token", "<s>"}, {"eos_token", "</s>"},
                                {"add_generation_prompt", true}};
      if (c.contains("extra")) context.update(c["extra"]);
      const nlohmann::ordered_json& want = results[c["name"].get<std::string>()];
      const std::string where = name + " / " + c["name"].get<std::string>();
      try {
        const std::string got = t->render(context);
        if (want.contains("error"))
          ADD_FAILURE() << where << ": jinja2 failed with '" << want["error"] << "', we rendered:\n" << got;
        else
          EXPECT_EQ(got, want["text"].get<std::string>()) << where;
      } catch (const Error& e) {
        if (want.contains("error"))
          EXPECT_EQ(std::string(e.what()), want["error"].get<std::string>()) << where;
        else
          ADD_FAILURE() << where << ": " << e.what();
      }
    }
  }
}

TEST(ChatTemplate, BadTemplatesAreErrorsNotCrashes) {
  for (const char* src : {"{% if x %}never closed", "{{ 1 + }}", "{% for %}{% endfor %}", "{{ 'open }}", "{% frobnicate %}",
                          "{{ x | nosuchfilter }}", "{{ nosuchfunction() }}", "{{ (1 }}", "{% endif %}", "{{ [1,2][ }}",
                          "{{ 1 // 0 }}", "{{ {'a': 1} < 2 }}", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"}) {
    try {
      jinja::Template t(src);
      t.render(nlohmann::ordered_json{{"x", 1}});
      ADD_FAILURE() << "no error for: " << src;
    } catch (const Error& e) {
      EXPECT_FALSE(std::string(e.what()).empty()) << src;
    }
  }
}

// Deep nesting is refused with an error before it can exhaust the stack.
TEST(ChatTemplate, DeepNestingIsAnError) {
  for (const std::string& src : {"{{ " + std::string(20000, '(') + "1" + std::string(20000, ')') + " }}",
                                 "{{ " + std::string(20000, '-') + "1 }}",
                                 "{{ " + std::string(20000, '[') + std::string(20000, ']') + " }}",
                                 [] {
                                   std::string s;
                                   for (int i = 0; i < 20000; ++i) s += "{% if true %}";
                                   return s;
                                 }()}) {
    try {
      jinja::Template t(src);
      ADD_FAILURE() << "no error for a template of " << src.size() << " bytes";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("nest"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(jinja::Template("{{ ((((1)))) + -(-2) }}").render(nlohmann::ordered_json::object()), "3");
}

// Found by fuzz/fuzz_chat_template: `float` on text that is no number threw std::invalid_argument
// out of the renderer; jinja2 gives the default (0.0) instead.
TEST(ChatTemplate, FloatFilterOfNonNumberGivesItsDefault) {
  const nlohmann::ordered_json none = nlohmann::ordered_json::object();
  EXPECT_EQ(jinja::Template("{{ 'abc' | float }}").render(none), "0.0");
  EXPECT_EQ(jinja::Template("{{ 'abc' | float(2.5) }}").render(none), "2.5");
  EXPECT_EQ(jinja::Template("{{ '1.5' | float }}").render(none), "1.5");
}

}  // namespace
}  // namespace m3::serve
