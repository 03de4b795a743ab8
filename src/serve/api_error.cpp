#include "serve/api_error.h"

#include <nlohmann/json.hpp>

namespace m3::serve {

std::string ApiError::type() const {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 500: return "server_error";
    case 503: return "service_unavailable";
    default: return "invalid_request_error";
  }
}

std::string ApiError::body() const {
  nlohmann::json e = {{"message", message},
                      {"type", type()},
                      {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
                      {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code)}};
  // Replacement of invalid UTF-8 (a message may quote client bytes) instead of an exception.
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace m3::serve
