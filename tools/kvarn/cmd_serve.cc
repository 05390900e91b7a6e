// `kvarn serve`: an OpenAI-compatible HTTP server with continuous batching over one KV cache
// (src/serve). Flags follow llama-server's spelling where it has one.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <thread>

#include "commands.h"
#include "common_flags.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "serve/admission.h"
#include "serve/engine.h"
#include "serve/http_server.h"

namespace kvarn::cli {
namespace {

struct ServeOptions {
  ModelFlags model;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string alias;
  int parallel = 8;
  int queue = 32;
  int n_predict = 1024;
  size_t max_body_kib = 1024;
  int http_threads = 0;
  bool no_prefix_cache = false;
};

int Fail(const Status& st) {
  std::fprintf(stderr, "kvarn serve: %s\n", st.message().c_str());
  return 1;
}

std::string Stem(const std::string& path) {
  std::string s = path.substr(path.find_last_of('/') + 1);
  if (s.size() > 5 && s.compare(s.size() - 5, 5, ".gguf") == 0) s.resize(s.size() - 5);
  return s;
}

int Serve(ServeOptions o) {
  std::string path;
  Status st = ResolveModel(o.model, &path);
  if (!st.ok()) return Fail(st);
  CodecSpec codec;
  if (!(st = ResolveCacheType(o.model, &codec)).ok()) return Fail(st);
  const int threads = ResolveThreads(o.model);
  std::unique_ptr<Model> model;
  if (!(st = Model::Load(path, &model)).ok()) return Fail(st);
  std::unique_ptr<Tokenizer> tok;
  if (!(st = Tokenizer::FromGguf(model->gguf(), &tok)).ok()) return Fail(st);

  const int ctx = o.model.ctx;
  // The worst case of one sequence that fills the context (over every prompt length): the
  // default budget holds --parallel of them.
  std::unique_ptr<KvCache> probe;
  if (!(st = model->CreateCache(codec, ctx, SIZE_MAX, &probe)).ok()) return Fail(st);
  size_t full = 0;
  for (int p = 1; p < ctx; ++p) {
    serve::SequencePlan plan;
    plan.prompt_tokens = p;
    plan.chunk = o.model.batch;
    plan.final_tokens = ctx - 1;
    full = std::max(full, serve::PeakSequenceBytes(*probe, plan));
  }
  const size_t budget =
      o.model.cache_mib > 0 ? o.model.cache_mib << 20 : size_t(std::max(o.parallel, 1)) * full;
  std::unique_ptr<KvCache> cache;
  if (!(st = model->CreateCache(codec, ctx, budget, &cache)).ok()) return Fail(st);

  serve::EngineOptions eo;
  eo.n_threads = threads;
  eo.chunk = o.model.batch;
  eo.max_running = o.parallel;
  eo.max_waiting = o.queue;
  eo.prefix_reuse = !o.no_prefix_cache;
  serve::Engine engine(*model, *tok, *cache, eo);

  serve::HttpOptions ho;
  ho.host = o.host;
  ho.port = o.port;
  ho.max_body_bytes = o.max_body_kib << 10;
  ho.threads = o.http_threads > 0 ? o.http_threads : o.parallel + o.queue + 8;
  ho.cache_type = codec.Name();
  ho.limits.model_id = o.alias.empty() ? Stem(path) : o.alias;
  ho.limits.ctx = ctx;
  ho.limits.default_max_tokens = o.n_predict;
  ho.created = int64_t(std::time(nullptr));

  // Signals go to one thread that stops the server; SIGPIPE (a client gone mid-write) is an
  // error return from send, not a reason to exit.
  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  serve::HttpServer http(engine, *tok, ho);
  int port = 0;
  if (!(st = http.Bind(&port)).ok()) return Fail(st);
  engine.Start();
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig != 0) http.Stop();
  });

  const ModelConfig& mc = model->config();
  std::fprintf(stderr,
               "kvarn serve: %s (%s, %d layers, %d/%d heads, head_dim %d), %d threads\n"
               "kvarn serve: cache %s, budget %s for all sequences; one sequence filling the "
               "context of %d tokens needs %s at its peak, so %zu fit at once; --parallel %d, "
               "queue %d, prefill chunk %d, prefix reuse %s (granularity %d tokens)\n",
               path.c_str(), mc.arch.c_str(), mc.n_layers, mc.n_heads, mc.n_kv_heads, mc.head_dim,
               threads, codec.Name().c_str(), HumanBytes(double(budget)).c_str(), ctx,
               HumanBytes(double(full)).c_str(), budget / std::max<size_t>(full, 1), o.parallel,
               o.queue, o.model.batch, o.no_prefix_cache ? "off" : "on", engine.prefix_align());
  std::printf("kvarn serve: listening on http://%s:%d (model '%s')\n", o.host.c_str(), port,
              ho.limits.model_id.c_str());
  std::fflush(stdout);
  st = http.Serve();
  // Serve returned (stopped by a signal, or failed): wake the signal thread if it still waits.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  engine.Stop();
  if (!st.ok()) return Fail(st);
  std::fprintf(stderr, "kvarn serve: stopped\n");
  return 0;
}

}  // namespace

Runner AddServeCommand(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* c = app.add_subcommand(
      "serve",
      "OpenAI-compatible HTTP server with continuous batching.\n"
      "  -c is each sequence's context (prompt + max_tokens <= c); it is not divided among\n"
      "  sequences as llama-server's -c is among slots. --cache-budget-mib is the byte budget of\n"
      "  the whole KV cache, shared by all sequences and counted by the cache's own accounting\n"
      "  (records, fp16 sink and tail); a request is admitted when its own worst case fits in\n"
      "  what is left, and waits (up to --queue requests, then 429) otherwise. --parallel caps\n"
      "  the sequences decoding at once. Greedy output equals `kvarn run --temp 0` with the same\n"
      "  -b and cache type, whatever else the server is running.");
  AddModelFlags(c, &o->model, "kvarn_k4v2_g128");
  c->add_option("--host", o->host, "address to listen on (default 127.0.0.1)");
  c->add_option("--port", o->port, "port (0: any free port; default 8080)")
      ->check(CLI::Range(0, 65535));
  c->add_option("-a,--alias", o->alias, "model name clients use (default: the GGUF file's stem)");
  c->add_option("--parallel", o->parallel, "sequences decoding at once, at most (default 8; -np)")
      ->check(CLI::Range(1, 4096));
  c->add_option("--queue", o->queue, "requests waiting for room, at most, before 429 (default 32)")
      ->check(CLI::Range(0, 1 << 20));
  c->add_option("-n,--n-predict", o->n_predict,
                "max_tokens of requests that give none (default 1024, capped by -c)")
      ->check(CLI::Range(1, 1 << 22));
  c->add_option("--max-body-kib", o->max_body_kib, "request body limit in KiB (default 1024; 413)")
      ->check(CLI::Range(1, 1 << 20));
  c->add_option("--threads-http", o->http_threads,
                "connections served at once (default --parallel + --queue + 8)")
      ->check(CLI::Range(0, 4096));
  c->add_flag("--no-prefix-cache", o->no_prefix_cache, "do not reuse cached prompt prefixes");
  return [o] { return Serve(*o); };
}

}  // namespace kvarn::cli
