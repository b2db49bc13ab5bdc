#!/usr/bin/env python3
"""LoRA fine-tuning of the planner's model (SmolLM2, llama GGUF) in JAX.

The GPU twin of `plan-tune` (planner/src/tune/): the same model, the same
tokenised corpus, the same adapter file. It computes what the Rust trainable
model (planner/src/tune/model.rs, `FrozenLlama`) computes:

  * the GGUF is read and dequantised here (F32, F16, BF16, Q8_0, Q4_0, Q4_1),
    weights kept in GGUF layout `[out, in]` (a projection is y = x W^T);
  * RMS norm x / sqrt(mean(x^2) + eps) * w; interleaved rotary embedding
    (pairs (2i, 2i+1) rotate together: GGUF stores q/k permuted for it) with
    inverse frequencies 1 / base^(i / head_dim), i = 0, 2, 4, ...; grouped
    query attention (query head h reads kv head h // (n_head / n_kv_head));
    causal mask; SiLU(gate) * up; output head tied to the embedding when the
    GGUF has no `output.weight`;
  * the loss is sum(w * nll) / sum(w) over the answer positions (position i
    predicts ids[i + 1] for i + 1 >= answer_from, weighted by
    weights[i + 1 - answer_from]).

The corpus is the JSON-lines export of `plan-tune --export FILE` (plain or
gzipped). The adapter is a safetensors file that `plan-tune` and the planner
read (planner/src/tune/model.rs, `Lora::load`; planner/src/adapter.rs,
`adapter_deltas`): for each adapted projection `blk.<n>.<target>`,
`<key>.lora_a` = A^T `[in, rank]` and
`<key>.lora_b` = B^T `[rank, out]` (f16), and `lora.scale` = alpha / rank (f32,
shape [1]); the adapted projection is y = x W^T + scale * (x A^T) B^T.

Train (writes ADAPTER, ADAPTER-stem.json with the run's figures, and
ADAPTER-stem.csv with the loss curve):

    python3 -u planner/train/lora_gpu.py --gguf MODEL.gguf \
        --data corpus.jsonl.gz --out adapter.safetensors

Check against the Rust model (prints `base loss` / `adapter loss`, the same
two numbers as `plan-tune --eval-loss ADAPTER --eval-first K` on the corpus
the JSONL was exported from):

    python3 planner/train/lora_gpu.py --gguf MODEL.gguf --data corpus.jsonl \
        --eval-loss adapter.safetensors --eval-first 8
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import json
import math
import os
import struct
import time

import numpy as np

# The projections an adapter can sit on (planner/src/tune/model.rs, LORA_TARGETS).
LORA_TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------
# GGUF (version 2 and 3) reader: metadata and dequantised tensors.
# --------------------------------------------------------------------------

# ggml tensor types this reader dequantises: id -> (name, block size, bytes per block).
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    8: ("Q8_0", 32, 34),
    30: ("BF16", 1, 2),
}

# GGUF metadata value types: id -> struct format (scalars); 8 string, 9 array.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}


class _Cursor:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self) -> str:
        n = self.take("<Q")
        s = self.buf[self.pos:self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return s

    def value(self, vtype: int):
        if vtype in _GGUF_SCALARS:
            return self.take(_GGUF_SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, n = self.take("<I"), self.take("<Q")
            return [self.value(etype) for _ in range(n)]
        raise ValueError(f"GGUF: unknown metadata value type {vtype}")


def _dequantize(raw: np.ndarray, ggml_type: int, n: int) -> np.ndarray:
    """The `n` values of a tensor's raw bytes as flat f32 (ggml's block layouts)."""
    if ggml_type == 0:
        return raw.view("<f4")[:n].astype(np.float32)
    if ggml_type == 1:
        return raw.view("<f2")[:n].astype(np.float32)
    if ggml_type == 30:
        return (raw.view("<u2")[:n].astype(np.uint32) << 16).view(np.float32)
    if ggml_type == 8:  # Q8_0: f16 d, 32 x i8; x = d * q
        b = raw.view(np.dtype([("d", "<f2"), ("q", "i1", 32)]))
        return (b["d"].astype(np.float32)[:, None] * b["q"].astype(np.float32)).reshape(-1)[:n]
    if ggml_type in (2, 3):
        # Q4_0: f16 d, 16 bytes; x = d * (q - 8).  Q4_1: f16 d, f16 m, 16 bytes;
        # x = d * q + m. Byte j holds element j (low nibble) and j + 16 (high).
        fields = [("d", "<f2"), ("m", "<f2"), ("q", "u1", 16)] if ggml_type == 3 else \
                 [("d", "<f2"), ("q", "u1", 16)]
        b = raw.view(np.dtype(fields))
        q = np.concatenate([b["q"] & 0x0F, b["q"] >> 4], axis=1).astype(np.float32)
        d = b["d"].astype(np.float32)[:, None]
        x = d * q + b["m"].astype(np.float32)[:, None] if ggml_type == 3 else d * (q - 8.0)
        return x.reshape(-1)[:n]
    raise ValueError(f"GGUF: tensor type {ggml_type} is not supported")


def read_gguf(path: str, want=None):
    """Returns (metadata dict, {name: f32 ndarray}). Shapes are numpy order, the
    reverse of GGUF's ne[]: a `[out, in]` weight has ne = [in, out]. `want`
    (a predicate on the name) limits which tensors are dequantised."""
    with open(path, "rb") as f:
        buf = f.read()
    c = _Cursor(buf)
    if c.take("<I") != 0x46554747:  # b"GGUF" little-endian
        raise ValueError(f"{path} is not a GGUF file")
    version = c.take("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} is not supported")
    n_tensors, n_kv = c.take("<Q"), c.take("<Q")
    meta = {}
    for _ in range(n_kv):
        key = c.string()
        meta[key] = c.value(c.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = c.string()
        ne = [c.take("<Q") for _ in range(c.take("<I"))]
        infos.append((name, ne, c.take("<I"), c.take("<Q")))
    align = int(meta.get("general.alignment", 32))
    data = (c.pos + align - 1) // align * align
    tensors = {}
    for name, ne, gtype, off in infos:
        if want is not None and not want(name):
            continue
        if gtype not in GGML_TYPES:
            raise ValueError(f"GGUF: {name} has type {gtype}, which this reader does not handle")
        _, blk, nbytes = GGML_TYPES[gtype]
        n = int(np.prod(ne))
        size = (n + blk - 1) // blk * nbytes
        raw = np.frombuffer(buf, dtype=np.uint8, count=size, offset=data + off)
        tensors[name] = _dequantize(raw, gtype, n).reshape(tuple(reversed(ne)))
    return meta, tensors


class Config:
    """The llama hyperparameters, from the GGUF metadata (as FrozenLlama::from_gguf)."""

    def __init__(self, meta: dict, tensors: dict):
        arch = meta.get("general.architecture", "")
        if arch != "llama":
            raise SystemExit(f"fine-tuning supports llama-architecture GGUFs, not {arch!r}")
        self.n_layer = int(meta["llama.block_count"])
        self.n_head = int(meta["llama.attention.head_count"])
        self.n_kv_head = int(meta["llama.attention.head_count_kv"])
        self.hidden = int(meta["llama.embedding_length"])
        self.head_dim = self.hidden // self.n_head
        self.rms_eps = float(np.float32(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)))
        self.rope_base = float(np.float32(meta.get("llama.rope.freq_base", 10000.0)))
        self.vocab = tensors["token_embd.weight"].shape[0]
        # (in, out) of each target's weight, from the weights themselves.
        self.dims = {t: tuple(reversed(tensors[f"blk.0.{t}.weight"].shape)) for t in LORA_TARGETS}

    def describe(self) -> str:
        return (f"{self.n_layer} layers, hidden {self.hidden}, {self.n_head} heads, "
                f"{self.n_kv_head} kv heads, ffn {self.dims['ffn_up'][1]}, vocab {self.vocab}, "
                f"rms eps {self.rms_eps:g}, rope base {self.rope_base:g}")


def rope_tables(cfg: Config, max_len: int):
    """cos, sin `[max_len, head_dim / 2]` in f32 (model.rs, rope_tables)."""
    i = np.arange(0, cfg.head_dim, 2, dtype=np.float32)
    inv = (np.float32(1.0) / np.power(np.float32(cfg.rope_base), i / np.float32(cfg.head_dim)))
    f = np.arange(max_len, dtype=np.float32)[:, None] * inv[None, :].astype(np.float32)
    return np.cos(f).astype(np.float32), np.sin(f).astype(np.float32)


# --------------------------------------------------------------------------
# Corpus: the `plan-tune --export` JSON lines, batched into length buckets.
# --------------------------------------------------------------------------

def read_corpus(path: str, limit: int | None = None):
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            ids = np.asarray(d["ids"], dtype=np.int32)
            w = np.asarray(d["weights"], dtype=np.float32)
            a = int(d["answer_from"])
            if not (1 <= a < len(ids)) or len(w) != len(ids) - a:
                raise SystemExit(f"{path}: line {len(out) + 1}: answer_from/weights do not fit ids")
            out.append({"ids": ids, "answer_from": a, "weights": w, "pad": int(d.get("pad", 0))})
            if limit is not None and len(out) >= limit:
                break
    return out


def round_up(n: int, m: int) -> int:
    return max(m, (n + m - 1) // m * m)


class Batch:
    """Right-padded inputs `ids [B, T]` and the loss rows: `rows [K]` index the
    flattened `[B * T]` positions that predict an answer token, `tgt [K]` that
    token, `w [K]` its weight (0 for padding rows). `sample [K]` is the row's
    sample (index into the batch's sample list, -1 for padding)."""

    def __init__(self, samples, t_pad: int, k_pad: int, b_pad: int):
        pad = samples[0]["pad"]
        self.ids = np.full((b_pad, t_pad), pad, dtype=np.int32)
        self.rows = np.zeros(k_pad, dtype=np.int32)
        self.tgt = np.zeros(k_pad, dtype=np.int32)
        self.w = np.zeros(k_pad, dtype=np.float32)
        self.sample = np.full(k_pad, -1, dtype=np.int32)
        self.real_tokens = 0
        k = 0
        for b, s in enumerate(samples):
            ids, a = s["ids"], s["answer_from"]
            n = len(ids) - 1
            self.ids[b, :n] = ids[:-1]
            self.real_tokens += n
            m = len(s["weights"])
            pos = np.arange(a - 1, n)  # positions whose target is an answer token
            self.rows[k:k + m] = b * t_pad + pos
            self.tgt[k:k + m] = ids[pos + 1]
            self.w[k:k + m] = s["weights"]
            self.sample[k:k + m] = b
            k += m
        self.n_samples = len(samples)

    @property
    def shape(self):
        return (self.ids.shape[0], self.ids.shape[1], self.rows.shape[0])


def answer_len(s) -> int:
    return len(s["weights"])


def plan_batches(samples, order, batch: int, bucket: int, row_bucket: int):
    """Groups `order` into batches of `batch` samples of similar length (as
    plan-tune: chunks of 8 batches sorted by length). Returns lists of sample
    indices and each batch's (T, K) before padding to the shared K of its T."""
    groups = []
    for c in range(0, len(order), batch * 8):
        chunk = sorted(order[c:c + batch * 8], key=lambda i: len(samples[i]["ids"]))
        groups += [chunk[j:j + batch] for j in range(0, len(chunk), batch)]
    shapes = [(round_up(max(len(samples[i]["ids"]) - 1 for i in g), bucket),
               round_up(sum(answer_len(samples[i]) for i in g), row_bucket)) for g in groups]
    return groups, shapes


# --------------------------------------------------------------------------
# The model in JAX.
# --------------------------------------------------------------------------

def parse_layers(spec: str, n_layer: int):
    """`all`, `top:N`, or a comma list of indices and ranges (`0-3,28,29`)."""
    if spec == "all":
        return list(range(n_layer))
    if spec.startswith("top:"):
        k = int(spec[4:])
        return list(range(n_layer - k, n_layer))
    out = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        elif part:
            out.add(int(part))
    bad = [i for i in out if not 0 <= i < n_layer]
    if bad:
        raise SystemExit(f"--layers: no layer {bad} (the model has {n_layer})")
    return sorted(out)


def segments(n_layer: int, adapted):
    """Runs of consecutive layers with the same adapted-ness: [(start, end, adapted)].
    Each run is one `lax.scan`, so a 30-layer model compiles one block body."""
    segs, start = [], 0
    for i in range(1, n_layer + 1):
        if i == n_layer or ((i in adapted) != (start in adapted)):
            segs.append((start, i, start in adapted))
            start = i
    return segs


class Model:
    """The frozen base on the device plus pure functions of (base, lora, batch)."""

    def __init__(self, cfg: Config, tensors: dict, adapted_layers, targets, scale: float,
                 compute_dtype, max_len: int):
        import jax.numpy as jnp

        self.cfg, self.targets, self.scale = cfg, tuple(targets), float(scale)
        self.cdt = compute_dtype
        self.adapted = set(adapted_layers)
        self.segs = segments(cfg.n_layer, self.adapted if self.targets else set())
        cos, sin = rope_tables(cfg, max_len)
        wdt = compute_dtype  # the frozen projection weights, in the compute dtype
        embed = tensors["token_embd.weight"]
        head = tensors.get("output.weight", embed)
        base = {
            "embed": jnp.asarray(embed),  # f32 lookup
            "head": jnp.asarray(head, dtype=wdt),
            "out_norm": jnp.asarray(tensors["output_norm.weight"]),
            "cos": jnp.asarray(cos), "sin": jnp.asarray(sin),
            "segs": [],
        }
        for s, e, _ in self.segs:
            seg = {
                "attn_norm": jnp.asarray(np.stack([tensors[f"blk.{i}.attn_norm.weight"] for i in range(s, e)])),
                "ffn_norm": jnp.asarray(np.stack([tensors[f"blk.{i}.ffn_norm.weight"] for i in range(s, e)])),
            }
            for t in LORA_TARGETS:
                seg[t] = jnp.asarray(np.stack([tensors[f"blk.{i}.{t}.weight"] for i in range(s, e)]), dtype=wdt)
            base["segs"].append(seg)
        self.base = base

    # ---- adapters: {"<seg index>": {target: {"a": [n, in, r], "b": [n, r, out]}}}

    def init_lora(self, rank: int, seed: int):
        """A ~ normal(0, 1/sqrt(in)), B = 0: the adapted model starts as the base."""
        rng = np.random.default_rng(seed)
        lora = {}
        for j, (s, e, ad) in enumerate(self.segs):
            if not ad:
                continue
            lora[str(j)] = {}
            for t in self.targets:
                din, dout = self.cfg.dims[t]
                a = rng.normal(0.0, 1.0 / math.sqrt(din), size=(e - s, din, rank)).astype(np.float32)
                lora[str(j)][t] = {"a": a, "b": np.zeros((e - s, rank, dout), np.float32)}
        return lora

    def lora_to_file(self, lora) -> dict:
        """The adapter as the safetensors dict plan-tune reads (f16 factors)."""
        out = {}
        for j, (s, e, ad) in enumerate(self.segs):
            if not ad:
                continue
            for t in self.targets:
                a, b = (np.asarray(lora[str(j)][t][k], dtype=np.float32) for k in ("a", "b"))
                for n, i in enumerate(range(s, e)):
                    out[f"blk.{i}.{t}.lora_a"] = np.ascontiguousarray(a[n].astype(np.float16))
                    out[f"blk.{i}.{t}.lora_b"] = np.ascontiguousarray(b[n].astype(np.float16))
        out["lora.scale"] = np.asarray([self.scale], dtype=np.float32)
        return out

    def lora_from_file(self, tensors: dict):
        lora = {}
        for j, (s, e, ad) in enumerate(self.segs):
            if not ad:
                continue
            lora[str(j)] = {t: {k: np.stack([tensors[f"blk.{i}.{t}.lora_{k}"].astype(np.float32)
                                              for i in range(s, e)]) for k in ("a", "b")}
                            for t in self.targets}
        return lora

    # ---- forward

    def hidden(self, base, lora, ids):
        """Final hidden states `[B, T, hidden]` (f32) of inputs `ids [B, T]`."""
        import jax
        import jax.numpy as jnp

        cfg, cdt, f32 = self.cfg, self.cdt, jnp.float32
        B, T = ids.shape
        cos = base["cos"][:T][None, :, None, :]
        sin = base["sin"][:T][None, :, None, :]
        causal = jnp.tril(jnp.ones((T, T), dtype=bool))
        rep = cfg.n_head // cfg.n_kv_head

        def norm(x, w):
            return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + cfg.rms_eps) * w

        def proj(x, w, ad, t):
            # x [.., in] @ W^T with W [out, in]; f32 accumulation.
            xc = x.astype(cdt)
            y = jnp.einsum("...i,oi->...o", xc, w[t], preferred_element_type=f32)
            if ad is not None and t in ad:
                h = jnp.einsum("...i,ir->...r", xc, ad[t]["a"].astype(cdt), preferred_element_type=f32)
                y = y + self.scale * jnp.einsum("...r,ro->...o", h.astype(cdt), ad[t]["b"].astype(cdt),
                                                preferred_element_type=f32)
            return y

        def rope(x):  # x [B, T, heads, head_dim]; pairs (2i, 2i+1) rotate
            x = x.reshape(x.shape[:-1] + (cfg.head_dim // 2, 2))
            x0, x1 = x[..., 0], x[..., 1]
            y = jnp.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)
            return y.reshape(y.shape[:-2] + (cfg.head_dim,))

        def block(x, layer):
            w, ad = layer
            h = norm(x, w["attn_norm"])
            q = rope(proj(h, w, ad, "attn_q").reshape(B, T, cfg.n_head, cfg.head_dim))
            k = rope(proj(h, w, ad, "attn_k").reshape(B, T, cfg.n_kv_head, cfg.head_dim))
            v = proj(h, w, ad, "attn_v").reshape(B, T, cfg.n_kv_head, cfg.head_dim)
            # Query head g * rep + r reads kv head g (repeat_kv).
            q = q.reshape(B, T, cfg.n_kv_head, rep, cfg.head_dim)
            s = jnp.einsum("btgrd,bsgd->bgrts", q.astype(cdt), k.astype(cdt),
                           preferred_element_type=f32) / math.sqrt(cfg.head_dim)
            s = jnp.where(causal, s, jnp.finfo(f32).min)
            p = jax.nn.softmax(s, axis=-1)
            y = jnp.einsum("bgrts,bsgd->btgrd", p.astype(cdt), v.astype(cdt),
                           preferred_element_type=f32).reshape(B, T, cfg.hidden)
            x = x + proj(y, w, ad, "attn_output")
            h = norm(x, w["ffn_norm"])
            g = proj(h, w, ad, "ffn_gate")
            u = proj(h, w, ad, "ffn_up")
            x = x + proj(jax.nn.silu(g) * u, w, ad, "ffn_down")
            return x, None

        x = base["embed"][ids]
        for j, seg in enumerate(base["segs"]):
            ad = None if lora is None else lora.get(str(j))
            x, _ = jax.lax.scan(block, x, (seg, ad))
        return norm(x, base["out_norm"])

    def row_nll(self, base, lora, ids, rows, tgt):
        """Per loss row: negative log-likelihood of the target and whether the
        argmax is the target. The output head runs on the answer rows only."""
        import jax
        import jax.numpy as jnp

        x = self.hidden(base, lora, ids)
        x = x.reshape(-1, x.shape[-1])[rows]
        logits = jnp.einsum("kd,vd->kv", x.astype(self.cdt), base["head"],
                            preferred_element_type=jnp.float32)
        logp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(logp, tgt[:, None], axis=-1)[:, 0]
        return nll, jnp.argmax(logits, axis=-1) == tgt

    def flops_per_step(self, shape) -> float:
        """Model FLOPs of one training step (forward + input gradients; the
        base weights get no gradients), to report utilisation."""
        cfg = self.cfg
        B, T, K = shape
        params = sum(i * o for i, o in cfg.dims.values()) * cfg.n_layer
        attn = 4 * B * T * T * cfg.hidden * cfg.n_layer
        fwd = 2 * B * T * params + attn + 2 * K * cfg.hidden * cfg.vocab
        return 2.0 * fwd


# --------------------------------------------------------------------------
# Evaluation helpers.
# --------------------------------------------------------------------------

def evaluate(fn, base, lora, batches):
    """Pooled weighted loss, per-sample weighted losses, accuracy over all
    answer tokens and over the weighted (> 1) ones."""
    tot_wn = tot_w = 0.0
    hit = n = hit_d = n_d = 0
    per_sample = []
    for bt in batches:
        nll, ok = fn(base, lora, bt.ids, bt.rows, bt.tgt)
        nll, ok = np.asarray(nll, dtype=np.float64), np.asarray(ok)
        real = bt.sample >= 0
        tot_wn += float((bt.w * nll)[real].sum())
        tot_w += float(bt.w[real].sum())
        hit += int(ok[real].sum())
        n += int(real.sum())
        dec = real & (bt.w > 1.0)
        hit_d += int(ok[dec].sum())
        n_d += int(dec.sum())
        for b in range(bt.n_samples):
            m = bt.sample == b
            per_sample.append(float((bt.w[m] * nll[m]).sum() / bt.w[m].sum()))
    return {
        "loss": tot_wn / max(tot_w, 1e-12),
        "per_sample": per_sample,
        "acc": hit / max(n, 1),
        "acc_weighted": hit_d / max(n_d, 1),
    }


def eval_batches(samples, batch: int, bucket: int, row_bucket: int):
    """Fixed-shape batches over `samples` in order (one compiled shape)."""
    t = round_up(max(len(s["ids"]) - 1 for s in samples), bucket)
    groups = [samples[i:i + batch] for i in range(0, len(samples), batch)]
    k = max(round_up(sum(answer_len(s) for s in g), row_bucket) for g in groups)
    return [Batch(g, t, k, min(batch, len(samples))) for g in groups]


# --------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=(
            "Train the planner's LoRA adapter (SmolLM2 GGUF) in JAX on the corpus exported by "
            "`plan-tune --export`, or (--eval-loss) score an adapter as `plan-tune --eval-loss` "
            "does. Same data and seed give the same run (up to GPU reduction order)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--gguf", default=os.environ.get("ROSETTA_LLM_GGUF"),
                   help="base model GGUF (llama architecture); default $ROSETTA_LLM_GGUF")
    p.add_argument("--data", required=True, help="tokenised corpus: plan-tune --export output (.jsonl or .jsonl.gz)")
    p.add_argument("--samples", type=int, default=None, help="use only the first N samples of --data")
    p.add_argument("--out", default="smollm2-135m-plan.safetensors",
                   help="adapter file to write; its .json (run figures) and .csv (loss curve) go next to it")
    p.add_argument("--layers", default="all", help="adapted blocks: all, top:N, or a list like 0-3,28,29")
    p.add_argument("--targets", default=",".join(LORA_TARGETS), help="adapted projections (comma list)")
    p.add_argument("--rank", type=int, default=16, help="adapter rank")
    p.add_argument("--alpha", type=float, default=32.0, help="the update is alpha / rank * B A")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, no weight decay)")
    p.add_argument("--warmup", type=float, default=0.05,
                   help="linear warm-up: a fraction of the steps (< 1) or a step count")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decay ends at lr * this")
    p.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip (0: none)")
    p.add_argument("--epochs", type=int, default=2, help="passes over the training samples")
    p.add_argument("--batch", type=int, default=32, help="samples per step")
    p.add_argument("--holdout", type=float, default=0.03, help="fraction of samples held out for evaluation")
    p.add_argument("--seed", type=int, default=42, help="adapter init, hold-out split and batch order")
    p.add_argument("--bucket", type=int, default=64,
                   help="sequence lengths are padded to a multiple of this (each length compiles once)")
    p.add_argument("--row-bucket", type=int, default=64,
                   help="the answer rows of a batch (where the output head runs) are padded to a multiple of this")
    p.add_argument("--dtype", choices=("auto", "f32", "bf16"), default="auto",
                   help="matmul dtype (auto: bf16 on GPU, f32 on CPU); adapters, norms, softmax and loss stay f32")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N steps (smoke tests)")
    p.add_argument("--time-budget-s", type=float, default=None,
                   help="wall-clock budget from start (load and compile included): training stops in time "
                        "to evaluate and save; if the planned steps will not fit, the lr schedule is "
                        "shortened to the steps that do")
    p.add_argument("--log-every", type=int, default=20, help="progress line every N steps")
    p.add_argument("--eval-loss", metavar="ADAPTER", default=None,
                   help="score ADAPTER and the base model on the first --eval-first samples (f32, no training): "
                        "prints `base loss X` and `adapter loss Y` as plan-tune --eval-loss")
    p.add_argument("--eval-first", type=int, default=8, metavar="K", help="how many samples --eval-loss scores")
    a = p.parse_args(argv)
    if not a.gguf:
        p.error("--gguf is required (or set ROSETTA_LLM_GGUF)")
    return a


def load_model(args, layers, targets, scale: float, dtype: str, max_len: int = 4096):
    """Reads the GGUF and puts the frozen model on the device. `layers` is a
    list of block indices or a --layers spec. Returns (cfg, model, layers)."""
    import jax.numpy as jnp

    t0 = time.time()
    meta, tensors = read_gguf(args.gguf, want=lambda n: n.startswith(("token_embd", "output", "blk.")))
    cfg = Config(meta, tensors)
    log(f"model: {os.path.basename(args.gguf)}: {cfg.describe()} (read in {time.time() - t0:.1f} s)")
    if isinstance(layers, str):
        layers = parse_layers(layers, cfg.n_layer)
    cdt = {"f32": jnp.float32, "bf16": jnp.bfloat16}[dtype]
    return cfg, Model(cfg, tensors, layers, targets, scale, cdt, max_len), layers


def run_eval_loss(args):
    """`--eval-loss`: per-sample weighted mean NLL of the first K samples,
    averaged, without and with the adapter, in f32."""
    import jax
    from safetensors.numpy import load_file

    jax.config.update("jax_default_matmul_precision", "highest")
    ad = load_file(args.eval_loss)
    keys = [k[:-len(".lora_a")] for k in ad if k.endswith(".lora_a")]
    layers = sorted({int(k.split(".")[1]) for k in keys})
    targets = [t for t in LORA_TARGETS if any(k.endswith("." + t) for k in keys)]
    if len(keys) != len(layers) * len(targets):
        raise SystemExit("--eval-loss: the adapter does not cover the same targets on every layer it adapts")
    scale = float(ad["lora.scale"].reshape(-1)[0])
    samples = read_corpus(args.data, limit=args.eval_first)
    max_len = max(round_up(max(len(s["ids"]) for s in samples), args.bucket), 64)
    _, model, _ = load_model(args, layers, targets, scale, "f32", max_len)
    lora = model.lora_from_file(ad)
    rank = ad[keys[0] + ".lora_a"].shape[1] if keys else 0
    log(f"adapter {args.eval_loss}: layers {_ranges(layers)}, targets {targets}, rank {rank}, "
        f"scale {scale:g}; {len(samples)} samples")
    batches = eval_batches(samples, 8, args.bucket, args.row_bucket)
    fn = jax.jit(model.row_nll)
    r_base = evaluate(fn, model.base, None, batches)
    r_ad = evaluate(fn, model.base, lora, batches)
    for i, (x, y) in enumerate(zip(r_base["per_sample"], r_ad["per_sample"])):
        log(f"  sample {i}: base {x:.6f} adapter {y:.6f}")
    print(f"base loss {np.mean(r_base['per_sample']):.6f}")
    print(f"adapter loss {np.mean(r_ad['per_sample']):.6f}", flush=True)


def train(args):
    import jax
    import jax.numpy as jnp
    import optax
    from safetensors.numpy import save_file

    t_start = time.time()
    deadline = t_start + args.time_budget_s if args.time_budget_s else None
    platform = jax.devices()[0].platform
    dtype = args.dtype if args.dtype != "auto" else ("f32" if platform == "cpu" else "bf16")
    if dtype == "f32":
        jax.config.update("jax_default_matmul_precision", "highest")
    log(f"jax {jax.__version__} on {jax.devices()}; matmuls in {dtype}")

    samples = read_corpus(args.data, limit=args.samples)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(samples))
    n_hold = int(round(len(samples) * args.holdout)) if args.holdout > 0 else 0
    n_hold = min(max(n_hold, 1 if args.holdout > 0 and len(samples) > 1 else 0), len(samples) - 1)
    held = [samples[i] for i in sorted(perm[:n_hold])]
    train_idx = [int(i) for i in sorted(perm[n_hold:])]
    n_tok = sum(len(samples[i]["ids"]) for i in train_idx)
    n_ans = sum(answer_len(samples[i]) for i in train_idx)
    log(f"data: {args.data}: {len(samples)} samples, {len(train_idx)} train ({n_tok} tokens, "
        f"{n_ans} answer tokens), {len(held)} held out")

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in targets if t not in LORA_TARGETS]
    if bad:
        raise SystemExit(f"--targets: unknown {bad}; choose from {LORA_TARGETS}")
    max_len = max(round_up(max(len(s["ids"]) for s in samples), args.bucket), 64)
    cfg, model, layers = load_model(args, args.layers, targets, args.alpha / args.rank, dtype, max_len)
    lora = model.init_lora(args.rank, args.seed)
    n_params = sum(x.size for seg in lora.values() for t in seg.values() for x in t.values())
    log(f"adapters: layers {_ranges(layers)}, targets {targets}, rank {args.rank}, alpha {args.alpha:g} "
        f"(scale {model.scale:g}): {n_params / 1e6:.2f} M parameters")

    # The whole run's batches, planned up front: every (T, K) shape is known
    # and compiled before the first step.
    plan = []
    for _ in range(args.epochs):
        order = [train_idx[i] for i in rng.permutation(len(train_idx))]
        groups, shapes = plan_batches(samples, order, args.batch, args.bucket, args.row_bucket)
        ep = list(zip(groups, shapes))
        rng.shuffle(ep)
        plan.append(ep)
    k_of_t = {}
    for ep in plan:
        for _, (t, k) in ep:
            k_of_t[t] = max(k_of_t.get(t, 0), k)
    steps_planned = sum(len(ep) for ep in plan)
    if args.max_steps is not None:
        steps_planned = min(steps_planned, args.max_steps)
    total_steps = steps_planned  # the lr schedule's horizon (may shrink to fit the time budget)
    held_batches = eval_batches(held, args.batch, args.bucket, args.row_bucket) if held else []

    def lr_at(step: int) -> float:
        warm = args.warmup if args.warmup >= 1 else args.warmup * total_steps
        warm = max(warm, 1.0)
        if step < warm:
            return args.lr * (step + 1) / warm
        p = min(1.0, (step - warm) / max(1.0, total_steps - warm))
        return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))

    adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)

    def loss_fn(lora, base, ids, rows, tgt, w):
        nll, ok = model.row_nll(base, lora, ids, rows, tgt)
        return jnp.sum(w * nll) / jnp.maximum(jnp.sum(w), 1e-6), ok

    def step_fn(lora, opt_state, base, ids, rows, tgt, w, lr):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(lora, base, ids, rows, tgt, w)
        gnorm = optax.global_norm(grads)
        if args.clip > 0:
            grads = jax.tree_util.tree_map(lambda g: g * jnp.minimum(1.0, args.clip / (gnorm + 1e-6)), grads)
        upd, opt_state = adam.update(grads, opt_state, lora)
        lora = jax.tree_util.tree_map(lambda p, u: p - lr * u, lora, upd)  # AdamW, weight decay 0
        return lora, opt_state, loss, gnorm

    lora = jax.tree_util.tree_map(jnp.asarray, lora)
    opt_state = adam.init(lora)
    donate = () if platform == "cpu" else (0, 1)
    step_jit = jax.jit(step_fn, donate_argnums=donate)
    eval_jit = jax.jit(model.row_nll)

    # Compile every shape before training (in parallel threads), so step
    # times are steady and the time budget can be planned.
    t0 = time.time()
    spec = lambda shape, dt: jax.ShapeDtypeStruct(shape, dt)  # noqa: E731
    abstract = lambda tree: jax.tree_util.tree_map(lambda x: spec(x.shape, x.dtype), tree)  # noqa: E731
    a_lora, a_opt, a_base = abstract(lora), abstract(opt_state), abstract(model.base)

    def compile_step(t):
        k = k_of_t[t]
        return t, step_jit.lower(a_lora, a_opt, a_base, spec((args.batch, t), jnp.int32),
                                 spec((k,), jnp.int32), spec((k,), jnp.int32), spec((k,), jnp.float32),
                                 spec((), jnp.float32)).compile()

    def compile_eval():
        if not held_batches:
            return None
        B, T, K = held_batches[0].shape
        return eval_jit.lower(a_base, a_lora, spec((B, T), jnp.int32), spec((K,), jnp.int32),
                              spec((K,), jnp.int32)).compile()

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(k_of_t) + 1)) as ex:
        fut_eval = ex.submit(compile_eval)
        compiled = dict(ex.map(compile_step, sorted(k_of_t)))
        eval_c = fut_eval.result()
    t_compile = time.time() - t0
    log(f"compiled {len(compiled)} step shapes (batch {args.batch} x T in {sorted(k_of_t)}, "
        f"answer rows {[k_of_t[t] for t in sorted(k_of_t)]}) + eval in {t_compile:.1f} s")

    def held_eval(tag: str):
        if not held_batches:
            return None
        t = time.time()
        r = evaluate(eval_c, model.base, lora, held_batches)
        r.pop("per_sample")
        r["eval_s"] = time.time() - t
        log(f"held-out {tag}: loss {r['loss']:.4f}, answer-token accuracy {r['acc']:.4f}, "
            f"on weighted tokens {r['acc_weighted']:.4f} ({len(held)} samples, {r['eval_s']:.1f} s)")
        return r

    def save_adapter():
        save_file(model.lora_to_file(jax.tree_util.tree_map(np.asarray, lora)), args.out)
        os.chmod(args.out, 0o644)

    history = {"start": held_eval("before training")}
    eval_s = history["start"]["eval_s"] if history["start"] else 0.0

    # One flat list of steps: (epoch, sample indices, T).
    steps = [(e, g, t) for e, ep in enumerate(plan) for g, (t, _) in ep]
    # Indices of each epoch's last step (held-out evaluation after it).
    last_of_epoch = {int(i) for i in np.cumsum([len(ep) for ep in plan]) - 1}
    steps = steps[:steps_planned]

    def fit_schedule(step: int):
        """Shortens the lr schedule (and the run) to the steps that fit in
        the time budget, from the measured time per padded token."""
        nonlocal total_steps, steps
        per_tok = sum(step_times[2:]) / max(1, sum(args.batch * st[2] for st in steps[2:step]))
        left = deadline - time.time() - 10.0  # slack for the save
        left -= eval_s * (1 + sum(1 for i in last_of_epoch if i >= step))  # evaluations still due
        fit, cost = step, 0.0
        while fit < len(steps) and cost + per_tok * args.batch * steps[fit][2] <= left:
            cost += per_tok * args.batch * steps[fit][2]
            fit += 1
        if fit < len(steps):
            log(f"time budget: about {fit} of {len(steps)} steps fit ({per_tok * 1e6:.2f} us per padded "
                f"token); the lr schedule now ends at step {fit}")
            total_steps = max(fit, step + 1)
            steps = steps[:total_steps]

    curve, step_times = [], []
    done_tokens, done_padded, flops = 0, 0, 0.0
    stopped, epochs_done = None, 0
    t_train = time.time()
    step = 0
    while step < len(steps):
        e, groups, t = steps[step]
        if deadline is not None and step_times:
            # Hard stop: keep time for the final evaluation and the save.
            if time.time() + float(np.median(step_times[-50:])) + eval_s + 5.0 > deadline:
                stopped = "time budget"
                break
        bt = Batch([samples[i] for i in groups], t, k_of_t[t], args.batch)
        ts = time.time()
        lr = lr_at(step)
        lora, opt_state, loss, gnorm = compiled[t](
            lora, opt_state, model.base, bt.ids, bt.rows, bt.tgt, bt.w, np.float32(lr))
        loss = float(loss)  # waits for the step
        dt = time.time() - ts
        step_times.append(dt)
        if not math.isfinite(loss):
            raise SystemExit(f"the loss became {loss} at step {step}: lower --lr")
        step += 1
        curve.append((step, loss, lr))
        done_tokens += bt.real_tokens
        done_padded += bt.ids.size
        flops += model.flops_per_step(bt.shape)
        if deadline is not None and (step in (10, 50) or step % 200 == 0):
            fit_schedule(step)  # once the step time is known, and again as it settles
        if step <= 5 or step % args.log_every == 0 or step == len(steps):
            el = time.time() - t_train
            recent = np.mean([c[1] for c in curve[-args.log_every:]])
            log(f"step {step}/{len(steps)} epoch {e + 1} loss {loss:.4f} (avg {recent:.4f}) "
                f"lr {lr:.2e} |g| {float(gnorm):.3f} step {dt * 1000:.0f} ms T={t} | "
                f"{el:.0f} s, {done_tokens / el:.0f} tok/s ({done_padded / el:.0f} padded), "
                f"{flops / el / 1e12:.1f} TFLOP/s, total {time.time() - t_start:.0f} s")
        if step - 1 in last_of_epoch:
            epochs_done = e + 1
            history[f"epoch {e + 1}"] = held_eval(f"after epoch {e + 1}")
            save_adapter()  # so that a run killed later still leaves an adapter
    t_train = time.time() - t_train
    if step < steps_planned and not stopped:
        stopped = "time budget (shortened schedule)"
    elif step < sum(len(ep) for ep in plan) and not stopped:
        stopped = "max-steps"
    if stopped:
        log(f"stopped after {step} steps ({stopped})")
        if step - 1 not in last_of_epoch:
            history["final"] = held_eval(f"final (step {step})")
    final = history.get("final") or history.get(f"epoch {epochs_done}") or history["start"] or {}

    save_adapter()
    stem = os.path.splitext(args.out)[0]
    with open(stem + ".csv", "w") as f:
        f.write("step,loss,lr\n")
        f.writelines(f"{s},{l:.6f},{r:.6g}\n" for s, l, r in curve)
    info = {
        "trainer": "planner/train/lora_gpu.py",
        "data": os.path.basename(args.data),
        "samples": len(samples), "train_samples": len(train_idx), "held_out_samples": len(held),
        "layers": _ranges(layers), "targets": targets, "rank": args.rank, "alpha": args.alpha,
        "lr": args.lr, "warmup": args.warmup, "min_lr_ratio": args.min_lr_ratio, "clip": args.clip,
        "epochs": args.epochs, "epochs_completed": epochs_done, "batch": args.batch, "seed": args.seed,
        "holdout": args.holdout, "dtype": dtype, "bucket": args.bucket,
        "steps": step, "steps_planned_schedule": total_steps, "stopped": stopped,
        "final_train_loss": float(np.mean([c[1] for c in curve[-50:]])) if curve else None,
        "held_out": history,
        "held_out_final": final,
        "compile_s": round(t_compile, 1), "train_s": round(t_train, 1),
        "wall_s": round(time.time() - t_start, 1),
        "tokens_per_s": round(done_tokens / max(t_train, 1e-9)),
        "model_tflops_per_s": round(flops / max(t_train, 1e-9) / 1e12, 2),
        "device": str(jax.devices()[0]), "jax": jax.__version__,
        "gguf": os.path.basename(args.gguf),
    }
    with open(stem + ".json", "w") as f:
        json.dump(info, f, indent=1)
    log(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB), {stem}.json, {stem}.csv")
    if final:
        log(f"RESULT held-out loss {history['start']['loss']:.4f} -> {final['loss']:.4f}, "
            f"accuracy {history['start']['acc']:.4f} -> {final['acc']:.4f}, weighted-token accuracy "
            f"{history['start']['acc_weighted']:.4f} -> {final['acc_weighted']:.4f}; "
            f"{step} steps in {t_train:.0f} s, wall {info['wall_s']:.0f} s")


def _ranges(xs) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    out, i = [], 0
    xs = sorted(xs)
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(f"{xs[i]}-{xs[j]}" if j > i else f"{xs[i]}")
        i = j + 1
    return ",".join(out)


def main(argv=None):
    args = parse_args(argv)
    if args.eval_loss:
        run_eval_loss(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
