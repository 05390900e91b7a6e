// ApiError: an HTTP status with an OpenAI-style error object
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// naming the request field at fault (param) where there is one.
#pragma once

#include <string>

namespace kvarn::serve {

struct ApiError {
  int status = 400;
  std::string type = "invalid_request_error";
  std::string param;  // the field at fault; "" -> null
  std::string code;   // e.g. "model_not_found", "rate_limit_exceeded"; "" -> null
  std::string message;
};

inline ApiError BadRequest(std::string param, std::string message) {
  return ApiError{400, "invalid_request_error", std::move(param), "", std::move(message)};
}

}  // namespace kvarn::serve
