// Chat prompts through the model's chat template (tokenizer_config.json's `chat_template`, a
// Jinja2 template): the subset of Jinja that real chat templates use, interpreted here since
// Debian packages no C++ Jinja engine (see jinja.h for what is covered).
#pragma once
#include <string>
#include <vector>

#include "m3/tokenizer.h"
#include "serve/request.h"

namespace m3::serve {

// The prompt text for `messages` with add_generation_prompt = true and the tokenizer's
// bos_token / eos_token; an m3::Error when the template fails or calls raise_exception.
std::string render_chat(const std::string& chat_template, const std::vector<ChatMessage>& messages,
                        const Tokenizer& tokenizer);

}  // namespace m3::serve
