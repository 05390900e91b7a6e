// The integer-domain read path of tile records (decode attention over KVarN-style records),
// shared by the SIMD kernels (attention_simd.cc, int_kernels-inl.h) and the readable scalar
// reference (attention_int_ref.cc). docs/attention.md derives it; in short, per record tile and
// query row (spec §6.2 with both folded operands quantized):
//
//   scores   u = q~ * a_K (float), s_q = max|u| / 127, q8 = round(u / s_q) in [-127, 127]
//            c0 = q~ . z_K + mid_K * sum_d (u_d - s_q * q8_d)      (exact zero correction)
//            s_t = lambda * tau_K[t] * (s_q * sum_d q8_d * codeK[d][t] + c0)   (int32 dot)
//   softmax  local to the tile: M = max_t s_t, p_t = exp(s_t - M), l = sum_t p_t
//   values   w = p * a_V, s_p = max w / 255, p8 = round(w / s_p) in [0, 255]
//            zsum = sum_t p_t z_V[t] + mid_V * sum_t (w_t - s_p * p8_t)
//            o_d = gamma_V[d] * (s_p * sum_t p8_t * codeV[t][d] + zsum)         (int32 dot)
//   two parts: with 4- or 8-bit values the codec's own error is several times smaller, and
//            both operands take a second byte of precision:
//            q: hi = round(u / s_q), lo = round((u - s_q * hi) * 254 / s_q), u ~ s_q (hi + lo/254)
//            w: hi = floor(w / s_p), lo = round((w - s_p * hi) * 255 / s_p), w ~ s_p (hi + lo/255)
//            each part its own int32 sum; the residual corrections use the two-part values.
//   merge    (M, l, o) into the running (m, l, acc) of the row, log-sum-exp style.
// mid = (2^b - 1) / 2, the middle code: the rounding residuals of q8 (p8) are multiplied by the
// codes; the part they would contribute through the mean code is added back exactly in float,
// leaving only residual x (code - mid), about half of residual x code.
#pragma once

namespace kvarn::attn {

constexpr float kQueryLevels = 127.0f;    // int8 magnitude of the folded query
constexpr float kWeightLevels = 255.0f;   // uint8 magnitude of the folded probabilities
constexpr float kQueryLoLevels = 254.0f;  // second query part: units of s_q / 254

inline float CodeMid(int bits) { return 0.5f * float((1 << bits) - 1); }

// Byte parts of the quantized query and probabilities (see above).
inline int IntParts(int v_bits) { return v_bits >= 4 ? 2 : 1; }

}  // namespace kvarn::attn
