// The evaluation schedules of `kvarn eval` (spec §8.2, docs/eval.md).
//
// Pseudo-decode: a text is fed in chunks of `chunk` tokens (G = 128); each chunk is one step,
// so the cache's commit rule encodes its blocks at the next step and every later chunk, in
// every layer, attends to encoded history. Two schedules per cache type:
//   accumulated: the model runs on the cache under test alone. K/V written by layer l of a later
//     chunk were computed from activations that already attended to quantized history, so
//     errors feed forward across layers and steps, as in real decoding.
//   static: the cache under test receives the exact model's K/V (written by an exact-cache run
//     of the same chunk), and only the current chunk's forward runs on it. Errors reach this
//     chunk's logits but never the cache: the usual "quantize the exact cache" protocol.
// An exact run (f32 cache) goes in lockstep; every cache type is compared with it position
// by position.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "eval/metrics.h"
#include "model/model.h"

namespace kvarn::eval {

struct EvalCase {
  CodecSpec codec;
  bool static_schedule = false;
  std::string Label() const {
    return codec.Name() + (static_schedule ? " static" : " accumulated");
  }
};

struct CaseResult {
  EvalCase config;
  PositionBuckets positions{256};
  // Mean absolute error of each layer's attention output against the exact run's, per bucket:
  // sums [bucket][layer] over positions and channels, and the element count per bucket.
  std::vector<std::vector<double>> attn_abs_err;
  std::vector<int64_t> attn_count;
  // Quantization error of the keys this case wrote into its cache, per encoded token (every
  // token past the first chunk), per layer and KV head: E_M and E_D (spec §8.2).
  std::vector<double> key_e_m, key_e_d;
  // Bytes the case's cache spends per token per KV head (K and V) once a block is encoded, from
  // the cache's own page accounting (fp16 pages for f16/f32).
  double bytes_per_token_head = 0;
  double seconds = 0;
};

struct PseudoDecodeOptions {
  int chunk = 128;
  int bucket = 256;
  int n_threads = 1;
};

// progress(done_chunks, total_chunks) after each chunk.
Status RunPseudoDecode(const Model& model, const std::vector<int32_t>& tokens,
                       const std::vector<EvalCase>& cases, const PseudoDecodeOptions& opt,
                       const std::function<void(int, int)>& progress,
                       std::vector<CaseResult>* results);

// Free-running greedy generation with the exact cache and with the cache under test.
struct GenerationResult {
  std::string codec;
  std::vector<int32_t> exact, test;  // generated ids
  int first_divergence = -1;         // first step whose tokens differ; -1: none
  double agreement = 0;              // fraction of steps with equal tokens (same index)
};
Status RunGeneration(const Model& model, const std::vector<int32_t>& prompt, int n_steps,
                     const CodecSpec& codec, int n_threads, const std::vector<int32_t>* exact_ids,
                     GenerationResult* out);

// The same for several cache types at once (what kvarn eval runs): the exact run and every
// cache type decode in lockstep through Model::DecodeBatch, so the weights are read once per
// step for all of them. Results [codecs] equal RunGeneration's (tested).
Status RunGenerations(const Model& model, const std::vector<int32_t>& prompt, int n_steps,
                      const std::vector<CodecSpec>& codecs, int n_threads,
                      std::vector<GenerationResult>* results);

}  // namespace kvarn::eval
