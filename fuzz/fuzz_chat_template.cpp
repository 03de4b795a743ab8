// libFuzzer harness: a chat template as `m3 serve` finds it in tokenizer_config.json, parsed and
// rendered over a fixed conversation (the context render_chat builds). Bad templates must end in
// m3::Error; a crash, hang or runaway memory is a finding.
#include <cstdint>
#include <string_view>

#include "fuzz_input.h"
#include "serve/jinja.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  m3::fuzz::expect_only_m3_errors([&] {
    const m3::serve::jinja::Template t(source);
    nlohmann::ordered_json ctx = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"add_generation_prompt", true}};
    ctx["messages"] = nlohmann::ordered_json::array(
        {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi {{ x }}"}},
         {{"role", "assistant"}, {"content", "Hello."}}, {{"role", "user"}, {"content", "Again"}}});
    (void)t.render(ctx);
  });
  return 0;
}
