// The task-accuracy part of `kvarn eval` (--gsm): greedy chain-of-thought answers to GSM-style
// problems after a shared few-shot prefix, per cache type, paired against a baseline cache.
#pragma once

#include <string>
#include <vector>

#include "model/model.h"
#include "model/tokenizer.h"

namespace kvarn::cli {

struct GsmOptions {
  std::string file;        // scripts/gsm_problems.py output
  std::vector<std::string> codecs = {"f16", "kvarn_k4v2_g128", "kvarn_k2v2_g128",
                                     "kivi_k2v2_g128"};  // the first is the paired baseline
  int max_tokens = 320;    // generated tokens per answer at most
  int limit = 0;           // problems to run (0: all in the file)
  int threads = 1;
  std::string model_name;  // for the report
  std::string out;         // output directory (exists)
};

// Writes OUT/gsm.json, OUT/gsm_report.md and, as it goes, OUT/gsm_progress.jsonl.
int RunGsm(const Model& model, const Tokenizer& tok, const GsmOptions& o);

}  // namespace kvarn::cli
