// `kvarn eval`: error accumulation under decoding (spec §8.2; definitions in docs/eval.md).
// Compares cache types against the exact (f32) cache on one model: pseudo-decode over a text in
// chunks of G tokens under the accumulated and static schedules, free-running greedy
// generation, and per-position-bucket metrics. Writes eval.json, report.md and PNG plots.
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "common_flags.h"
#include "eval/pseudo_decode.h"
#include "eval_gsm.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "quant/distortion.h"

namespace kvarn::cli {
namespace {

struct EvalOptions {
  ModelFlags model;
  std::string file;
  size_t offset = 0;  // byte offset into the text
  int n_tokens = 4096;
  std::vector<std::string> codecs = {"f16",
                                     "kvarn_k4v2_g128",
                                     "kvarn_k2v2_g128",
                                     "kivi_k2v2_g128",
                                     "hadamard_k2v2_g128",
                                     "varn_k2v2_g128",
                                     "q8_0",
                                     "q4_0"};
  std::vector<std::string> schedules = {"accumulated", "static"};
  int bucket = 256;
  int gen_tokens = 256;
  std::string gen_prompt =
      "Explain step by step how a hash table works, including collisions and resizing.";
  std::string out = "eval-out";
  GsmOptions gsm;  // --gsm FILE: the task-accuracy run instead of pseudo-decode
};

int Fail(const Status& st) {
  std::fprintf(stderr, "kvarn eval: %s\n", st.message().c_str());
  return 1;
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

nlohmann::json CaseJson(const eval::CaseResult& r, const Model& m) {
  nlohmann::json j;
  j["cache_type"] = r.config.codec.Name();
  j["schedule"] = r.config.static_schedule ? "static" : "accumulated";
  j["bytes_per_token_head"] = r.bytes_per_token_head;
  j["seconds"] = r.seconds;
  const int w = r.positions.width();
  double kl_all = 0;
  int64_t n_all = 0, agree_all = 0;
  double nll_e = 0, nll_t = 0;
  int64_t nll_n = 0;
  for (size_t b = 0; b < r.positions.buckets().size(); ++b) {
    const eval::Bucket& k = r.positions.buckets()[b];
    nlohmann::json jb;
    jb["begin"] = int(b) * w;
    jb["end"] = int(b) * w + int(k.count);
    jb["kl_mean"] = Mean(k.kl);
    jb["kl_p90"] = eval::Percentile(k.kl, 90);
    jb["kl_p99"] = eval::Percentile(k.kl, 99);
    jb["top1_agreement"] = double(k.top1_agree) / double(std::max<int64_t>(k.count, 1));
    jb["ppl_exact"] = std::exp(k.nll_exact / double(std::max<int64_t>(k.nll_count, 1)));
    jb["ppl_test"] = std::exp(k.nll_test / double(std::max<int64_t>(k.nll_count, 1)));
    std::vector<double> mae;
    double mae_mean = 0;
    if (b < r.attn_abs_err.size() && r.attn_count[b] > 0) {
      for (double s : r.attn_abs_err[b]) mae.push_back(s / double(r.attn_count[b]));
      mae_mean = Mean(mae);
    }
    jb["attn_mae_per_layer"] = mae;
    jb["attn_mae_mean"] = mae_mean;
    j["buckets"].push_back(jb);
    for (double x : k.kl) kl_all += x;
    n_all += k.count;
    agree_all += k.top1_agree;
    nll_e += k.nll_exact;
    nll_t += k.nll_test;
    nll_n += k.nll_count;
  }
  j["kl_mean"] = kl_all / double(std::max<int64_t>(n_all, 1));
  j["top1_agreement"] = double(agree_all) / double(std::max<int64_t>(n_all, 1));
  j["ppl_exact"] = std::exp(nll_e / double(std::max<int64_t>(nll_n, 1)));
  j["ppl_test"] = std::exp(nll_t / double(std::max<int64_t>(nll_n, 1)));
  KeyErrorSummary ks;
  if (!r.key_e_m.empty() && SummarizeKeyError(r.key_e_m.data(), r.key_e_d.data(), r.key_e_m.size(),
                                              DefaultKeyErrorFractions(), &ks)
                                .ok()) {
    j["key_error"]["tokens"] = r.key_e_m.size();
    j["key_error"]["mean_abs_norm_error"] = ks.mean_abs_norm_err;
    double em = 0, et = 0;
    for (size_t i = 0; i < r.key_e_m.size(); ++i) {
      em += r.key_e_m[i];
      et += r.key_e_m[i] + r.key_e_d[i];
    }
    j["key_error"]["mean_total"] = et / double(r.key_e_m.size());
    j["key_error"]["magnitude_share_all"] = et > 0 ? em / et : 0.0;
    for (const KeyErrorShare& s : ks.top) {
      nlohmann::json t;
      t["fraction"] = s.fraction;
      t["tokens"] = s.tokens;
      t["magnitude_share"] = s.magnitude_share;
      j["key_error"]["top"].push_back(t);
    }
  }
  (void)m;
  return j;
}

// Writes a gnuplot script plotting `field` of every case's buckets against position.
void Plot(const std::string& dir, const nlohmann::json& cases, const std::string& field,
          const std::string& title, const std::string& schedule_filter, const std::string& png) {
  const std::string dat = dir + "/" + png + ".dat";
  std::ofstream d(dat);
  std::vector<std::string> labels;
  for (const auto& c : cases) {
    if (!schedule_filter.empty() && c["schedule"] != schedule_filter) continue;
    labels.push_back(c["cache_type"].get<std::string>() + " " + c["schedule"].get<std::string>());
    for (const auto& b : c["buckets"])
      d << (b["begin"].get<int>() + b["end"].get<int>()) / 2 << " " << b[field].get<double>()
        << "\n";
    d << "\n\n";
  }
  d.close();
  std::ofstream g(dir + "/" + png + ".gp");
  g << "set terminal pngcairo size 900,560 noenhanced\nset output '" << dir << "/" << png
    << ".png'\nset title '" << title << "'\nset xlabel 'position (tokens)'\nset key outside right\n"
    << "set logscale y\nset grid\nplot ";
  for (size_t i = 0; i < labels.size(); ++i)
    g << (i ? ", " : "") << "'" << dat << "' index " << i << " using 1:2 with linespoints title '"
      << labels[i] << "'";
  g << "\n";
  g.close();
  const std::string cmd = "gnuplot '" + dir + "/" + png + ".gp' 2>/dev/null";
  if (std::system(cmd.c_str()) != 0)
    std::fprintf(stderr, "kvarn eval: gnuplot failed or is missing; %s.png not drawn\n",
                 png.c_str());
}

int Run(EvalOptions o) {
  std::string path;
  Status st = ResolveModel(o.model, &path);
  if (!st.ok()) return Fail(st);
  const int threads = ResolveThreads(o.model);
  if (!o.gsm.file.empty()) {
    std::unique_ptr<Model> model;
    if (!(st = Model::Load(path, &model)).ok()) return Fail(st);
    std::unique_ptr<Tokenizer> tok;
    if (!(st = Tokenizer::FromGguf(model->gguf(), &tok)).ok()) return Fail(st);
    ::mkdir(o.out.c_str(), 0755);
    o.gsm.threads = threads;
    o.gsm.out = o.out;
    o.gsm.model_name = path.substr(path.find_last_of('/') + 1);
    return RunGsm(*model, *tok, o.gsm);
  }
  if (o.file.empty()) o.file = CacheDir() + "/pydocs.txt";
  std::ifstream in(o.file, std::ios::binary);
  if (!in) return Fail(IoError(o.file + ": cannot open (scripts/fetch_models.sh corpus)"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (o.offset >= text.size()) return Fail(InvalidArgument("--offset beyond the text"));
  text = text.substr(o.offset, size_t(o.n_tokens) * 16);  // enough bytes for n_tokens

  std::unique_ptr<Model> model;
  if (!(st = Model::Load(path, &model)).ok()) return Fail(st);
  std::unique_ptr<Tokenizer> tok;
  if (!(st = Tokenizer::FromGguf(model->gguf(), &tok)).ok()) return Fail(st);
  std::vector<int32_t> ids;
  if (!(st = tok->Encode(text, false, &ids)).ok()) return Fail(st);
  if (int(ids.size()) < o.n_tokens)
    return Fail(InvalidArgument(o.file + ": only " + std::to_string(ids.size()) + " tokens"));
  ids.resize(size_t(o.n_tokens));

  std::vector<eval::EvalCase> cases;
  for (const std::string& sched : o.schedules) {
    if (sched != "accumulated" && sched != "static")
      return Fail(InvalidArgument("schedule '" + sched + "' (accumulated or static)"));
    for (const std::string& name : o.codecs) {
      eval::EvalCase c;
      if (!(st = ParseCodecSpec(name, &c.codec)).ok()) return Fail(st);
      c.static_schedule = sched == "static";
      cases.push_back(c);
    }
  }
  ::mkdir(o.out.c_str(), 0755);
  std::fprintf(stderr, "kvarn eval: %s, %d tokens of %s, %zu cases, %d threads -> %s/\n",
               path.c_str(), o.n_tokens, o.file.c_str(), cases.size(), threads, o.out.c_str());
  const auto t0 = std::chrono::steady_clock::now();
  eval::PseudoDecodeOptions po;
  po.n_threads = threads;
  po.bucket = o.bucket;
  std::vector<eval::CaseResult> results;
  st = eval::RunPseudoDecode(
      *model, ids, cases, po,
      [&](int done, int total) {
        const double el =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const int width = 30, fill = width * done / total;
        std::fprintf(stderr, "\r[%s%s] %d/%d chunks  %.0f s elapsed, ETA %.0f s   ",
                     std::string(size_t(fill), '#').c_str(),
                     std::string(size_t(width - fill), '.').c_str(), done, total, el,
                     el / done * (total - done));
      },
      &results);
  std::fprintf(stderr, "\n");
  if (!st.ok()) return Fail(st);
  const double pd_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  nlohmann::json j;
  j["model"] = path.substr(path.find_last_of('/') + 1);
  j["text"] = o.file;
  j["offset"] = o.offset;
  j["tokens"] = o.n_tokens;
  j["head_dim"] = model->config().head_dim;
  j["chunk"] = po.chunk;
  j["bucket"] = o.bucket;
  j["threads"] = threads;
  j["pseudo_decode_seconds"] = pd_seconds;
  for (const auto& r : results) j["cases"].push_back(CaseJson(r, *model));

  // Free-running greedy generation from a chat prompt, exact vs each cache type.
  if (o.gen_tokens > 0) {
    std::vector<int32_t> prompt;
    if (!(st = EncodeChat(*tok, {{"user", o.gen_prompt}}, true, &prompt)).ok()) return Fail(st);
    std::vector<CodecSpec> specs(o.codecs.size());
    for (size_t i = 0; i < o.codecs.size(); ++i) (void)ParseCodecSpec(o.codecs[i], &specs[i]);
    std::vector<eval::GenerationResult> gens;
    const auto g0 = std::chrono::steady_clock::now();
    if (!(st = eval::RunGenerations(*model, prompt, o.gen_tokens, specs, threads, &gens)).ok())
      return Fail(st);
    j["generation"]["seconds"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - g0).count();
    std::vector<int32_t> exact;
    for (const eval::GenerationResult& g : gens) {
      exact = g.exact;
      nlohmann::json jg;
      jg["cache_type"] = g.codec;
      jg["first_divergence"] = g.first_divergence;
      jg["agreement"] = g.agreement;
      jg["text"] = tok->Decode(g.test);
      j["generation"]["cases"].push_back(jg);
      std::fprintf(stderr, "generation %s: first divergence %d, agreement %.3f\n", g.codec.c_str(),
                   g.first_divergence, g.agreement);
    }
    j["generation"]["prompt"] = o.gen_prompt;
    j["generation"]["tokens"] = o.gen_tokens;
    j["generation"]["exact_text"] = tok->Decode(exact);
  }
  j["total_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ofstream(o.out + "/eval.json") << j.dump(1) << "\n";

  // Report.
  std::ofstream md(o.out + "/report.md");
  md << "# kvarn eval: " << j["model"].get<std::string>() << "\n\n"
     << o.n_tokens << " tokens of `" << o.file << "` (byte offset " << o.offset << "), chunks of "
     << po.chunk << ", buckets of " << o.bucket << " positions, " << threads << " threads, "
     << int(pd_seconds) << " s pseudo-decode, "
     << (j.contains("generation") ? int(j["generation"]["seconds"].get<double>()) : 0)
     << " s generation, " << int(j["total_seconds"].get<double>()) << " s in all.\n\n"
     << "| cache type | schedule | KL mean | KL first bucket | KL last bucket | KL p99 last | "
        "top-1 agree | ppl (exact "
     << "→ test) | attn MAE first → last | key |dnorm| | "
        "E_M/E_T top 1% | top 5% |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  char buf[512];
  for (const auto& c : j["cases"]) {
    const auto& b = c["buckets"];
    const auto& first = b.front();
    const auto& last = b.back();
    const bool ke = c.contains("key_error");
    std::snprintf(
        buf, sizeof(buf),
        "| %s | %s | %.5f | %.5f | %.5f | %.4f | %.4f | %.3f → %.3f | %.4f → %.4f | %s | %s | %s "
        "|\n",
        c["cache_type"].get<std::string>().c_str(), c["schedule"].get<std::string>().c_str(),
        c["kl_mean"].get<double>(), first["kl_mean"].get<double>(), last["kl_mean"].get<double>(),
        last["kl_p99"].get<double>(), c["top1_agreement"].get<double>(),
        c["ppl_exact"].get<double>(), c["ppl_test"].get<double>(),
        first["attn_mae_mean"].get<double>(), last["attn_mae_mean"].get<double>(),
        ke ? std::to_string(c["key_error"]["mean_abs_norm_error"].get<double>()).c_str() : "-",
        ke ? std::to_string(c["key_error"]["top"][1]["magnitude_share"].get<double>()).c_str()
           : "-",
        ke ? std::to_string(c["key_error"]["top"][2]["magnitude_share"].get<double>()).c_str()
           : "-");
    md << buf;
  }
  if (j.contains("generation")) {
    md << "\n## Free-running greedy generation (" << o.gen_tokens
       << " tokens)\n\n| cache type | first divergence | agreement |\n|---|---|---|\n";
    for (const auto& g : j["generation"]["cases"]) {
      std::snprintf(buf, sizeof(buf), "| %s | %d | %.3f |\n",
                    g["cache_type"].get<std::string>().c_str(), g["first_divergence"].get<int>(),
                    g["agreement"].get<double>());
      md << buf;
    }
  }
  md << "\nPlots: kl_accumulated.png, kl_static.png, attn_mae_accumulated.png, "
        "attn_mae_static.png.\n";
  md.close();
  Plot(o.out, j["cases"], "kl_mean", "mean KL(exact || cache) per position bucket, accumulated",
       "accumulated", "kl_accumulated");
  Plot(o.out, j["cases"], "kl_mean", "mean KL(exact || cache) per position bucket, static",
       "static", "kl_static");
  Plot(o.out, j["cases"], "attn_mae_mean", "attention output MAE vs exact, accumulated",
       "accumulated", "attn_mae_accumulated");
  Plot(o.out, j["cases"], "attn_mae_mean", "attention output MAE vs exact, static", "static",
       "attn_mae_static");
  std::printf("%s/report.md, %s/eval.json\n", o.out.c_str(), o.out.c_str());
  return 0;
}

}  // namespace

Runner AddEvalCommand(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* c = app.add_subcommand("eval", "error accumulation of KV cache types under decoding");
  AddModelFlags(c, &o->model, "f32");
  c->add_option("-f,--file", o->file, "text (default: pydocs.txt in the cache)");
  c->add_option("--offset", o->offset, "byte offset into the text");
  c->add_option("-n,--tokens", o->n_tokens, "tokens of pseudo-decode")
      ->check(CLI::Range(256, 1 << 20));
  c->add_option("--cache-types", o->codecs, "cache types to compare with the exact cache");
  c->add_option("--schedules", o->schedules, "accumulated and/or static");
  c->add_option("--bucket", o->bucket, "positions per bucket")->check(CLI::Range(16, 1 << 20));
  c->add_option("--gen-tokens", o->gen_tokens, "free-running greedy tokens (0: skip)");
  c->add_option("--gen-prompt", o->gen_prompt, "prompt of the free-running generation");
  c->add_option("-o,--out", o->out, "output directory");
  c->add_option("--gsm", o->gsm.file,
                "task accuracy instead of pseudo-decode: problems from scripts/gsm_problems.py");
  c->add_option("--gsm-cache-types", o->gsm.codecs,
                "cache types of the task run (the first is the paired baseline)");
  c->add_option("--gsm-max-tokens", o->gsm.max_tokens, "generated tokens per answer at most")
      ->check(CLI::Range(1, 1 << 16));
  c->add_option("--gsm-limit", o->gsm.limit, "first N problems only (0: all)")
      ->check(CLI::Range(0, 1 << 20));
  return [o] { return Run(*o); };
}

}  // namespace kvarn::cli
