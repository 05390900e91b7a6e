/* kvarn: KV-cache quantization for LLM inference (KVarN, arXiv 2606.03458).
 *
 * The C API of libkvarn. A codec encodes the keys and values of one KV head for a block of
 * tokens into a byte record and back. "kvarn_*" codecs are the published method (Hadamard
 * rotation, dual-axis variance normalization, asymmetric round-to-nearest; records are
 * byte-compatible with the reference implementation, see docs/format.md); the baselines
 * (kivi, hadamard, varn, q8_0, q4_0, q4_1, f16, f32) sit behind the same calls.
 *
 * Every fallible call returns a kvarn_status; kvarn_last_error() then holds a message naming
 * the problem, for the calling thread. Arrays are token-major: k[n][head_dim].
 */
#ifndef KVARN_KVARN_H_
#define KVARN_KVARN_H_

#include <stddef.h>
#include <stdint.h>

#if defined(KVARN_BUILDING_LIBRARY)
#define KVARN_API __attribute__((visibility("default")))
#else
#define KVARN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvarn_status {
  KVARN_OK = 0,
  KVARN_ERR_INVALID_ARGUMENT = 1,
  KVARN_ERR_UNSUPPORTED = 2,
  KVARN_ERR_NON_FINITE = 3,
  KVARN_ERR_BUFFER_TOO_SMALL = 4,
  KVARN_ERR_CORRUPT_DATA = 5,
  KVARN_ERR_OUT_OF_MEMORY = 6,
  KVARN_ERR_IO = 7,
  KVARN_ERR_OUT_OF_RANGE = 8,
  KVARN_ERR_INTERNAL = 9
} kvarn_status;

/* Frame of decoded values: the model's frame, or the Hadamard-rotated frame records store. */
typedef enum kvarn_frame { KVARN_FRAME_MODEL = 0, KVARN_FRAME_ROTATED = 1 } kvarn_frame;

typedef struct kvarn_codec kvarn_codec; /* opaque */

/* A short name of a status code ("non-finite value"). Never NULL. */
KVARN_API const char* kvarn_status_string(kvarn_status status);
/* The message of the last failing call on this thread ("" if none). Valid until the next call. */
KVARN_API const char* kvarn_last_error(void);

/* Creates a codec by name for a head dimension. Names: kvarn_k4v2_g128 (default),
 * kvarn_k4v4_g128, kvarn_k2v2_g128, kvarn_k4v2_g64, kvarn_k4v4_g64; families with free
 * parameters {kvarn,kivi,hadamard,varn}[_k<b>v<b>][_g<G>][_i<iterations>]; per-token
 * f32, f16, q8_0, q4_0, q4_1. NULL name means kvarn_k4v2_g128. */
KVARN_API kvarn_status kvarn_codec_init(const char* name, int head_dim, kvarn_codec** out);
KVARN_API void kvarn_codec_free(kvarn_codec* codec);

/* Canonical name, e.g. "kvarn_k4v2_g128". Owned by the codec. */
KVARN_API const char* kvarn_codec_name(const kvarn_codec* codec);
/* Tokens one record holds: G for tile codecs, 1 for per-token codecs. */
KVARN_API int kvarn_codec_tokens_per_record(const kvarn_codec* codec);
/* Bytes of a record of n tokens (n must equal G for tile codecs). 0 if n is invalid. */
KVARN_API size_t kvarn_codec_record_bytes(const kvarn_codec* codec, int n_tokens);

/* Encodes k, v [n_tokens][head_dim] (model frame, finite) into record (record_size bytes).
 * NaN, Inf, or values that overflow fp16 after rotation give KVARN_ERR_NON_FINITE. */
KVARN_API kvarn_status kvarn_codec_encode(const kvarn_codec* codec, const float* k,
                                          const float* v, int n_tokens, uint8_t* record,
                                          size_t record_size);
/* Decodes a record into k, v [n_tokens][head_dim] in the requested frame. */
KVARN_API kvarn_status kvarn_codec_decode(const kvarn_codec* codec, const uint8_t* record,
                                          size_t record_size, int n_tokens, float* k, float* v,
                                          kvarn_frame frame);

/* Forces the scalar reference kernels instead of SIMD (process-wide; also
 * KVARN_FORCE_REFERENCE=1 in the environment). */
KVARN_API void kvarn_set_force_reference(int force);
/* The SIMD target the fast kernels run on here, e.g. "AVX3_DL", "AVX2", or "reference".
 * The string stays valid until the calling thread calls this again. */
KVARN_API const char* kvarn_simd_target(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVARN_KVARN_H_ */
