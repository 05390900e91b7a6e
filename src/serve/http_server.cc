#include "serve/http_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>

#include "serve/connection.h"
#include "serve/openai_format.h"

namespace kvarn::serve {
namespace {

using json = nlohmann::json;
constexpr auto kPoll = std::chrono::milliseconds(50);

void SendError(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(Dump(ErrorJson(e)), "application/json");
}

void SendJson(httplib::Response& res, const json& j) {
  res.status = 200;
  res.set_content(Dump(j), "application/json");
}

// Routes as /metrics labels them: the known ones, everything else as "other".
std::string RouteLabel(const std::string& path) {
  for (const char* r :
       {"/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions",
        "/v1/models", "/models", "/health", "/metrics", "/tokenize", "/detokenize"})
    if (path == r) return path;
  return "other";
}

// What a streaming response has sent so far.
struct StreamState {
  std::shared_ptr<Job> job;
  ResponseMeta meta;
  PeerWatch watch;
  bool started = false;
  bool include_usage = false;
  bool logprobs = false;
  size_t text_offset = 0;
};

}  // namespace

struct HttpServer::Impl {
  Impl(Engine& e, const Tokenizer& t, HttpOptions o) : engine(e), tok(t), opt(std::move(o)) {}
  Engine& engine;
  const Tokenizer& tok;
  HttpOptions opt;
  httplib::Server svr;
  std::atomic<uint64_t> next_id{1};
  std::mutex counts_mu;
  HttpCounts counts;

  std::string Fingerprint() const { return "kvarn-0.1.0-" + opt.cache_type; }

  void Completion(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  void Install();
};

void HttpServer::Impl::Completion(const httplib::Request& req, httplib::Response& res,
                                  Endpoint endpoint) {
  CompletionRequest rq;
  if (auto e = ParseCompletionRequest(req.body, endpoint, tok, opt.limits, &rq))
    return SendError(res, *e);
  const bool stream = rq.stream, include_usage = rq.include_usage, logprobs = rq.logprobs;
  auto job = std::make_shared<Job>(std::move(rq));
  if (auto e = engine.Submit(job)) return SendError(res, *e);

  ResponseMeta meta;
  meta.endpoint = endpoint;
  meta.id = std::string(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-") +
            std::to_string(next_id.fetch_add(1));
  meta.created = int64_t(std::time(nullptr));
  meta.model = opt.limits.model_id;
  meta.fingerprint = Fingerprint();
  PeerWatch watch(req.local_addr, req.local_port, req.remote_addr, req.remote_port);

  if (!stream) {
    std::string text;
    std::vector<TokenLogprob> lps;
    std::vector<JobEvent> events;
    for (;;) {
      events.clear();
      const bool got = job->Wait(&events, kPoll);
      if (watch.Closed()) {  // nobody to answer: free the sequence now (one poll(2) per wake)
        job->Cancel();
        res.status = 499;
        return;
      }
      if (!got) continue;
      for (JobEvent& e : events) {
        if (e.failed) return SendError(res, e.error);
        text += e.text;
        for (TokenLogprob& t : e.logprobs) lps.push_back(std::move(t));
        if (!e.finish_reason.empty()) {
          size_t offset = 0;
          const json lpj = logprobs ? LogprobsJson(endpoint, lps, tok, &offset) : json(nullptr);
          return SendJson(res, FinalResponse(meta, text, lpj, e.finish_reason, e.usage));
        }
      }
    }
  }

  auto state = std::make_shared<StreamState>();
  state->job = job;
  state->meta = meta;
  state->watch = watch;
  state->include_usage = include_usage;
  state->logprobs = logprobs;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, state](size_t, httplib::DataSink& sink) {
        const auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        const ResponseMeta& m = state->meta;
        if (!state->started) {
          state->started = true;
          if (m.endpoint == Endpoint::kChat &&
              !write(
                  SseEvent(StreamChunk(m, "", nullptr, "", true, nullptr, state->include_usage))))
            return false;
        }
        std::vector<JobEvent> events;
        const bool got = state->job->Wait(&events, kPoll);
        // A write to a closed peer fails only after the peer's reset arrives; the poll sees
        // its FIN at once.
        if (state->watch.Closed()) return false;
        if (!got) return true;
        for (JobEvent& e : events) {
          if (e.failed) {
            write(SseEvent(ErrorJson(e.error)));
            write(kSseDone);
            sink.done();
            return true;
          }
          const json lpj = state->logprobs && !e.logprobs.empty()
                               ? LogprobsJson(m.endpoint, e.logprobs, tok, &state->text_offset)
                               : json(nullptr);
          if (e.finish_reason.empty()) {
            if (!write(SseEvent(
                    StreamChunk(m, e.text, lpj, "", false, nullptr, state->include_usage))))
              return false;
            continue;
          }
          // The last event: its text (if any), the finish chunk, usage, [DONE].
          const json usage = state->include_usage ? json(nullptr) : UsageJson(e.usage);
          if (!e.text.empty() && !write(SseEvent(StreamChunk(m, e.text, lpj, "", false, nullptr,
                                                             state->include_usage))))
            return false;
          if (!write(SseEvent(StreamChunk(m, "", e.text.empty() ? lpj : json(nullptr),
                                          e.finish_reason, false, usage, state->include_usage))))
            return false;
          if (state->include_usage && !write(SseEvent(UsageChunk(m, e.usage)))) return false;
          write(kSseDone);
          sink.done();
          return true;
        }
        return true;
      },
      [state](bool success) {
        if (!success) state->job->Cancel();  // the client went away mid-stream
      });
}

void HttpServer::Impl::Install() {
  svr.set_payload_max_length(opt.max_body_bytes);
  const int threads = std::max(4, opt.threads);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  svr.set_tcp_nodelay(true);  // stream tokens as they come

  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, json{{"status", "ok"}});
  });
  const auto models = [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res,
             json{{"object", "list"},
                  {"data",
                   json::array({json{
                       {"id", opt.limits.model_id},
                       {"object", "model"},
                       {"created", opt.created},
                       {"owned_by", "kvarn"},
                       {"meta", {{"n_ctx", opt.limits.ctx}, {"cache_type", opt.cache_type}}}}})}});
  };
  svr.Get("/v1/models", models);
  svr.Get("/models", models);
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    HttpCounts counts_copy;
    {
      std::lock_guard<std::mutex> lock(counts_mu);
      counts_copy = counts;
    }
    res.set_content(
        RenderPrometheus(engine.Snapshot(), counts_copy, opt.limits.model_id, opt.cache_type),
        "text/plain; version=0.0.4");
  });
  svr.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    std::vector<int32_t> ids;
    if (auto e = ParseTokenize(req.body, tok, &ids)) return SendError(res, *e);
    SendJson(res, json{{"tokens", ids}});
  });
  svr.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    std::string text;
    if (auto e = ParseDetokenize(req.body, tok, &text)) return SendError(res, *e);
    SendJson(res, json{{"content", text}});
  });
  for (const char* path : {"/v1/chat/completions", "/chat/completions"})
    svr.Post(path, [this](const httplib::Request& req, httplib::Response& res) {
      Completion(req, res, Endpoint::kChat);
    });
  for (const char* path : {"/v1/completions", "/completions"})
    svr.Post(path, [this](const httplib::Request& req, httplib::Response& res) {
      Completion(req, res, Endpoint::kCompletion);
    });

  // The library's own errors (404, 413, 400 on unparsable HTTP) get an OpenAI error body too.
  svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    ApiError e;
    e.status = res.status;
    switch (res.status) {
      case 404:
        e.code = "not_found";
        e.message = "no route " + req.method + " " + req.path;
        break;
      case 413:
        e.message = "the request body exceeds the limit of " + std::to_string(opt.max_body_bytes) +
                    " bytes (--max-body-kib)";
        break;
      default:
        e.message = "HTTP error " + std::to_string(res.status);
        if (res.status >= 500) e.type = "server_error";
    }
    SendError(res, e);
  });
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& ex) {
          what = ex.what();
        } catch (...) {
        }
        SendError(res, ApiError{500, "server_error", "", "", "internal error: " + what});
      });
  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    std::lock_guard<std::mutex> lock(counts_mu);
    ++counts[{RouteLabel(req.path), res.status}];
  });
}

HttpServer::HttpServer(Engine& engine, const Tokenizer& tokenizer, HttpOptions options)
    : impl_(std::make_unique<Impl>(engine, tokenizer, std::move(options))) {
  impl_->Install();
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Bind(int* port) {
  const HttpOptions& o = impl_->opt;
  if (o.port == 0) {
    const int p = impl_->svr.bind_to_any_port(o.host);
    if (p < 0) return IoError("cannot bind to " + o.host + " on any port");
    *port = p;
    return Status::Ok();
  }
  if (!impl_->svr.bind_to_port(o.host, o.port))
    return IoError("cannot bind to " + o.host + ":" + std::to_string(o.port) +
                   " (in use, or not an address of this machine)");
  *port = o.port;
  return Status::Ok();
}

Status HttpServer::Serve() {
  if (!impl_->svr.listen_after_bind()) return IoError("the HTTP server stopped with an error");
  return Status::Ok();
}

void HttpServer::Stop() {
  if (impl_->svr.is_running()) impl_->svr.stop();
}

}  // namespace kvarn::serve
