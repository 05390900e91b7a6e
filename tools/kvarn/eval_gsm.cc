// `kvarn eval --gsm`: see eval_gsm.h and docs/eval.md ("Task accuracy").
//
// Protocol. Per cache type, the few-shot prefix is prefilled once, in one step (exact attention
// among its own tokens, as a prompt prefill), into sequence 0 of a cache of that type. Each
// problem then continues a deep copy of that sequence (KvCache::CopySequence): the question is
// one step (the commit rule encodes the prefix's completed blocks at that step, so the question
// and every generated token attend to encoded history), then greedy decoding one token per
// step until the "####" line is complete, a new "Question:" starts, an end-of-generation token,
// or max_tokens. The copy is dropped afterwards, so every problem sees the same prefix state.
#include "eval_gsm.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "eval/gsm.h"
#include "eval/metrics.h"

namespace kvarn::cli {
namespace {

constexpr size_t kBudget = size_t(16) << 30;

int Fail(const std::string& msg) {
  std::fprintf(stderr, "kvarn eval --gsm: %s\n", msg.c_str());
  return 1;
}

struct Problem {
  int id = 0;
  std::string question, answer;
  std::vector<int32_t> ids;  // "Question: Q\nAnswer:"
};

struct Answer {
  std::vector<int32_t> ids;
  std::string text, extracted;
  bool correct = false;
  std::string stop;  // "answer", "question", "eog", "limit"
  int encoded_at_question = 0;  // tokens read encoded (records) by the question's step
};

struct CacheRun {
  CodecSpec spec;
  std::unique_ptr<KvCache> cache;
  int prefix_seq = 0;
  double prefill_seconds = 0;
  std::vector<Answer> answers;
};

Status LoadProblems(const std::string& file, std::string* fewshot, std::string* generator,
                    std::vector<Problem>* out) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return IoError(file + ": cannot open (scripts/gsm_study.sh writes it)");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument(file + ": not a JSON object");
  if (!j.contains("fewshot") || !j["fewshot"].is_string())
    return InvalidArgument(file + ": field 'fewshot' missing or not a string");
  if (!j.contains("problems") || !j["problems"].is_array() || j["problems"].empty())
    return InvalidArgument(file + ": field 'problems' missing, empty or not an array");
  *fewshot = j["fewshot"].get<std::string>();
  *generator = j.contains("generator") && j["generator"].is_string() ? j["generator"].get<std::string>() : "";
  for (size_t i = 0; i < j["problems"].size(); ++i) {
    const auto& p = j["problems"][i];
    const std::string where = file + ": problems[" + std::to_string(i) + "]";
    if (!p.is_object() || !p.contains("question") || !p["question"].is_string() ||
        !p.contains("answer") || !p["answer"].is_string())
      return InvalidArgument(where + ": needs string fields 'question' and 'answer'");
    Problem q;
    q.id = p.contains("id") && p["id"].is_number_integer() ? p["id"].get<int>() : int(i);
    q.question = p["question"].get<std::string>();
    q.answer = p["answer"].get<std::string>();
    std::string norm;
    if (!eval::ExtractGsmAnswer("####" + q.answer, &norm))
      return InvalidArgument(where + ": answer '" + q.answer + "' is not a number");
    out->push_back(std::move(q));
  }
  return Status::Ok();
}

// Greedy answers of one problem under every cache type, in lockstep: each type's question is
// one step on its own copy of the prefix, then the still-running types decode one token per
// step together (Model::DecodeBatch reads the weights once for all of them; its logits are
// bit-identical to single-token steps).
Status SolveAll(const Model& model, const Tokenizer& tok, std::vector<CacheRun>& runs,
                const Problem& p, int max_tokens, int threads, std::vector<Answer>* answers) {
  const size_t n = runs.size();
  answers->assign(n, Answer{});
  std::vector<int> seqs(n, -1);  // -1: no copy made (never remove the prefix sequence)
  std::vector<std::vector<float>> logits(n);
  std::vector<bool> running(n, true);
  ForwardOptions fo;
  fo.n_threads = threads;
  Status st;
  for (size_t c = 0; c < n && st.ok(); ++c) {
    if (!(st = runs[c].cache->CopySequence(runs[c].prefix_seq, &seqs[c])).ok()) break;
    ForwardOutput out;
    st = model.Forward(*runs[c].cache, seqs[c], p.ids.data(), int(p.ids.size()), fo, &out);
    logits[c] = std::move(out.logits);
    (*answers)[c].encoded_at_question = runs[c].cache->EncodedTokens(seqs[c]);
    (*answers)[c].stop = "limit";
  }
  while (st.ok()) {
    std::vector<KvCache*> caches;
    std::vector<int> batch_seqs;
    std::vector<int32_t> tokens;
    std::vector<size_t> who;
    for (size_t c = 0; c < n; ++c) {
      if (!running[c]) continue;
      Answer& a = (*answers)[c];
      const int32_t next = int32_t(eval::Argmax(logits[c].data(), int(logits[c].size())));
      if (tok.IsEog(next)) {
        a.stop = "eog";
        running[c] = false;
        continue;
      }
      a.ids.push_back(next);
      const std::string text = tok.Decode(a.ids);
      if (eval::GsmShouldStop(text)) {
        a.stop = text.find("\nQuestion:") != std::string::npos ? "question" : "answer";
        running[c] = false;
        continue;
      }
      if (int(a.ids.size()) >= max_tokens) {
        running[c] = false;  // no forward for a token that is never used
        continue;
      }
      caches.push_back(runs[c].cache.get());
      batch_seqs.push_back(seqs[c]);
      tokens.push_back(next);
      who.push_back(c);
    }
    if (tokens.empty()) break;
    std::vector<float> batched;
    if (!(st = model.DecodeBatch(caches, batch_seqs, tokens, threads, &batched)).ok()) break;
    const size_t V = batched.size() / tokens.size();
    for (size_t i = 0; i < who.size(); ++i)
      logits[who[i]].assign(batched.begin() + ptrdiff_t(i * V), batched.begin() + ptrdiff_t((i + 1) * V));
  }
  for (size_t c = 0; c < n; ++c)
    if (seqs[c] >= 0) (void)runs[c].cache->RemoveSequence(seqs[c]);
  if (!st.ok()) return st;
  for (size_t c = 0; c < n; ++c) {
    Answer& a = (*answers)[c];
    a.text = tok.Decode(a.ids);
    a.correct = eval::ExtractGsmAnswer(a.text, &a.extracted) &&
                eval::GsmAnswersEqual(a.extracted, p.answer);
  }
  return Status::Ok();
}

int FirstDivergence(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return int(i);
  return a.size() == b.size() ? -1 : int(n);
}

}  // namespace

int RunGsm(const Model& model, const Tokenizer& tok, const GsmOptions& o) {
  std::string fewshot, generator;
  std::vector<Problem> problems;
  Status st = LoadProblems(o.file, &fewshot, &generator, &problems);
  if (!st.ok()) return Fail(st.message());
  if (o.limit > 0 && size_t(o.limit) < problems.size()) problems.resize(size_t(o.limit));
  if (o.codecs.empty()) return Fail("no cache types");

  std::vector<int32_t> prefix;
  if (tok.add_bos() && tok.bos() >= 0) prefix.push_back(tok.bos());
  std::vector<int32_t> ids;
  if (!(st = tok.Encode(fewshot, false, &ids)).ok()) return Fail(st.message());
  prefix.insert(prefix.end(), ids.begin(), ids.end());
  size_t longest_q = 0;
  for (Problem& p : problems) {
    if (!(st = tok.Encode("Question: " + p.question + "\nAnswer:", false, &p.ids)).ok())
      return Fail(st.message());
    longest_q = std::max(longest_q, p.ids.size());
  }
  const int max_ctx = int(prefix.size() + longest_q) + o.max_tokens + 1;
  std::fprintf(stderr,
               "kvarn eval --gsm: %zu problems (%s), prefix %zu tokens, up to %d generated, "
               "%zu cache types, %d threads -> %s/\n",
               problems.size(), generator.c_str(), prefix.size(), o.max_tokens, o.codecs.size(),
               o.threads, o.out.c_str());

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<CacheRun> runs(o.codecs.size());
  for (size_t c = 0; c < o.codecs.size(); ++c) {
    CacheRun& r = runs[c];
    if (!(st = ParseCodecSpec(o.codecs[c], &r.spec)).ok()) return Fail(st.message());
    if (!(st = model.CreateCache(r.spec, max_ctx, kBudget, &r.cache)).ok() ||
        !(st = r.cache->AddSequence(&r.prefix_seq)).ok())
      return Fail(st.message());
    ForwardOptions fo;
    fo.n_threads = o.threads;
    ForwardOutput out;
    const auto a = std::chrono::steady_clock::now();
    if (!(st = model.Forward(*r.cache, r.prefix_seq, prefix.data(), int(prefix.size()), fo, &out)).ok())
      return Fail(r.spec.Name() + ": prefix: " + st.message());
    r.prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
  }

  std::ofstream progress(o.out + "/gsm_progress.jsonl");
  int encoded_at_question = 0;
  for (size_t i = 0; i < problems.size(); ++i) {
    nlohmann::json line;
    line["id"] = problems[i].id;
    std::vector<Answer> answers;
    const auto p0 = std::chrono::steady_clock::now();
    if (!(st = SolveAll(model, tok, runs, problems[i], o.max_tokens, o.threads, &answers)).ok())
      return Fail("problem " + std::to_string(problems[i].id) + ": " + st.message());
    line["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
    for (size_t c = 0; c < runs.size(); ++c) {
      Answer& a = answers[c];
      encoded_at_question = std::max(encoded_at_question, a.encoded_at_question);
      line[runs[c].spec.Name()] = {{"answer", a.extracted}, {"correct", a.correct},
                                   {"tokens", a.ids.size()}, {"stop", a.stop}};
      runs[c].answers.push_back(std::move(a));
    }
    progress << line.dump() << "\n";
    progress.flush();
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int done = int(i + 1), total = int(problems.size()), width = 30;
    const int fill = width * done / total;
    std::fprintf(stderr, "\r[%s%s] %d/%d problems  %.0f s elapsed, ETA %.0f s   ",
                 std::string(size_t(fill), '#').c_str(), std::string(size_t(width - fill), '.').c_str(),
                 done, total, el, el / done * (total - done));
  }
  std::fprintf(stderr, "\n");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // JSON with every generation, and the summary.
  nlohmann::json j;
  j["model"] = o.model_name;
  j["problems_file"] = o.file;
  j["generator"] = generator;
  j["n"] = problems.size();
  j["prefix_tokens"] = prefix.size();
  j["max_tokens"] = o.max_tokens;
  j["threads"] = o.threads;
  j["seconds"] = seconds;
  j["baseline"] = runs[0].spec.Name();
  const CacheRun& base = runs[0];
  for (const CacheRun& r : runs) {
    nlohmann::json c;
    c["cache_type"] = r.spec.Name();
    c["prefix_prefill_seconds"] = r.prefill_seconds;
    int64_t right = 0, gen_tokens = 0, identical = 0;
    eval::PairedCounts pc;
    std::vector<int> divergences;
    for (size_t i = 0; i < problems.size(); ++i) {
      const Answer& a = r.answers[i];
      const Answer& b = base.answers[i];
      right += a.correct;
      gen_tokens += int64_t(a.ids.size());
      if (a.correct && b.correct) ++pc.both_right;
      else if (b.correct) ++pc.baseline_only;
      else if (a.correct) ++pc.test_only;
      else ++pc.both_wrong;
      if (a.extracted != b.extracted) ++pc.changed_answers;
      const int d = FirstDivergence(a.ids, b.ids);
      if (d < 0) ++identical;
      else divergences.push_back(d);
      c["problems"].push_back({{"id", problems[i].id}, {"expected", problems[i].answer},
                               {"answer", a.extracted}, {"correct", a.correct},
                               {"stop", a.stop}, {"tokens", a.ids.size()},
                               {"encoded_at_question", a.encoded_at_question},
                               {"first_divergence_vs_baseline", d},
                               {"text", a.text}});
    }
    const eval::Interval ci = eval::WilsonInterval(right, int64_t(problems.size()));
    std::sort(divergences.begin(), divergences.end());
    c["correct"] = right;
    c["accuracy"] = double(right) / double(problems.size());
    c["wilson95"] = {ci.low, ci.high};
    c["generated_tokens"] = gen_tokens;
    c["paired"] = {{"both_right", pc.both_right}, {"baseline_only_right", pc.baseline_only},
                   {"test_only_right", pc.test_only}, {"both_wrong", pc.both_wrong},
                   {"changed_answers", pc.changed_answers}, {"identical_generations", identical},
                   {"mcnemar_exact_p", eval::McNemarExactP(pc.baseline_only, pc.test_only)},
                   {"first_divergence_median",
                    divergences.empty() ? -1 : divergences[divergences.size() / 2]},
                   {"first_divergences", divergences}};
    j["cases"].push_back(c);
  }
  for (const Problem& p : problems) j["questions"].push_back({{"id", p.id}, {"question", p.question}});
  std::ofstream(o.out + "/gsm.json") << j.dump(1) << "\n";

  std::ofstream md(o.out + "/gsm_report.md");
  md << "# kvarn eval --gsm: " << o.model_name << "\n\n"
     << problems.size() << " problems (" << generator << "), few-shot prefix of " << prefix.size()
     << " tokens (with G = 128 tile caches, " << encoded_at_question
     << " of them are read encoded by the question's step), "
     << "greedy, at most " << o.max_tokens << " generated tokens, " << o.threads << " threads, "
     << int(seconds) << " s. Paired columns compare each cache type with " << base.spec.Name()
     << " on the same problems.\n\n"
     << "| cache type | correct | accuracy [95% Wilson] | right only with " << base.spec.Name()
     << " | right only with this | changed answers | identical generations | median first "
        "divergence (token) | McNemar exact p |\n|---|---|---|---|---|---|---|---|---|\n";
  char buf[512];
  for (const auto& c : j["cases"]) {
    const auto& pr = c["paired"];
    std::snprintf(buf, sizeof(buf), "| %s | %lld/%zu | %.3f [%.3f, %.3f] | %lld | %lld | %lld | %lld | %d | %.3g |\n",
                  c["cache_type"].get<std::string>().c_str(), (long long)c["correct"].get<int64_t>(),
                  problems.size(), c["accuracy"].get<double>(), c["wilson95"][0].get<double>(),
                  c["wilson95"][1].get<double>(), (long long)pr["baseline_only_right"].get<int64_t>(),
                  (long long)pr["test_only_right"].get<int64_t>(),
                  (long long)pr["changed_answers"].get<int64_t>(),
                  (long long)pr["identical_generations"].get<int64_t>(),
                  pr["first_divergence_median"].get<int>(), pr["mcnemar_exact_p"].get<double>());
    md << buf;
  }
  md.close();
  std::printf("%s/gsm_report.md, %s/gsm.json\n", o.out.c_str(), o.out.c_str());
  return 0;
}

}  // namespace kvarn::cli
