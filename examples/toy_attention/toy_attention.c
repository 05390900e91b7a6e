/* A toy attention layer over libkvarn's KV cache, the way an engine would use the C API.
 *
 * Two layers of single-head-group attention (4 query heads over 2 KV heads, head_dim 64) with
 * random projection weights decode 300 random token embeddings one step at a time: per step
 * and layer, project q, k, v; write k and v into the cache; attend the queries. The cache is
 * created twice, with the f16 codec and with KVarN (kvarn_k4v2_g128: 4-bit keys, 2-bit values
 * per tile of 128 tokens, fp16 sink and tail), and the last step's outputs are compared with
 * exact attention over the unquantized K/V computed here.
 *
 * Exits 0 when f16 is within the fp16 rounding bound of exact attention and KVarN's error is
 * under half that of a baseline that ignores the keys (uniform weights: the mean of V); prints
 * the cache's bytes by kind.
 *
 *   cmake -S examples/toy_attention -B build/toy -DCMAKE_PREFIX_PATH=<prefix>
 *   cc toy_attention.c $(pkg-config --cflags --libs kvarn) -lm    (the same, with pkg-config)
 */
#include <kvarn/kvarn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { L = 2, HK = 2, H = 4, D = 64, E = 96, T = 300 };

static unsigned long long rng_state = 12345;
static float Rand(void) { /* uniform in [-1, 1) */
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

/* y[rows] = W[rows][E] x[E] */
static void Project(const float* w, const float* x, int rows, float* y) {
  for (int r = 0; r < rows; ++r) {
    float s = 0;
    for (int e = 0; e < E; ++e) s += w[r * E + e] * x[e];
    y[r] = s;
  }
}

static float wq[L][H * D * E], wk[L][HK * D * E], wv[L][HK * D * E];
static float xs[T][E];
static float keys[L][T][HK * D], vals[L][T][HK * D]; /* exact K/V, for the comparison */

#define CHECK(call)                                                                          \
  do {                                                                                       \
    kvarn_status st_ = (call);                                                               \
    if (st_ != KVARN_OK) {                                                                   \
      fprintf(stderr, "%s: %s (%s)\n", #call, kvarn_last_error(), kvarn_status_string(st_)); \
      exit(2);                                                                               \
    }                                                                                        \
  } while (0)

/* Decodes all tokens through a cache of `codec`; returns the worst error of the last step's
 * outputs against exact attention, the uniform baseline's in *uniform_err, and in *f16_bound
 * the worst case of rounding K and V to fp16 (unit roundoff u = 2^-11): a score moves by at
 * most delta = sum_d |q_d| max_s |k_sd| u / sqrt(D), so the softmax weights by a factor within
 * e^(+-2 delta) and the output by at most max|v| (e^(2 delta) - 1), plus V's own max|v| u. */
static double Run(const char* codec, double* uniform_err, double* f16_bound) {
  kvarn_cache* cache = NULL;
  CHECK(kvarn_cache_init(L, HK, D, codec, T, 0, &cache));
  int seq = -1;
  CHECK(kvarn_cache_add_sequence(cache, &seq));
  float q[H * D], out[H * D];
  double err = 0, uni = 0;
  for (int t = 0; t < T; ++t) {
    CHECK(kvarn_cache_begin_step(cache, seq, 1)); /* commits completed tiles first */
    for (int l = 0; l < L; ++l) {
      Project(wq[l], xs[t], H * D, q);
      Project(wk[l], xs[t], HK * D, keys[l][t]);
      Project(wv[l], xs[t], HK * D, vals[l][t]);
      CHECK(kvarn_cache_write(cache, seq, l, t, 1, keys[l][t], vals[l][t]));
      CHECK(kvarn_cache_attend(cache, seq, l, q, 1, H, t, 0.0f, 1, out));
      if (t != T - 1) continue;
      for (int h = 0; h < H; ++h) { /* exact attention, in double */
        const int kh = h / (H / HK);
        double delta = 0, vmax = 0;
        for (int d = 0; d < D; ++d) {
          double kmax = 0;
          for (int s = 0; s <= t; ++s) {
            kmax = fmax(kmax, fabs(keys[l][s][kh * D + d]));
            vmax = fmax(vmax, fabs(vals[l][s][kh * D + d]));
          }
          delta += fabs(q[h * D + d]) * kmax * ldexp(1.0, -11) / sqrt((double)D);
        }
        *f16_bound = fmax(*f16_bound, vmax * (exp(2 * delta) - 1) + vmax * ldexp(1.0, -11));
        double w[T], mx = -1e300, den = 0;
        for (int s = 0; s <= t; ++s) {
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += (double)q[h * D + d] * keys[l][s][kh * D + d];
          w[s] = dot / sqrt((double)D);
          if (w[s] > mx) mx = w[s];
        }
        for (int s = 0; s <= t; ++s) den += (w[s] = exp(w[s] - mx));
        for (int d = 0; d < D; ++d) {
          double exact = 0, mean = 0;
          for (int s = 0; s <= t; ++s) {
            exact += w[s] / den * vals[l][s][kh * D + d];
            mean += vals[l][s][kh * D + d] / (t + 1);
          }
          err = fmax(err, fabs(out[h * D + d] - exact));
          uni = fmax(uni, fabs(mean - exact));
        }
      }
    }
    CHECK(kvarn_cache_end_step(cache, seq));
  }
  kvarn_cache_stats st;
  CHECK(kvarn_cache_get_stats(cache, &st));
  printf(
      "%-16s %lld tokens: %zu bytes (records %zu, fp16 sink %zu, fp16 tail %zu, rows %zu); "
      "max |error| %.5f\n",
      codec, (long long)st.tokens, st.record_bytes + st.sink_bytes + st.tail_bytes + st.row_bytes,
      st.record_bytes, st.sink_bytes, st.tail_bytes, st.row_bytes, err);
  kvarn_cache_free(cache);
  *uniform_err = uni;
  return err;
}

int main(void) {
  printf("libkvarn, SIMD target %s\n", kvarn_simd_target());
  /* Weights scaled so that projections have unit-order magnitude. */
  const float ws = 1.0f / sqrtf((float)E);
  for (int l = 0; l < L; ++l) {
    for (int i = 0; i < H * D * E; ++i) wq[l][i] = Rand() * ws * 6.0f; /* peaked attention */
    for (int i = 0; i < HK * D * E; ++i) wk[l][i] = Rand() * ws * 2.0f;
    for (int i = 0; i < HK * D * E; ++i) wv[l][i] = Rand() * ws;
  }
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e) xs[t][e] = Rand();

  double uni = 0, bound = 0;
  const double err_f16 = Run("f16", &uni, &bound);
  const double err_kvarn = Run("kvarn_k4v2_g128", &uni, &bound);
  printf("uniform-attention baseline error %.5f, fp16 rounding bound %.5f\n", uni, bound);
  int ok = 1;
  if (!(err_f16 <= bound)) {
    fprintf(stderr, "f16 error %.5f exceeds the fp16 rounding bound %.5f\n", err_f16, bound);
    ok = 0;
  }
  if (!(err_kvarn < 0.5 * uni)) {
    fprintf(stderr, "kvarn error %.5f is not well below the baseline's %.5f\n", err_kvarn, uni);
    ok = 0;
  }
  printf(ok ? "ok\n" : "FAILED\n");
  return ok ? 0 : 1;
}
