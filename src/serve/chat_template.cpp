#include "serve/chat_template.h"

#include "m3/error.h"

namespace m3::serve {

std::string render_chat(const std::string& chat_template, const std::vector<ChatMessage>& messages,
                        const Tokenizer& tokenizer) {
  throw Error("chat templates are not supported yet");
}

}  // namespace m3::serve
