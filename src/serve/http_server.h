// HttpServer: the HTTP front end of `kvarn serve` (cpp-httplib). Routes:
//   POST /v1/chat/completions, /v1/completions (also without /v1): OpenAI's, streaming or not
//   GET  /v1/models, /health, /metrics (Prometheus text)
//   POST /tokenize {"content", "add_special"} -> {"tokens"}, /detokenize {"tokens"} -> {"content"}
// Every 4xx/5xx carries an OpenAI error object, including the library's own (unknown route 404,
// oversized body 413, unparsable HTTP 400). Handlers validate, submit to the Engine and relay
// its events; a client that disconnects (found by PeerWatch, or a failed write) cancels its job.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "common/status.h"
#include "serve/engine.h"
#include "serve/request.h"

namespace kvarn::serve {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (Bind reports it)
  size_t max_body_bytes = 1 << 20;  // larger bodies get 413
  int threads = 48;                 // connections served at once
  std::string cache_type;           // for /metrics and system_fingerprint
  RequestLimits limits;             // model id, context, default max_tokens, stop limits
  int64_t created = 0;              // /v1/models "created"
};

class HttpServer {
 public:
  HttpServer(Engine& engine, const Tokenizer& tokenizer, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; *port is the bound port.
  Status Bind(int* port);
  // Serves until Stop() (from another thread or a signal handler thread).
  Status Serve();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvarn::serve
