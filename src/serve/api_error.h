// An error answered to an API client: an HTTP status and OpenAI's error body
// {"error": {"message", "type", "param", "code"}}.
#pragma once
#include <string>

namespace m3::serve {

struct ApiError {
  int status = 400;
  std::string message;
  std::string param;  // the request field at fault; empty when none
  std::string code;   // OpenAI's machine-readable code (e.g. "model_not_found"); empty when none

  // OpenAI's `type` for the status: invalid_request_error, authentication_error, ...
  std::string type() const;
  std::string body() const;  // the JSON text
};

inline ApiError bad_request(std::string message, std::string param = "") {
  return ApiError{400, std::move(message), std::move(param), ""};
}

}  // namespace m3::serve
