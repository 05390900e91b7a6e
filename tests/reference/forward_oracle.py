#!/usr/bin/env python3
"""Independent numpy forward pass of a llama/qwen2 GGUF model (test oracle, never run-time).

Weights are dequantized with the `gguf` package's own dequantizer (gguf.quants.dequantize),
layer by layer, and the whole forward pass runs in float64 with an exact (unquantized) KV
history, so its logits are what kvarn's f32 cache should produce up to float32 rounding.

Usage: forward_oracle.py MODEL.gguf OUT IDS [IDS ...]
  each IDS is a comma-separated list of token ids (one prompt). OUT.json gets, per prompt, the
  ids, the logits' std and argmax; OUT.f32 the last position's logits of every prompt, float32
  little-endian, one [n_vocab] vector after the other (binary keeps the golden file small).
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.parts[f.data[0]]
    if f.types and f.types[0].name == "STRING":
        return bytes(v).decode("utf-8")
    return v.tolist()[0] if hasattr(v, "tolist") else v


class Oracle:
    def __init__(self, path):
        self.r = GGUFReader(path)
        self.t = {t.name: t for t in self.r.tensors}
        self.arch = field(self.r, "general.architecture")
        a = self.arch + "."
        self.n_layers = int(field(self.r, a + "block_count"))
        self.E = int(field(self.r, a + "embedding_length"))
        self.H = int(field(self.r, a + "attention.head_count"))
        self.Hk = int(field(self.r, a + "attention.head_count_kv", self.H))
        self.D = self.E // self.H
        self.eps = float(field(self.r, a + "attention.layer_norm_rms_epsilon", 1e-5))
        self.base = float(field(self.r, a + "rope.freq_base", 10000.0))
        self.neox = self.arch != "llama"

    def w(self, name):
        t = self.t.get(name)
        if t is None:
            return None
        return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(
            [int(x) for x in reversed(t.shape)] if len(t.shape) > 1 else [int(t.shape[0])])

    def rope(self, x, pos):
        # x [n][heads][D]
        D = self.D
        half = D // 2
        inv = self.base ** (-2.0 * np.arange(half) / D)
        ang = np.outer(pos, inv)  # [n][half]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        y = x.copy()
        if self.neox:
            a, b = x[..., :half], x[..., half:]
            y[..., :half] = a * c - b * s
            y[..., half:] = a * s + b * c
        else:
            a, b = x[..., 0::2], x[..., 1::2]
            y[..., 0::2] = a * c - b * s
            y[..., 1::2] = a * s + b * c
        return y

    def norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def forward(self, ids):
        n = len(ids)
        emb = self.w("token_embd.weight")
        x = emb[np.array(ids)]
        del emb
        pos = np.arange(n, dtype=np.float64)
        g = self.H // self.Hk
        for l in range(self.n_layers):
            p = f"blk.{l}."
            xn = self.norm(x, self.w(p + "attn_norm.weight"))
            q = xn @ self.w(p + "attn_q.weight").T
            k = xn @ self.w(p + "attn_k.weight").T
            v = xn @ self.w(p + "attn_v.weight").T
            for name, arr in (("attn_q.bias", q), ("attn_k.bias", k), ("attn_v.bias", v)):
                b = self.w(p + name)
                if b is not None:
                    arr += b
            q = self.rope(q.reshape(n, self.H, self.D), pos)
            k = self.rope(k.reshape(n, self.Hk, self.D), pos)
            v = v.reshape(n, self.Hk, self.D)
            out = np.zeros((n, self.H, self.D))
            mask = np.triu(np.full((n, n), -np.inf), 1)
            for h in range(self.H):
                kh = h // g
                s = q[:, h, :] @ k[:, kh, :].T / np.sqrt(self.D) + mask
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                out[:, h, :] = s @ v[:, kh, :]
            x = x + out.reshape(n, -1) @ self.w(p + "attn_output.weight").T
            xn = self.norm(x, self.w(p + "ffn_norm.weight"))
            gt = xn @ self.w(p + "ffn_gate.weight").T
            up = xn @ self.w(p + "ffn_up.weight").T
            x = x + (gt / (1 + np.exp(-gt)) * up) @ self.w(p + "ffn_down.weight").T
        xn = self.norm(x[-1], self.w("output_norm.weight"))
        out_w = self.w("output.weight")
        if out_w is None:
            out_w = self.w("token_embd.weight")
        return xn @ out_w.T


def main():
    model, out = sys.argv[1], sys.argv[2]
    prompts = [[int(t) for t in a.split(",")] for a in sys.argv[3:]]
    o = Oracle(model)
    res = {"model": model.split("/")[-1], "prompts": []}
    vectors = []
    for ids in prompts:
        logits = o.forward(ids)
        vectors.append(logits.astype("<f4"))
        res["prompts"].append({"ids": ids, "std": float(np.std(logits)),
                               "argmax": int(np.argmax(logits)), "n_vocab": len(logits)})
        print(f"{len(ids)} tokens: std {np.std(logits):.4f}, argmax {int(np.argmax(logits))}",
              file=sys.stderr)
    with open(out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    np.concatenate(vectors).tofile(out + ".f32")


if __name__ == "__main__":
    main()
