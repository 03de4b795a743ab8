#include "serve/chat_template.h"

#include "m3/error.h"
#include "serve/jinja.h"

namespace m3::serve {

std::string render_chat(const std::string& chat_template, const std::vector<ChatMessage>& messages,
                        const Tokenizer& tokenizer) {
  nlohmann::ordered_json ms = nlohmann::ordered_json::array();
  for (const auto& m : messages) ms.push_back({{"role", m.role}, {"content", m.content}});
  auto token = [&](std::optional<int32_t> id) {
    std::optional<std::string> t = id ? tokenizer.id_to_token(*id) : std::nullopt;
    return t ? *t : std::string();
  };
  const nlohmann::ordered_json context = {{"messages", ms},
                                  {"add_generation_prompt", true},
                                  {"bos_token", token(tokenizer.bos_id())},
                                  {"eos_token", token(tokenizer.eos_id())}};
  return jinja::Template(chat_template).render(context);
}

}  // namespace m3::serve
