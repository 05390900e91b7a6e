/* kvarn: KV-cache quantization for LLM inference (KVarN, arXiv 2606.03458).
 *
 * The C API of libkvarn (libkvarn.so.0; CMake: find_package(kvarn), target kvarn::kvarn;
 * pkg-config: kvarn). Four objects:
 *
 *   kvarn_codec    encodes the keys and values of one KV head for a block of tokens into a byte
 *                  record and back. "kvarn_*" codecs are the published method (Hadamard
 *                  rotation, dual-axis variance normalization, asymmetric round-to-nearest;
 *                  records are byte-compatible with the reference implementation, see
 *                  docs/format.md); the baselines (kivi, hadamard, varn, q8_0, q4_0, q4_1, f16,
 *                  f32) sit behind the same calls.
 *   kvarn_cache    the paged, quantized KV cache of an engine: sequences, a step protocol with
 *                  the reference's commit rule (completed tiles are encoded at the next step;
 *                  the first tile, the attention sink, and the unfinished last tile stay fp16),
 *                  a byte budget, and fused decode attention that reads the packed codes.
 *   kvarn_model    a GGUF model (llama, qwen2) with its tokenizer, running over a kvarn_cache;
 *   kvarn_sampler  with a seeded sampler: enough for an engine, a test or a notebook to
 *                  reproduce `kvarn run` and `kvarn eval`.
 * Session files persist one cache sequence (docs/session-format.md): `kvarn run
 * --prompt-cache` and kvarn_session_save/kvarn_session_load write and read the same files.
 *
 * Errors: every fallible call returns a kvarn_status; kvarn_last_error() then holds a message
 * naming the problem, for the calling thread. A failing call changes nothing (a cache keeps
 * its sequences and tokens, output buffers may hold partial results).
 *
 * Arrays are row-major, shapes in brackets: k[n][head_dim] is n rows of head_dim floats.
 *
 * Thread safety:
 *   - kvarn_codec and kvarn_model are immutable after init: any number of threads may use
 *     one at the same time (a model may run forwards on different caches concurrently).
 *   - kvarn_cache is not synchronized. A call that changes a cache (sequence add, remove, copy;
 *     begin, write, end, abort step; truncate; kvarn_model_forward/generate on it;
 *     kvarn_session_save, which encodes committed tiles, and kvarn_session_load) must not
 *     overlap any other call on the same cache. Calls that only read it (attend, length,
 *     stats) may run concurrently with each other. Different caches are independent.
 *   - kvarn_sampler holds random state: one thread at a time.
 *   - n_threads arguments split one call's work over kvarn's shared worker pool; concurrent
 *     callers are safe (a call that finds the pool busy runs its work on its own thread).
 *     Results never depend on n_threads.
 *   - kvarn_set_force_reference is process-wide: set it before starting threads.
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

/* ======================================================================== codec */

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
KVARN_API kvarn_status kvarn_codec_encode(const kvarn_codec* codec, const float* k, const float* v,
                                          int n_tokens, uint8_t* record, size_t record_size);
/* Decodes a record into k, v [n_tokens][head_dim] in the requested frame. */
KVARN_API kvarn_status kvarn_codec_decode(const kvarn_codec* codec, const uint8_t* record,
                                          size_t record_size, int n_tokens, float* k, float* v,
                                          kvarn_frame frame);

/* ======================================================================== KV cache */

typedef struct kvarn_cache kvarn_cache; /* opaque */

/* Creates an empty cache for n_layers x n_kv_heads x head_dim with a codec by name (NULL:
 * kvarn_k4v2_g128). max_tokens: context limit per sequence. byte_budget: all pages of all
 * sequences together (records, fp16 sink and tail pages, per-token rows); 0: no limit. A step
 * that would exceed it fails with KVARN_ERR_OUT_OF_MEMORY and changes nothing. */
KVARN_API kvarn_status kvarn_cache_init(int n_layers, int n_kv_heads, int head_dim,
                                        const char* codec, int max_tokens, size_t byte_budget,
                                        kvarn_cache** out);
KVARN_API void kvarn_cache_free(kvarn_cache* cache);
/* Canonical codec name, e.g. "kvarn_k4v2_g128". Owned by the cache. */
KVARN_API const char* kvarn_cache_codec_name(const kvarn_cache* cache);
/* Tokens per block: the tile G of tile codecs (128 for the default), the page granularity of
 * per-token codecs. */
KVARN_API int kvarn_cache_block_tokens(const kvarn_cache* cache);

/* Sequences: ids are small non-negative integers, reused after removal. A copy is a deep copy
 * (records, sink, tail, commit state): e.g. one prefilled prompt, several continuations. */
KVARN_API kvarn_status kvarn_cache_add_sequence(kvarn_cache* cache, int* seq);
KVARN_API kvarn_status kvarn_cache_remove_sequence(kvarn_cache* cache, int seq);
KVARN_API kvarn_status kvarn_cache_copy_sequence(kvarn_cache* cache, int src, int* dst);
/* Tokens the sequence holds, and how many of them are encoded (records: no longer
 * truncatable). */
KVARN_API kvarn_status kvarn_cache_length(const kvarn_cache* cache, int seq, int* length);
KVARN_API kvarn_status kvarn_cache_encoded_tokens(const kvarn_cache* cache, int seq, int* n);

/* The step protocol, per sequence:
 *   begin_step(seq, n)  applies the commit rule (encodes every completed non-sink tile whose
 *                       tokens were all written by earlier steps), then reserves positions
 *                       [length, length + n). All allocation happens here, all or nothing.
 *   write(seq, layer, pos, n, k, v)  k, v [n][n_kv_heads][head_dim]: the model-frame
 *                       (post-RoPE) keys and values of positions pos .. pos+n-1 of one layer,
 *                       inside this step's positions; any order of layers and chunks. NaN/Inf
 *                       fail with KVARN_ERR_NON_FINITE naming layer, position and head.
 *   end_step(seq)       commits the step; every position of every layer must have been written
 *                       (KVARN_ERR_INVALID_ARGUMENT naming the first gap otherwise; the step stays
 *                       open: write it, or abort).
 *   abort_step(seq)     abandons the open step; earlier tokens are untouched.
 *   truncate(seq, len)  rolls back to len tokens (e.g. rejected draft tokens); tokens that are
 *                       already encoded cannot be rolled back (KVARN_ERR_OUT_OF_RANGE). */
KVARN_API kvarn_status kvarn_cache_begin_step(kvarn_cache* cache, int seq, int n_new);
KVARN_API kvarn_status kvarn_cache_write(kvarn_cache* cache, int seq, int layer, int pos, int n,
                                         const float* k, const float* v);
KVARN_API kvarn_status kvarn_cache_end_step(kvarn_cache* cache, int seq);
KVARN_API kvarn_status kvarn_cache_abort_step(kvarn_cache* cache, int seq);
KVARN_API kvarn_status kvarn_cache_truncate(kvarn_cache* cache, int seq, int length);

/* Attention of n_q queries of one layer over a sequence: q [n_q][n_heads][head_dim] in the
 * model frame (n_heads a multiple of n_kv_heads: grouped-query attention); query i sits at
 * position pos0 + i and attends causally to positions [0, pos0 + i], all of which must be
 * written (its own K/V included, as in decoding: write, then attend). out [n_q][n_heads]
 * [head_dim]. scale: softmax scale; 0 means 1/sqrt(head_dim). Reads the records' packed codes
 * directly (fused), or runs the scalar reference when forced (kvarn_set_force_reference). */
KVARN_API kvarn_status kvarn_cache_attend(const kvarn_cache* cache, int seq, int layer,
                                          const float* q, int n_q, int n_heads, int pos0,
                                          float scale, int n_threads, float* out);

/* Bytes the cache holds, by kind, from its own page accounting. */
typedef struct kvarn_cache_stats {
  size_t record_bytes;  /* encoded tiles */
  size_t sink_bytes;    /* fp16 first tile of every sequence (tile codecs) */
  size_t tail_bytes;    /* fp16 tiles not yet encoded */
  size_t row_bytes;     /* per-token codec rows (f32, f16, q8_0, q4_0, q4_1) */
  size_t scratch_bytes; /* the cache's staging buffers */
  size_t total_bytes;   /* the sum of the above */
  size_t budget_bytes;  /* the byte budget (SIZE_MAX: none) */
  int64_t tokens;       /* tokens of all sequences */
} kvarn_cache_stats;
KVARN_API kvarn_status kvarn_cache_get_stats(const kvarn_cache* cache, kvarn_cache_stats* out);

/* ======================================================================== model */

typedef struct kvarn_model kvarn_model;     /* opaque */
typedef struct kvarn_sampler kvarn_sampler; /* opaque */

typedef struct kvarn_model_info {
  const char* arch; /* general.architecture ("llama", "qwen2"); owned by the model */
  const char* name; /* general.name */
  int n_layers, n_embd, n_ff, n_heads, n_kv_heads, head_dim, n_vocab, n_ctx_train;
  int32_t bos, eos; /* -1 when the model names none */
  int add_bos;      /* whether prompts start with bos (tokenizer.ggml.add_bos_token) */
} kvarn_model_info;

/* Maps and validates a GGUF file (errors name the file, key or tensor). */
KVARN_API kvarn_status kvarn_model_load(const char* path, kvarn_model** out);
KVARN_API void kvarn_model_free(kvarn_model* model);
KVARN_API kvarn_status kvarn_model_get_info(const kvarn_model* model, kvarn_model_info* out);
/* A cache shaped for the model (see kvarn_cache_init). */
KVARN_API kvarn_status kvarn_model_cache_init(const kvarn_model* model, const char* codec,
                                              int max_tokens, size_t byte_budget,
                                              kvarn_cache** out);

/* Text to token ids. add_bos: 1 prepend bos, 0 do not, -1 as the model asks (what `kvarn run`
 * does). parse_special: recognize control tokens such as "<|im_start|>" written in the text.
 * *n_ids receives the count; if it exceeds capacity, KVARN_ERR_BUFFER_TOO_SMALL (call again
 * with a larger buffer; ids may be NULL with capacity 0 to ask). */
KVARN_API kvarn_status kvarn_model_tokenize(const kvarn_model* model, const char* text,
                                            size_t text_len, int add_bos, int parse_special,
                                            int32_t* ids, size_t capacity, size_t* n_ids);
/* A chat prompt through the model's template (ChatML: SmolLM2, Qwen2.5), as `kvarn run --chat`
 * builds it: roles "system", "user" or "assistant"; control tokens are recognized only where the
 * template writes them, never in the contents. */
KVARN_API kvarn_status kvarn_model_tokenize_chat(const kvarn_model* model, const char* const* roles,
                                                 const char* const* contents, size_t n_messages,
                                                 int add_generation_prompt, int32_t* ids,
                                                 size_t capacity, size_t* n_ids);
/* Token ids to text (UTF-8 bytes as the tokens hold them; control tokens only if
 * render_control). *text_len receives the length without the terminating NUL, which is written
 * when capacity > *text_len; a smaller capacity gives KVARN_ERR_BUFFER_TOO_SMALL. */
KVARN_API kvarn_status kvarn_model_detokenize(const kvarn_model* model, const int32_t* ids,
                                              size_t n_ids, int render_control, char* text,
                                              size_t capacity, size_t* text_len);
/* 1 if token ends a generation (eos, and the end-of-turn tokens of the chat formats). */
KVARN_API int kvarn_model_is_eog(const kvarn_model* model, int32_t token);

typedef enum kvarn_logits {
  KVARN_LOGITS_LAST = 0, /* logits [n_vocab] of the last token (what decoding needs) */
  KVARN_LOGITS_ALL = 1   /* logits [n_tokens][n_vocab] of every token: normed hidden states of
                            the chunk times the output matrix in one product, as `kvarn eval` and
                            `kvarn ppl` compute them. Its last row can differ from
                            KVARN_LOGITS_LAST's in the last bits (another matrix path). */
} kvarn_logits;

/* Optional observation points of a forward pass (kvarn eval's static schedule and attention
 * error are built on them). Called on the calling thread, layer by layer. */
typedef struct kvarn_forward_hooks {
  /* Layer's K and V [n_tokens][n_kv_heads * head_dim] (post-RoPE, model frame) before they are
   * written to the cache; the callback may modify them. NULL: none. */
  void (*on_kv)(void* user, int layer, float* k, float* v, int n_tokens);
  /* Layer's attention output [n_tokens][n_heads * head_dim], before the output projection. */
  void (*on_attention)(void* user, int layer, const float* out, int n_tokens);
  void* user;
} kvarn_forward_hooks;

/* Appends n_tokens tokens to seq and runs them through the model (one cache step: a prefill
 * chunk, or one decode token). logits may be NULL. hooks may be NULL. On error the step is
 * abandoned and the sequence keeps its earlier tokens; the message names what failed (a token
 * id, a full context or budget, non-finite activations with layer and position). */
KVARN_API kvarn_status kvarn_model_forward(const kvarn_model* model, kvarn_cache* cache, int seq,
                                           const int32_t* tokens, int n_tokens, int n_threads,
                                           kvarn_logits which, float* logits,
                                           const kvarn_forward_hooks* hooks);

/* A sampler: greedy at temperature 0; otherwise temperature, top-k (0 off), top-p (1 off) and
 * min-p (0 off) in llama.cpp's order, then a draw from a generator seeded with seed. */
KVARN_API kvarn_status kvarn_sampler_init(float temperature, int top_k, float top_p, float min_p,
                                          uint64_t seed, kvarn_sampler** out);
KVARN_API void kvarn_sampler_free(kvarn_sampler* sampler);
/* The next token for logits [n_vocab]; -1 if an argument is invalid. */
KVARN_API int32_t kvarn_sampler_sample(kvarn_sampler* sampler, const float* logits, int n_vocab);

/* Generation as `kvarn run` does it: samples from logits [n_vocab] (those after the prompt),
 * feeds each sampled token to seq and samples again, up to n_predict tokens; stops before an
 * end-of-generation token (not returned) or when the sequence reaches the cache's max_tokens
 * (the token sampled then is returned but not fed). tokens_out [n_predict] receives the
 * generated ids, *n_out their count; last_logits (may be NULL) [n_vocab] the logits after the
 * last fed token. */
KVARN_API kvarn_status kvarn_model_generate(const kvarn_model* model, kvarn_cache* cache, int seq,
                                            kvarn_sampler* sampler, const float* logits,
                                            int n_predict, int n_threads, int32_t* tokens_out,
                                            int* n_out, float* last_logits);

/* ======================================================================== sessions */

/* Saves sequence seq of cache, which holds exactly tokens [n_tokens] (the ids it was fed), to
 * path, with the logits [n_vocab] that followed the last token (may be NULL). The file records
 * the model's identity, the cache's shape and codec, the tokens and the pages as stored; it
 * appears atomically. Tiles the next step would encode are encoded first (the commit rule
 * applied early: the sequence continues identically). */
KVARN_API kvarn_status kvarn_session_save(const kvarn_model* model, kvarn_cache* cache, int seq,
                                          const int32_t* tokens, size_t n_tokens,
                                          const float* logits, const char* path);
/* Restores a session file into a new sequence *seq of cache: all of it (prompt NULL), or the
 * longest prefix of prompt [n_prompt] the file can supply (llama.cpp's --prompt-cache rule:
 * the common prefix of saved tokens and prompt, less the prompt's last token unless the file
 * holds the logits after it, cut back to a tile boundary where it would split an encoded tile).
 * *n_reused: tokens restored; run the rest of the prompt from there. When everything the file
 * holds was restored and it holds the logits after its last token, *has_logits is 1 (may be
 * NULL) and logits [n_vocab] (may be NULL) receives them: with *n_reused == n_prompt the
 * prompt needs no evaluation at all.
 * The file is validated before anything is allocated; a file of another model, codec or shape
 * is refused with a message naming the difference; a truncated or corrupted file gets
 * KVARN_ERR_CORRUPT_DATA saying which ("truncated", "checksum mismatch"). On error the cache is
 * unchanged. */
KVARN_API kvarn_status kvarn_session_load(const kvarn_model* model, kvarn_cache* cache,
                                          const char* path, const int32_t* prompt, size_t n_prompt,
                                          int* seq, size_t* n_reused, float* logits,
                                          int* has_logits);
/* The token ids a session file holds (its header validated, no model needed); capacity and
 * KVARN_ERR_BUFFER_TOO_SMALL as for kvarn_model_tokenize. */
KVARN_API kvarn_status kvarn_session_tokens(const char* path, int32_t* tokens, size_t capacity,
                                            size_t* n_tokens);

/* ======================================================================== process */

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
