// Reference (scalar) implementation of the tile codec stages; see tile_codec.h and tile_ref.h.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "quant/tile_codec.h"
#include "quant/tile_ref.h"

namespace kvarn::ref {
namespace {

void StoreF16(uint8_t* record, size_t offset, size_t i, float v) {
  const f16_t h = F32ToF16(v);
  std::memcpy(record + offset + 2 * i, &h, 2);
}
float LoadF16(const uint8_t* record, size_t offset, size_t i) {
  f16_t h;
  std::memcpy(&h, record + offset + 2 * i, 2);
  return F16ToF32(h);
}

}  // namespace

Status PrepareTokensRef(const TileShape& shape, const float* x, int n, f16_t* out) {
  const int D = shape.head_dim;
  std::vector<float> row(D);
  for (int t = 0; t < n; ++t) {
    for (int d = 0; d < D; ++d) {
      row[d] = x[size_t(t) * D + d];
      if (!std::isfinite(row[d]))
        return NonFinite("token " + std::to_string(t) + " channel " + std::to_string(d) +
                         ": value " + std::to_string(row[d]) + " is not finite");
    }
    if (shape.rotate) Fwht(row.data(), D);
    for (int d = 0; d < D; ++d) {
      if (std::fabs(row[d]) > 65504.0f)
        return NonFinite("token " + std::to_string(t) + " channel " + std::to_string(d) +
                         ": value " + std::to_string(row[d]) +
                         (shape.rotate ? " (after rotation)" : "") + " overflows fp16");
      out[size_t(t) * D + d] = F32ToF16(row[d]);
    }
  }
  return Status::Ok();
}

template <typename T>
void EncodeTileRef(const TileShape& shape, const f16_t* k, const f16_t* v, uint8_t* record,
                   TileEncodeInfo* info, RefControl* control) {
  const int D = shape.head_dim;
  const int G = shape.group;
  const TileRecordLayout L = shape.layout();

  // ---- K: tile [D rows = channels][G cols = tokens]; VarN cols = tokens first. ----
  std::vector<T> xk(size_t(D) * G);
  for (int t = 0; t < G; ++t)
    for (int d = 0; d < D; ++d) xk[size_t(d) * G + t] = T(F16ToF32(k[size_t(t) * D + d]));
  const VarnResult<T> vk = Varn(xk, D, G, shape.iters, control ? control->k_iter : -1);
  {
    std::vector<T> b(G);
    std::vector<uint8_t> codes(G);
    for (int d = 0; d < D; ++d) {
      const T kappa = std::exp(vk.log_row[d]);  // per-channel scale (VarN row)
      for (int t = 0; t < G; ++t)
        b[t] = xk[size_t(d) * G + t] * std::exp(-vk.log_col[t]) * std::exp(-vk.log_row[d]);
      T step, lo;
      RtnRow(b.data(), G, shape.k_bits, codes.data(), &step, &lo);
      PackRow(codes.data(), G, shape.k_bits, record + L.k_codes() + d * L.k_row_bytes());
      StoreF16(record, L.a_k(), d, float(kappa * step));
      StoreF16(record, L.z_k(), d, float(kappa * lo));
    }
    for (int t = 0; t < G; ++t) StoreF16(record, L.tau_k(), t, float(std::exp(vk.log_col[t])));
  }

  // ---- V: tile [G rows = tokens][D cols = channels]; VarN cols = channels first. ----
  std::vector<T> xv(size_t(G) * D);
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = T(F16ToF32(v[i]));
  const VarnResult<T> vv = Varn(xv, G, D, shape.iters, control ? control->v_iter : -1);
  {
    std::vector<T> b(D);
    std::vector<uint8_t> codes(D);
    for (int t = 0; t < G; ++t) {
      const T rho = std::exp(vv.log_row[t]);  // per-token scale (VarN row)
      for (int d = 0; d < D; ++d)
        b[d] = xv[size_t(t) * D + d] * std::exp(-vv.log_col[d]) * std::exp(-vv.log_row[t]);
      T step, lo;
      RtnRow(b.data(), D, shape.v_bits, codes.data(), &step, &lo);
      PackRow(codes.data(), D, shape.v_bits, record + L.v_codes() + t * L.v_row_bytes());
      StoreF16(record, L.a_v(), t, float(rho * step));
      StoreF16(record, L.z_v(), t, float(rho * lo));
    }
    for (int d = 0; d < D; ++d) StoreF16(record, L.gamma_v(), d, float(std::exp(vv.log_col[d])));
  }

  if (control != nullptr) {
    control->k_imbalances.assign(vk.imbalances.begin(), vk.imbalances.end());
    control->v_imbalances.assign(vv.imbalances.begin(), vv.imbalances.end());
  }
  if (info != nullptr) {
    info->k_initial_imbalance = float(vk.initial_imbalance);
    info->k_best_imbalance = float(vk.best_imbalance);
    info->k_best_iter = vk.best_iter;
    info->v_initial_imbalance = float(vv.initial_imbalance);
    info->v_best_imbalance = float(vv.best_imbalance);
    info->v_best_iter = vv.best_iter;
  }
}

template void EncodeTileRef<float>(const TileShape&, const f16_t*, const f16_t*, uint8_t*,
                                   TileEncodeInfo*, RefControl*);
template void EncodeTileRef<double>(const TileShape&, const f16_t*, const f16_t*, uint8_t*,
                                    TileEncodeInfo*, RefControl*);

void DecodeTileRef(const TileShape& shape, const uint8_t* record, float* k, float* v) {
  const int D = shape.head_dim;
  const int G = shape.group;
  const TileRecordLayout L = shape.layout();
  std::vector<uint8_t> codes(std::max(D, G));
  // K^[d][t] = (code * a_K[d] + z_K[d]) * tau_K[t], written token-major.
  for (int d = 0; d < D; ++d) {
    UnpackRow(record + L.k_codes() + d * L.k_row_bytes(), G, shape.k_bits, codes.data());
    const float a = LoadF16(record, L.a_k(), d);
    const float z = LoadF16(record, L.z_k(), d);
    for (int t = 0; t < G; ++t)
      k[size_t(t) * D + d] = (float(codes[t]) * a + z) * LoadF16(record, L.tau_k(), t);
  }
  // V^[t][d] = (code * a_V[t] + z_V[t]) * gamma_V[d].
  for (int t = 0; t < G; ++t) {
    UnpackRow(record + L.v_codes() + t * L.v_row_bytes(), D, shape.v_bits, codes.data());
    const float a = LoadF16(record, L.a_v(), t);
    const float z = LoadF16(record, L.z_v(), t);
    for (int d = 0; d < D; ++d)
      v[size_t(t) * D + d] = (float(codes[d]) * a + z) * LoadF16(record, L.gamma_v(), d);
  }
}

}  // namespace kvarn::ref
