#include "serve/engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

namespace kvarn::serve {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

size_t CommonPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b, size_t limit) {
  size_t n = std::min({a.size(), b.size(), limit});
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

ApiError ServerError(int status, std::string message) {
  return ApiError{status, status == 503 ? "server_unavailable" : "server_error", "", "",
                  std::move(message)};
}

// log-softmax of logits [n] at id, and the k best (id, logprob), best first.
TokenLogprob Logprobs(const float* logits, int n, int32_t id, int k) {
  float mx = logits[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, logits[i]);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
  const double lse = double(mx) + std::log(sum);
  TokenLogprob t;
  t.id = id;
  t.logprob = float(double(logits[id]) - lse);
  if (k > 0) {
    std::vector<int32_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    const size_t kk = std::min(size_t(k), idx.size());
    std::partial_sort(idx.begin(), idx.begin() + ptrdiff_t(kk), idx.end(),
                      [&](int32_t a, int32_t b) {
                        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
                      });
    for (size_t i = 0; i < kk; ++i) t.top.push_back({idx[i], float(double(logits[idx[i]]) - lse)});
  }
  return t;
}

}  // namespace

struct Engine::Running {
  Running(std::shared_ptr<Job> j, const Tokenizer& tok)
      : job(std::move(j)), decoder(tok), stop(job->request().stop) {}
  std::shared_ptr<Job> job;
  int seq = -1;
  size_t reserved = 0;
  int pos = 0;     // tokens in the cache
  int cached = 0;  // of them, copied from a prefix
  bool decoding = false;
  int32_t next = -1;  // sampled, fed by the next decode step
  int generated = 0;
  bool first_token = true;
  std::unique_ptr<Sampler> sampler;
  StreamDecoder decoder;
  StopMatcher stop;
  bool done = false;
  const std::vector<int32_t>& prompt() const { return job->request().prompt; }
};

Engine::Engine(const Model& model, const Tokenizer& tokenizer, KvCache& cache,
               EngineOptions options)
    : model_(model), tok_(tokenizer), cache_(cache), opt_(options) {
  opt_.chunk = std::max(1, opt_.chunk);
  align_ = std::lcm(opt_.chunk, cache_.block_tokens());
  stats_.cache = cache_.Stats();
  snapshot_ = stats_;
}

Engine::~Engine() { Stop(); }

void Engine::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void Engine::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Without a running loop (never started, or it has ended) nobody else answers the queue.
  std::deque<std::shared_ptr<Job>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(waiting_);
  }
  for (auto& j : left) {
    JobEvent e;
    e.failed = true;
    e.error = ServerError(503, "the server is shutting down");
    j->Push(std::move(e));
  }
}

size_t Engine::ColdPeakBytes(int prompt_tokens, int max_tokens) const {
  SequencePlan p;
  p.prompt_tokens = prompt_tokens;
  p.chunk = opt_.chunk;
  // The last sampled token is never fed back: the cache holds prompt + max_tokens - 1.
  p.final_tokens = prompt_tokens + max_tokens - 1;
  return PeakSequenceBytes(cache_, p);
}

std::optional<ApiError> Engine::Submit(std::shared_ptr<Job> job) {
  const CompletionRequest& rq = job->request();
  const size_t need = ColdPeakBytes(int(rq.prompt.size()), rq.max_tokens);
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return ServerError(503, "the server is shutting down");
  if (need > cache_.config().byte_budget) {
    ++refused_budget_;
    return BadRequest("max_tokens", "the prompt (" + std::to_string(rq.prompt.size()) +
                                        " tokens) + max_tokens (" + std::to_string(rq.max_tokens) +
                                        ") need " + std::to_string(need) +
                                        " bytes of KV cache at their peak; the whole budget is " +
                                        std::to_string(cache_.config().byte_budget) +
                                        " bytes (--cache-budget-mib)");
  }
  if (int(waiting_.size()) >= opt_.max_waiting) {
    ++refused_queue_full_;
    return ApiError{429, "rate_limit_exceeded", "", "rate_limit_exceeded",
                    "the server is busy: " + std::to_string(waiting_.size()) +
                        " requests are already waiting for KV cache room (--queue); retry later"};
  }
  waiting_.push_back(std::move(job));
  cv_.notify_all();
  return std::nullopt;
}

EngineSnapshot Engine::Snapshot() const {
  EngineSnapshot s;
  {
    std::lock_guard<std::mutex> lock(snap_mu_);
    s = snapshot_;
  }
  std::lock_guard<std::mutex> lock(mu_);
  s.waiting = int(waiting_.size());
  s.refused_queue_full = refused_queue_full_;
  s.refused_budget = refused_budget_;
  return s;
}

void Engine::Publish(bool force) {
  const auto now = Clock::now();
  if (!force && Seconds(last_publish_, now) < 0.02) return;
  last_publish_ = now;
  stats_.running = int(running_.size());
  stats_.prefix_entries = int(prefixes_.size());
  stats_.cache = cache_.Stats();
  stats_.reserved_bytes = reserved_;
  stats_.prefix_bytes = prefix_bytes_;
  std::lock_guard<std::mutex> lock(snap_mu_);
  snapshot_ = stats_;
}

void Engine::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (running_.empty() && waiting_.empty() && !stop_) {
        lock.unlock();
        Publish(true);
        lock.lock();
        // Idle: wake for a submission, or now and then to drop cancelled waiters' state.
        cv_.wait_for(lock, std::chrono::milliseconds(200),
                     [&] { return stop_ || !waiting_.empty(); });
      }
      if (stop_) break;
    }
    ReapCancelled();
    const size_t before = running_.size();
    Admit();
    if (running_.size() != before) Publish(true);  // visible before a long prefill step
    if (running_.empty()) continue;
    PrefillStep();
    DecodeStep();
    Publish(false);
  }
  // Shutdown: every running job is told, and its pages freed.
  for (auto& r : running_) Fail(*r, ServerError(503, "the server is shutting down"));
  running_.clear();
  while (!prefixes_.empty()) RemovePrefix(prefixes_.size() - 1);
  Publish(true);
}

void Engine::ReapCancelled() {
  bool any = false;
  for (auto& r : running_) {
    if (!r->job->cancelled()) continue;
    ++stats_.cancelled;
    Retire(*r);
    any = true;
  }
  if (any) {
    running_.erase(
        std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return r->done; }),
        running_.end());
  }
  std::lock_guard<std::mutex> lock(mu_);
  const size_t before = waiting_.size();
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(),
                                [](const auto& j) { return j->cancelled(); }),
                 waiting_.end());
  stats_.cancelled += int64_t(before - waiting_.size());
  if (any || before != waiting_.size()) last_publish_ = {};
}

std::vector<BlockKind> Engine::BlockKinds(int seq, int n_blocks) const {
  SeqView v;
  std::vector<BlockKind> kinds;
  if (!cache_.View(seq, &v).ok()) return kinds;
  for (int b = 0; b < n_blocks && b < v.n_blocks(); ++b) kinds.push_back(v.block(b).kind);
  return kinds;
}

void Engine::RemovePrefix(size_t i) {
  (void)cache_.RemoveSequence(prefixes_[i].seq);
  prefix_bytes_ -= prefixes_[i].bytes;
  prefixes_.erase(prefixes_.begin() + ptrdiff_t(i));
}

void Engine::Admit() {
  const size_t budget = cache_.config().byte_budget;
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waiting_.empty()) return;
      job = waiting_.front();
    }
    if (opt_.max_running > 0 && int(running_.size()) >= opt_.max_running) return;
    const CompletionRequest& rq = job->request();
    const int n_prompt = int(rq.prompt.size());

    // The longest reusable prefix: cached prefixes, and the prompts of running sequences.
    int best_len = 0, best_seq = -1;
    size_t best_prefix = SIZE_MAX;  // index into prefixes_ when the donor is a cached prefix
    const size_t limit = size_t(n_prompt - 1);  // at least one token to prefill: its logits
    if (opt_.prefix_reuse) {
      const auto consider = [&](const std::vector<int32_t>& tokens, size_t usable, int seq,
                                size_t prefix_index) {
        const size_t lcp = CommonPrefix(tokens, rq.prompt, std::min(usable, limit));
        const int len = int(lcp / size_t(align_)) * align_;
        if (len > best_len) {
          best_len = len;
          best_seq = seq;
          best_prefix = prefix_index;
        }
      };
      for (size_t i = 0; i < prefixes_.size(); ++i)
        consider(prefixes_[i].tokens, prefixes_[i].tokens.size(), prefixes_[i].seq, i);
      for (const auto& r : running_)
        consider(r->prompt(), size_t(std::min(int(r->prompt().size()), r->pos)), r->seq, SIZE_MAX);
    }

    SequencePlan plan;
    plan.prompt_tokens = n_prompt;
    plan.chunk = opt_.chunk;
    plan.final_tokens = n_prompt + rq.max_tokens - 1;
    const SequencePlan cold = plan;
    if (best_len > 0) {
      plan.start_tokens = best_len;
      plan.start_blocks = BlockKinds(best_seq, best_len / cache_.block_tokens());
    }
    // Room: evict least recently used prefixes (never the donor) until the plan fits; failing
    // that, a cold start with every prefix evictable; failing that, the request waits.
    const auto room = [&] { return budget - std::min(budget, reserved_ + prefix_bytes_); };
    size_t need = PeakSequenceBytes(cache_, plan);
    const auto evict_for = [&](size_t want, size_t keep) {
      while (room() < want) {
        size_t victim = SIZE_MAX;
        for (size_t i = 0; i < prefixes_.size(); ++i)
          if (i != keep && (victim == SIZE_MAX || prefixes_[i].used < prefixes_[victim].used))
            victim = i;
        if (victim == SIZE_MAX) return false;
        if (keep != SIZE_MAX && victim < keep) --keep;
        RemovePrefix(victim);
        if (best_prefix != SIZE_MAX && victim < best_prefix) --best_prefix;
      }
      return true;
    };
    if (room() < need) {
      bool ok = false;
      // Evicting other prefixes must not cost more than a cold start would need anyway.
      if (best_len > 0) ok = evict_for(need, best_prefix);
      if (!ok) {
        plan = cold;
        best_len = 0;
        need = PeakSequenceBytes(cache_, plan);
        ok = evict_for(need, SIZE_MAX);
      }
      if (!ok) return;  // wait for running sequences to finish
    }

    auto r = std::make_unique<Running>(job, tok_);
    SamplerParams sp = rq.sampler;
    if (!rq.seeded) sp.seed = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
    Status st = Sampler::Create(sp, &r->sampler);
    if (st.ok()) {
      if (best_len > 0 && cache_.CopyPrefix(best_seq, best_len, &r->seq).ok()) {
        r->pos = r->cached = best_len;
        if (best_prefix != SIZE_MAX) prefixes_[best_prefix].used = ++tick_;
      } else {
        // The copy can only fail if the system refused memory the budget allowed; a cold
        // start then needs its own reservation, or the request waits.
        if (best_len > 0) {
          need = PeakSequenceBytes(cache_, cold);
          if (room() < need) return;
        }
        st = cache_.AddSequence(&r->seq);
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiting_.pop_front();
    }
    if (!st.ok()) {
      JobEvent e;
      e.failed = true;
      e.error = ServerError(500, st.message());
      job->Push(std::move(e));
      ++stats_.failed;
      continue;
    }
    r->reserved = need;
    reserved_ += need;
    stats_.prompt_tokens_cached += r->cached;
    running_.push_back(std::move(r));
  }
}

void Engine::PrefillStep() {
  const int budget = opt_.prefill_rows_per_step > 0 ? opt_.prefill_rows_per_step : opt_.chunk;
  int rows = 0;
  for (auto& rp : running_) {
    if (rows >= budget) break;
    Running& r = *rp;
    if (r.decoding || r.done) continue;
    // The next chunk ends at the next multiple of the chunk size: fixed by position, whatever
    // else runs (the chunk's rows and its commit-rule state decide the prompt's K/V).
    const int n_prompt = int(r.prompt().size());
    const int end = std::min(n_prompt, (r.pos / opt_.chunk + 1) * opt_.chunk);
    ForwardOptions fo;
    fo.n_threads = opt_.n_threads;
    ForwardOutput out;
    const auto t0 = Clock::now();
    const Status st =
        model_.Forward(cache_, r.seq, r.prompt().data() + r.pos, end - r.pos, fo, &out);
    stats_.prefill_seconds += Seconds(t0, Clock::now());
    if (!st.ok()) {
      Fail(r, ServerError(500, "prefill failed: " + st.message()));
      continue;
    }
    rows += end - r.pos;
    stats_.prompt_tokens += end - r.pos;
    r.pos = end;
    if (r.pos == n_prompt) {
      r.decoding = true;
      HandleToken(r, out.logits.data());
    }
  }
  running_.erase(
      std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return r->done; }),
      running_.end());
}

void Engine::DecodeStep() {
  std::vector<Running*> items;
  for (auto& r : running_)
    if (r->decoding && !r->done && r->next >= 0) items.push_back(r.get());
  if (items.empty()) return;
  const int V = model_.config().n_vocab;
  std::vector<KvCache*> caches(items.size(), &cache_);
  std::vector<int> seqs;
  std::vector<int32_t> tokens;
  for (Running* r : items) {
    seqs.push_back(r->seq);
    tokens.push_back(r->next);
  }
  std::vector<float> logits;
  const auto t0 = Clock::now();
  Status st = model_.DecodeBatch(caches, seqs, tokens, opt_.n_threads, &logits);
  if (st.ok()) {
    const double dt = Seconds(t0, Clock::now());
    stats_.decode_seconds += dt;
    ++stats_.decode_steps;
    stats_.decode_tokens += int64_t(items.size());
    stats_.last_batch = int(items.size());
    stats_.decode_step_seconds.Observe(dt);
    stats_.decode_batch_size.Observe(double(items.size()));
    for (size_t i = 0; i < items.size(); ++i) {
      items[i]->pos += 1;
      HandleToken(*items[i], logits.data() + i * size_t(V));
    }
  } else {
    // One item's failure (say, a non-finite activation) must not end the others: the batch was
    // abandoned as a whole, so each item steps alone (bit-identical) and only failures fail.
    for (Running* r : items) {
      ForwardOptions fo;
      fo.n_threads = opt_.n_threads;
      ForwardOutput out;
      const Status s1 = model_.Forward(cache_, r->seq, &r->next, 1, fo, &out);
      if (!s1.ok()) {
        Fail(*r, ServerError(500, "decode failed: " + s1.message()));
        continue;
      }
      r->pos += 1;
      HandleToken(*r, out.logits.data());
    }
  }
  running_.erase(
      std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return r->done; }),
      running_.end());
}

bool Engine::HandleToken(Running& r, float* logits) {
  const CompletionRequest& rq = r.job->request();
  const int V = model_.config().n_vocab;
  if (r.first_token) {
    r.first_token = false;
    stats_.time_to_first_token.Observe(Seconds(r.job->submitted, Clock::now()));
  }
  if (rq.ignore_eos)
    for (int32_t eog : tok_.eog_ids()) logits[eog] = -std::numeric_limits<float>::infinity();
  const int32_t id = r.sampler->Sample(logits, V);
  JobEvent e;
  if (tok_.IsEog(id)) {
    std::string text = r.stop.Push(r.decoder.Finish());
    text += r.stop.Flush();
    Finish(r, "stop", std::move(text));
    return false;
  }
  if (rq.logprobs) e.logprobs.push_back(Logprobs(logits, V, id, rq.top_logprobs));
  ++r.generated;
  ++stats_.generated_tokens;
  e.text = r.stop.Push(r.decoder.Push(id));
  if (!r.stop.matched() && r.generated >= rq.max_tokens) {
    e.text += r.stop.Push(r.decoder.Finish());
    e.text += r.stop.Flush();
    if (!r.stop.matched()) {
      r.job->Push(std::move(e));
      Finish(r, "length", "");
      return false;
    }
  }
  if (r.stop.matched()) {
    r.job->Push(std::move(e));
    Finish(r, "stop", "");
    return false;
  }
  if (!e.text.empty() || !e.logprobs.empty()) r.job->Push(std::move(e));
  r.next = id;
  return true;
}

void Engine::Finish(Running& r, const std::string& reason, std::string text) {
  JobEvent e;
  e.text = std::move(text);
  e.finish_reason = reason;
  e.usage.prompt_tokens = int(r.prompt().size());
  e.usage.cached_tokens = r.cached;
  e.usage.completion_tokens = r.generated;
  (reason == "length" ? stats_.finished_length : stats_.finished_stop) += 1;
  Retire(r);
  r.job->Push(std::move(e));
}

void Engine::Fail(Running& r, const ApiError& error) {
  ++stats_.failed;
  Retire(r);
  JobEvent e;
  e.failed = true;
  e.error = error;
  r.job->Push(std::move(e));
}

void Engine::Retire(Running& r) {
  if (r.done) return;
  r.done = true;
  // Cache the reusable part of its prompt: whole aligned chunks it prefilled (or copied).
  const int len = std::min(int(r.prompt().size()), r.pos) / align_ * align_;
  if (opt_.prefix_reuse && len > 0 && opt_.max_prefix_entries > 0) {
    const std::vector<int32_t> tokens(r.prompt().begin(), r.prompt().begin() + len);
    bool covered = false;
    for (size_t i = 0; i < prefixes_.size() && !covered; ++i) {
      const auto& t = prefixes_[i].tokens;
      if (t.size() >= tokens.size() && std::equal(tokens.begin(), tokens.end(), t.begin())) {
        prefixes_[i].used = ++tick_;
        covered = true;
      }
    }
    if (!covered) {
      const std::vector<BlockKind> kinds = BlockKinds(r.seq, len / cache_.block_tokens());
      const size_t bytes = BlockBytes(cache_, kinds);
      const size_t budget = cache_.config().byte_budget;
      // Only into room no admitted sequence has reserved.
      if (prefix_bytes_ + bytes + (reserved_ - r.reserved) <= budget) {
        Prefix p;
        if (cache_.CopyPrefix(r.seq, len, &p.seq).ok()) {
          p.tokens = tokens;
          p.bytes = bytes;
          p.used = ++tick_;
          prefix_bytes_ += bytes;
          // Entries this one extends are now redundant.
          for (size_t i = prefixes_.size(); i-- > 0;) {
            const auto& t = prefixes_[i].tokens;
            if (t.size() < tokens.size() && std::equal(t.begin(), t.end(), tokens.begin()))
              RemovePrefix(i);
          }
          prefixes_.push_back(std::move(p));
          while (int(prefixes_.size()) > opt_.max_prefix_entries) {
            size_t victim = 0;
            for (size_t i = 1; i < prefixes_.size(); ++i)
              if (prefixes_[i].used < prefixes_[victim].used) victim = i;
            RemovePrefix(victim);
          }
        }
      }
    }
  }
  (void)cache_.RemoveSequence(r.seq);
  reserved_ -= r.reserved;
  r.reserved = 0;
  last_publish_ = {};  // pages changed: the next Publish reports it
}

}  // namespace kvarn::serve
