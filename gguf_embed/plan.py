"""Memory planning: what a GGUF needs on each device for a context and batch, and which
settings fit a VRAM budget. Reads the GGUF's metadata and tensor table only (no weights).

The arithmetic follows how llama.cpp allocates for an embedding context:
- weights: each tensor's bytes; repeating layers go to the GPU from the last layer down
  as ``n_gpu_layers`` grows, the output head (a copy of the token embeddings when the
  file has none) once all layers are offloaded; token embeddings stay on the CPU;
- KV cache (decoder models only): n_ctx x layers x kv heads x head dim x (K+V) x type size;
- compute buffer: the largest set of live activations for one ubatch: the LM head's
  logits (every token is an output with embeddings on), or attention scores
  (n_ubatch x n_ctx x heads, unless flash attention), plus feed-forward activations;
- output buffer (host): logits + embeddings for every output token of a batch.
Checked against llama.cpp's own buffer report by ``measure``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from . import keys
from .embedder import DEFAULT_BATCH_TOKENS, context_shape, default_flash_attn
from .errors import InvalidInputError
from .model_info import ModelInfo

__all__ = ["ModelShape", "Plan", "read_shape", "estimate", "fit_budget", "measure", "parse_size", "BudgetError"]

MiB = 2**20
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
FFN_ACT = 1.8  # feed-forward activations live at once, in units of n_ubatch x ffn x 4 bytes (measured)
# On x86 with AVX2 (and ARM with NEON) llama.cpp's CPU backend keeps a second, repacked copy of
# these weight types for faster matrix products ("CPU_REPACK" buffer).
REPACKED_TYPES = {gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.IQ4_NL}


def cpu_repacks() -> bool:
    import platform

    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    try:
        with open("/proc/cpuinfo") as fh:
            return " avx2 " in f" {fh.read()} "
    except OSError:  # pragma: no cover
        return False


class BudgetError(InvalidInputError):
    code = "does_not_fit"


@dataclass(frozen=True)
class ModelShape:
    info: ModelInfo
    n_vocab: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    has_output: bool  # an output.weight tensor in the file (else llama.cpp duplicates token_embd)
    layer_bytes: tuple[int, ...]
    layer_repack_bytes: tuple[int, ...]  # tensors llama.cpp's CPU backend copies into a repacked layout
    token_embd_bytes: int
    output_bytes: int  # output head + output norm stored in the file
    tied_output_bytes: int  # the token embeddings again, when llama.cpp must copy them to the GPU as the head
    other_bytes: int


def _meta_strings(reader: gguf.GGUFReader) -> dict[str, str]:
    out = {}
    for name, fld in reader.fields.items():
        if name.startswith("tokenizer.ggml.") and name not in ("tokenizer.ggml.model",):
            continue
        try:
            v = fld.contents()
        except Exception:  # pragma: no cover - exotic field types
            continue
        out[name] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def read_shape(path: str | os.PathLike) -> ModelShape:
    path = Path(path)
    reader = gguf.GGUFReader(path)
    meta = _meta_strings(reader)
    arch = meta["general.architecture"]

    def num(key, default=None):
        v = meta.get(f"{arch}.{key}")
        return int(float(v)) if v is not None else default

    n_embd, n_layer = num("embedding_length"), num("block_count")
    info = ModelInfo.from_meta(path, meta, n_embd=n_embd, n_layer=n_layer, n_ctx_train=num("context_length"))
    n_head = num("attention.head_count")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens.data) if tokens is not None else 0
    layer = [0] * n_layer
    repack = [0] * n_layer
    token_embd = output = other = 0
    names = set()
    for t in reader.tensors:
        names.add(t.name)
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m:
            layer[int(m.group(1))] += int(t.n_bytes)
            if t.tensor_type in REPACKED_TYPES and len(t.shape) > 1:
                repack[int(m.group(1))] += int(t.n_bytes)
        elif t.name == "token_embd.weight":
            token_embd = int(t.n_bytes)
        elif t.name.startswith("output"):
            output += int(t.n_bytes)
        else:
            other += int(t.n_bytes)
    has_output = "output.weight" in names
    return ModelShape(
        info=info, n_vocab=n_vocab, n_head=n_head, n_head_kv=num("attention.head_count_kv", n_head),
        head_dim=num("attention.key_length", n_embd // n_head), n_ff=num("feed_forward_length"),
        has_output=has_output, layer_bytes=tuple(layer), layer_repack_bytes=tuple(repack), token_embd_bytes=token_embd,
        output_bytes=output, tied_output_bytes=token_embd if info.causal and not has_output else 0,
        other_bytes=other,
    )


@dataclass(frozen=True)
class Plan:
    n_ctx: int
    batch_tokens: int
    n_seq_max: int
    flash_attn: str
    kv_type: str
    n_gpu_layers: int
    weights: dict[str, int] = field(default_factory=dict)  # device -> bytes
    kv: dict[str, int] = field(default_factory=dict)
    compute: dict[str, int] = field(default_factory=dict)
    output: int = 0  # host, once a full batch has run (every token an output)
    output_at_start: int = 0  # host, as llama.cpp reserves it when the context is created

    def device_total(self, device: str) -> int:
        return self.weights.get(device, 0) + self.kv.get(device, 0) + self.compute.get(device, 0) + (
            self.output if device == "CPU" else 0)

    @property
    def total(self) -> int:
        return sum(self.device_total(d) for d in ("CPU", "GPU"))

    @property
    def total_at_start(self) -> int:
        """What llama.cpp allocates when the context is created (its output buffer grows later)."""
        return self.total - self.output + self.output_at_start

    def settings(self) -> dict:
        """Embedder keyword arguments that realise this plan."""
        return {"n_ctx": self.n_ctx, "batch_tokens": self.batch_tokens, "flash_attn": self.flash_attn,
                "kv_type": self.kv_type, "n_gpu_layers": self.n_gpu_layers}


def _compute_bytes(s: ModelShape, n_ub: int, n_ctx: int, fa: bool) -> int:
    causal = s.info.causal
    logits = n_ub * (s.n_vocab * 4 + 2 * s.info.n_embd * 4) if causal else 0
    n_kv = n_ctx if causal else n_ub
    attn = 0 if fa else n_ub * n_kv * (4 * s.n_head + (4 if causal else 2))
    return int(max(logits, attn) + n_ub * s.n_ff * 4 * FFN_ACT)


def estimate(path_or_shape, *, n_ctx: int | None = None, batch_tokens: int | None = None, n_seq_max: int = 64,
             flash_attn: str | None = None, kv_type: str = "f16", n_gpu_layers: int = 0,
             repack: bool | None = None) -> Plan:
    s = path_or_shape if isinstance(path_or_shape, ModelShape) else read_shape(path_or_shape)
    repack = cpu_repacks() if repack is None else repack
    info = s.info
    n_ctx, budget, _ = context_shape(info, n_ctx, batch_tokens)
    n_layer = info.n_layer
    gpu_layers = n_layer + 1 if n_gpu_layers < 0 else min(max(n_gpu_layers, 0), n_layer + 1)
    fa = flash_attn or default_flash_attn(info, gpu_layers)
    fa_on = fa == "on" or (fa == "auto" and gpu_layers > 0)
    on_gpu = [i >= n_layer - gpu_layers for i in range(n_layer)]
    out_on_gpu = gpu_layers > n_layer
    # a file without output.weight shares the token embeddings as the head: free on the CPU,
    # a second copy once the head moves to the GPU
    w_gpu = sum(b for b, g in zip(s.layer_bytes, on_gpu) if g) + (
        s.output_bytes + s.tied_output_bytes if out_on_gpu else 0)
    w_cpu = sum(b for b, g in zip(s.layer_bytes, on_gpu) if not g) + s.token_embd_bytes + s.other_bytes + (
        0 if out_on_gpu else s.output_bytes)
    if repack:
        w_cpu += sum(b for b, g in zip(s.layer_repack_bytes, on_gpu) if not g)
    kv_per_layer = n_ctx * s.n_head_kv * s.head_dim * 2 * KV_BYTES[kv_type] if info.causal else 0
    kv_gpu = int(kv_per_layer * sum(on_gpu))
    kv_cpu = int(kv_per_layer * (n_layer - sum(on_gpu)))
    compute = _compute_bytes(s, budget, n_ctx, fa_on)
    if gpu_layers:
        # the GPU holds the graph's activations; the host keeps the input embeddings, and the
        # LM head's logits when the output layer stays on the CPU
        head = budget * s.n_vocab * 4 if (info.causal and not out_on_gpu) else 0
        comp = {"GPU": compute, "CPU": budget * info.n_embd * 4 + head}
    else:
        comp = {"CPU": compute}
    outputs = max(budget, n_seq_max)  # with embeddings on, every token of a batch is an output
    output = outputs * (s.n_vocab + info.n_embd) * 4
    output_at_start = n_seq_max * (s.n_vocab + info.n_embd) * 4
    weights = {"CPU": w_cpu, **({"GPU": w_gpu} if gpu_layers else {})}
    kv = {"CPU": kv_cpu, **({"GPU": kv_gpu} if gpu_layers else {})}
    return Plan(n_ctx, budget, n_seq_max, fa, kv_type, gpu_layers, weights, kv, comp, output, output_at_start)


def fit_budget(path, vram_bytes: int, *, n_ctx: int | None = None, batch_tokens: int | None = None) -> Plan:
    """The roomiest settings whose GPU memory fits ``vram_bytes``: all layers with the largest
    batch first, then smaller batches, a smaller KV-cache type, and finally fewer layers."""
    s = read_shape(path)
    n_layer = s.info.n_layer
    batches = [batch_tokens] if batch_tokens else [DEFAULT_BATCH_TOKENS, 256, 128, 64]
    kv_types = ["f16", "q8_0", "q4_0"] if s.info.causal else ["f16"]
    best = None
    for layers in range(n_layer + 1, 0, -1):
        for kv in kv_types:
            for bt in batches:
                p = estimate(s, n_ctx=n_ctx, batch_tokens=bt, flash_attn="on", kv_type=kv, n_gpu_layers=layers)
                if p.device_total("GPU") <= vram_bytes:
                    return p
                if best is None or p.device_total("GPU") < best.device_total("GPU"):
                    best = p if layers == n_layer + 1 else best
    full = best or estimate(s, n_ctx=n_ctx, batch_tokens=batches[-1], flash_attn="on", kv_type=kv_types[-1],
                            n_gpu_layers=-1)
    raise BudgetError(
        f"{s.info.name} does not fit in {vram_bytes / 2**30:.2f} GiB of VRAM even with one layer offloaded; "
        f"fully offloaded it needs {full.device_total('GPU') / 2**30:.2f} GiB "
        f"({(full.device_total('GPU') - vram_bytes) / 2**30:.2f} GiB over)"
    )


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgG]i?[bB]?|[bB])?\s*", str(text))
    if not m:
        raise InvalidInputError(f"cannot read {text!r} as a size (e.g. 3GB, 2.5GiB, 800MB)", param="vram")
    unit = (m.group(2) or "G").upper().rstrip("B").rstrip("I")
    return int(float(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit])


_BUF = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")


def measure(path, **embedder_kwargs) -> dict:
    """Create a real context and embed one full batch; return llama.cpp's reported buffers
    (bytes by kind and device) and the process's resident-memory growth."""
    from . import _llama
    from .embedder import Embedder

    def rss() -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))

    before = rss()
    with _llama.capture_log() as lines:
        emb = Embedder(path, **embedder_kwargs)
    try:
        per_text = max(1, emb.batch_tokens // 8 - 4)
        emb.embed(["word " * per_text] * 8, truncate="end")  # fills one batch: every output row in use
        grown = rss() - before
    finally:
        emb.close()
    reported: dict[str, int] = {}
    for dev, kind, mib in _BUF.findall("".join(lines)):
        key = f"{kind.lower()}:{dev}"
        reported[key] = reported.get(key, 0) + int(float(mib) * MiB)
    return {"reported": reported, "rss_growth": grown, "batch_tokens": emb.batch_tokens, "n_ctx": emb.ctx.n_ctx}

