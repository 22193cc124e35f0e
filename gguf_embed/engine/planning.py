"""Memory planning: what a GGUF needs on each device for a context and batch, and which
settings fit a VRAM budget. Reads the GGUF's metadata and tensor table only (no weights).

The arithmetic follows how llama.cpp allocates for an embedding context:

- weights: each tensor's bytes from the file. ``n_gpu_layers = k`` puts the output layer
  (output norm and head) on the GPU as soon as k >= 1, then the last k - 1 repeating layers;
  the token embeddings always stay on the CPU. A file without ``output.weight`` uses the
  token embeddings as the head: free on the CPU, a second copy once the head is on the GPU.
  On the CPU, layer weights of some quantisation types get a second, repacked copy
  (llama.cpp's "CPU_REPACK" buffer) for faster matrix products;
- KV cache (decoder models only): n_ctx (padded to 256) x layers x kv heads x head dim
  x (K + V) x bytes per element of the cache type;
- compute buffer: the largest set of activations alive at once for one ubatch, either inside
  a layer (attention scores n_ubatch x n_kv x heads as F32 plus the mask, or only the F16 mask
  with flash attention, plus feed-forward activations) or at the output head (the logits of
  every output: n_ubatch x n_vocab floats on the all-token path, where every token is an
  output; n_seq_max x n_vocab on the last-token fast path, which reserves them but never
  computes them); with layers on a GPU, the device holds those activations beside a copy of the
  mask, and the host the graph's inputs and the embedding lookups (``activations.py``);
- output buffer (host): embeddings on the all-token path, n_seq_max rows when the context is
  created, a whole batch once a full batch has run, with n_vocab floats of logits beside each row
  on a stock llama.cpp (none in the build ``make install`` patches); on the fast path, logits for
  n_seq_max rows, which never grows.

``engine.session.measure_buffers`` creates a real context and reads llama.cpp's own buffer
report to check a plan.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from ..errors import BudgetError, GGUFEmbedError, InvalidInputError, ModelLoadError
from ..model.archs import FAMILY_ARCH, arch
from ..model.gguf_file import GGUFFile, read_gguf
from ..model.info import ModelInfo, resolve_model
from ..model.tensor_table import tensor_table
from ..registry import load_registry
from . import kept
from .activations import cpu_compute, offloaded_compute
from .llama import embeddings_reserve_logits
from .machine import cpu_flags, resolve_quant
from .settings import (
    DEFAULT_BATCH_TOKENS,
    context_shape,
    default_flash_attn,
    default_kv_type,
    fast_path_enabled,
)

__all__ = ["ModelShape", "MemoryPlan", "BudgetError", "read_shape", "registry_shape", "uses_fast_path", "estimate",
           "fit_budget", "settings_for_budget", "parse_size", "repacked_types", "resolve_for_plan"]

MiB, GiB = 2**20, 2**30
CTX_PAD = 256  # llama.cpp rounds the context size up to a multiple of this
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
MIN_AUTO_CTX = 512  # the shortest context fit_budget picks on its own
T = gguf.GGMLQuantizationType


def repacked_types() -> frozenset:
    """Weight types llama.cpp's CPU backend keeps a second, repacked copy of, on this machine."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):  # NEON with dot product
        return frozenset({T.Q4_0, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_0, T.IQ4_NL, T.MXFP4})
    flags = cpu_flags()
    out = set()
    if "avx2" in flags:
        out |= {T.Q4_0, T.Q4_K, T.IQ4_NL, T.MXFP4}
    if "avx512f" in flags:
        out.add(T.Q2_K)
    return frozenset(out)


@dataclass(frozen=True)
class ModelShape:
    info: ModelInfo
    n_vocab: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    has_output: bool  # an output.weight tensor in the file (else the head is the token embeddings)
    layer_bytes: tuple[int, ...]
    layer_repack_bytes: tuple[int, ...]  # per layer: weights the CPU backend copies into a repacked layout
    token_embd_bytes: int
    output_bytes: int  # output head + output norm stored in the file
    tied_output_bytes: int  # the token embeddings again, when the head must be a separate copy
    tied_output_repacked: bool  # that head is of a repacked type (a second copy even on the CPU)
    other_bytes: int
    gated_ffn: bool = False  # separate gate and up matrices (Qwen3's SwiGLU), three n_ff-wide activations


def _from_tensors(info: ModelInfo, tensors, *, n_vocab: int, n_head: int, n_head_kv: int, head_dim: int, n_ff: int,
                  repack: frozenset) -> ModelShape:
    """A ModelShape from (name, type, n_bytes, n_dims) rows, as a file or a registry entry gives them."""
    n_layer = info.n_layer
    layer, layer_repack = [0] * n_layer, [0] * n_layer
    token_embd = output = other = 0
    embd_type = None
    has_output = gated = False
    for name, ttype, n_bytes, n_dims in tensors:
        gated = gated or name.endswith("ffn_gate.weight")
        m = re.match(r"blk\.(\d+)\.", name)
        if m:
            layer[int(m.group(1))] += n_bytes
            if ttype in repack and n_dims > 1:
                layer_repack[int(m.group(1))] += n_bytes
        elif name == "token_embd.weight":
            token_embd, embd_type = n_bytes, ttype
        elif name.startswith("output"):
            output += n_bytes
            has_output = has_output or name == "output.weight"
        else:
            other += n_bytes
    tied = info.causal and not has_output
    return ModelShape(
        info=info, n_vocab=n_vocab, n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim, n_ff=n_ff,
        has_output=has_output, layer_bytes=tuple(layer), layer_repack_bytes=tuple(layer_repack),
        token_embd_bytes=token_embd, output_bytes=output, tied_output_bytes=token_embd if tied else 0,
        tied_output_repacked=tied and embd_type in repack, other_bytes=other, gated_ffn=gated,
    )


def read_shape(path_or_file: str | os.PathLike | GGUFFile, *, repack: frozenset | None = None) -> ModelShape:
    """The shape and tensor bytes of a GGUF file (metadata and tensor table only)."""
    g = path_or_file if isinstance(path_or_file, GGUFFile) else read_gguf(Path(path_or_file))
    repack = repacked_types() if repack is None else repack

    def num(key, default=None):
        v = g.meta.get(f"{info.arch}.{key}")
        return int(v) if v is not None else default

    try:
        info = ModelInfo.from_file(g)
        n_head = num("attention.head_count")
        rows = [(t.name, t.type, t.n_bytes, len(t.dims)) for t in g.tensors.values()]
        return _from_tensors(info, rows, n_vocab=g.array_len("tokenizer.ggml.tokens"), n_head=n_head,
                             n_head_kv=num("attention.head_count_kv", n_head),
                             head_dim=num("attention.key_length", info.n_embd // n_head),
                             n_ff=num("feed_forward_length"), repack=repack)
    except (TypeError, ValueError, ZeroDivisionError) as exc:  # keys missing or of the wrong kind
        raise ModelLoadError(f"{g.path} lacks the model shape a plan needs ({type(exc).__name__}: {exc}); "
                             "is it a complete GGUF of an embedding model?") from None


def registry_shape(entry, quant: str | None = None, *, repack: frozenset | None = None) -> ModelShape:
    """The shape and tensor bytes of ``gguf-embed convert NAME --quant QUANT``'s file, from
    models.toml alone: plan before downloading."""

    quant, _ = resolve_quant(quant or entry.default_quant)
    try:
        table = tensor_table(entry, quant)
    except ValueError as exc:
        raise InvalidInputError(f"cannot plan {entry.name} without its file: {exc}", param="model") from None
    s = entry.shape
    causal = arch(FAMILY_ARCH[entry.architecture]).causal
    n_ctx_train = s.max_positions
    info = ModelInfo(
        path=Path(entry.gguf_filename(quant)), name=entry.name, arch=entry.architecture, n_embd=s.hidden,
        n_layer=s.layers, n_ctx_train=n_ctx_train, pooling=entry.pooling, causal=causal,
        max_tokens=min(entry.max_tokens, n_ctx_train), matryoshka_min=entry.matryoshka_min,
    )
    rows = [(t.name, t.type, t.n_bytes, len(t.dims)) for t in table]
    return _from_tensors(info, rows, n_vocab=s.vocab, n_head=s.heads, n_head_kv=s.kv_heads or s.heads,
                         head_dim=s.head_dim or s.hidden // s.heads, n_ff=s.ffn,
                         repack=repacked_types() if repack is None else repack)


@dataclass(frozen=True)
class MemoryPlan:
    n_ctx: int
    batch_tokens: int
    n_seq_max: int
    flash_attn: str
    kv_type: str
    n_gpu_layers: int
    weights: dict[str, int] = field(default_factory=dict)  # device ("CPU", "GPU") -> bytes
    kv: dict[str, int] = field(default_factory=dict)
    compute: dict[str, int] = field(default_factory=dict)
    output: int = 0  # host, once a full batch has run (every token an output)
    output_at_start: int = 0  # host, as llama.cpp reserves it when the context is created
    n_layer: int = 0
    notes: tuple[str, ...] = ()
    fast_path: bool = False

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

    @property
    def placement(self) -> str:
        k, n = self.n_gpu_layers, self.n_layer
        if k == 0:
            return "everything on the CPU"
        if k > n:
            return "all layers and the output layer on the GPU"
        return f"the output layer and {k - 1} of {n} layers on the GPU"

    def buffers_at_start(self) -> dict[str, int]:
        """What llama.cpp allocates when the context is created, keyed "kind:device" (kind: model, kv,
        compute, output; device: CPU for host memory, GPU), as ``session.device_buffers`` sums its report."""
        out = {f"{kind}:{d}": b for kind, part in (("model", self.weights), ("kv", self.kv), ("compute", self.compute))
               for d, b in part.items() if b}
        return {**out, "output:CPU": self.output_at_start}

    def settings(self) -> dict:
        """Embedder keyword arguments that realise this plan."""
        return {"n_ctx": self.n_ctx, "batch_tokens": self.batch_tokens, "flash_attn": self.flash_attn,
                "kv_type": self.kv_type, "n_gpu_layers": self.n_gpu_layers}


def uses_fast_path(info: ModelInfo, fast_path: bool | None = None) -> bool:
    """Whether an Embedder runs this model on the last-token fast path (no LM head, no logits)."""
    return fast_path_enabled(fast_path) and info.causal and info.pooling == "last"


def logits_reserved(s: ModelShape, n_seq_max: int = 64) -> dict:
    """The logits llama.cpp keeps in its host output buffer for this model at the default settings,
    which gguf-embed never reads: bytes, output rows, and whether this build reserves them for
    embeddings contexts at all (a stock llama.cpp does, for every token of a batch)."""
    stock, fast = embeddings_reserve_logits(), uses_fast_path(s.info)
    if fast:  # a context without embeddings keeps one row per sequence on any build
        rows = n_seq_max
    else:
        rows = max(context_shape(s.info, None, None)[1], n_seq_max) if stock else 0  # up to a whole batch
    return {"bytes": rows * s.n_vocab * 4, "rows": rows, "stock_build": stock, "fast_path": fast}


def estimate(path_or_shape, *, n_ctx: int | None = None, batch_tokens: int | None = None, n_seq_max: int = 64,
             flash_attn: str | None = None, kv_type: str | None = None, n_gpu_layers: int = 0,
             fast_path: bool | None = None, reserve_logits: bool | None = None) -> MemoryPlan:
    """The memory an Embedder with these settings allocates, by kind and device.

    On the last-token fast path (decoders with last-token pooling) llama.cpp reserves the head's
    activations for one output per sequence instead of one per token, and its host output buffer
    holds logits for ``n_seq_max`` rows (plus their embeddings after the load-time self-check on a
    stock build), which never grows; on the all-token path every token of a batch is an output, with
    n_vocab floats of logits beside its embedding where llama.cpp reserves them for embeddings
    contexts (``reserve_logits``; default: what this build does, ``llama.embeddings_reserve_logits``)."""
    s = path_or_shape if isinstance(path_or_shape, ModelShape) else read_shape(path_or_shape)
    kv_type = kv_type or default_kv_type(s.info)
    if kv_type not in KV_BYTES:
        raise InvalidInputError(f"kv_type must be one of {', '.join(KV_BYTES)}", param="kv_type")
    info = s.info
    n_ctx, budget, _ = context_shape(info, n_ctx, batch_tokens)
    n_ctx_alloc = -(-n_ctx // CTX_PAD) * CTX_PAD
    n_layer = info.n_layer
    k = n_layer + 1 if n_gpu_layers < 0 else min(n_gpu_layers, n_layer + 1)
    fa = flash_attn or default_flash_attn(info, k)
    # auto: llama.cpp turns it off when a layer's attention would run on another device than the layer
    # (a CPU layer's, sent to the GPU by op offload), so on only with every layer in one place
    fa_on = fa == "on" or (fa == "auto" and (k == 0 or k > n_layer))
    gpu_start = n_layer + 1 - k  # layers from here up, and the output layer when k >= 1, are on the GPU
    on_gpu = [i >= gpu_start for i in range(n_layer)]
    n_gpu = sum(on_gpu)
    head_on_gpu = k >= 1
    w_gpu = sum(b for b, g in zip(s.layer_bytes, on_gpu) if g)
    w_cpu = sum(b for b, g in zip(s.layer_bytes, on_gpu) if not g) + s.token_embd_bytes + s.other_bytes
    w_cpu += sum(b for b, g in zip(s.layer_repack_bytes, on_gpu) if not g)
    if head_on_gpu:
        w_gpu += s.output_bytes + s.tied_output_bytes
    else:
        w_cpu += s.output_bytes + (s.tied_output_bytes if s.tied_output_repacked else 0)
    kv_layer = n_ctx_alloc * s.n_head_kv * s.head_dim * 2 * KV_BYTES[kv_type] if info.causal else 0
    fast = uses_fast_path(info, fast_path)
    layer_act, head_act = cpu_compute(s, budget, n_ctx_alloc, fa_on, min(budget, n_seq_max) if fast else budget)
    if k == 0:
        compute = {"CPU": max(layer_act, head_act)}
    else:
        device, host = offloaded_compute(s, budget, n_ctx_alloc if info.causal else budget, fa_on,
                                          min(budget, n_seq_max) if fast else budget, partial=k <= n_layer)
        compute = {"GPU": device, "CPU": host}
    logits = embeddings_reserve_logits() if reserve_logits is None else reserve_logits
    row = (s.n_vocab * logits + info.n_embd) * 4  # logits (a stock build) + embeddings of one output
    if fast:  # a context without embeddings: logits, and the self-check's embeddings beside them if reserved
        output_at_start = n_seq_max * s.n_vocab * 4
        output = max(output_at_start, n_seq_max * row)
    else:  # a full batch: one input at an encoder's token limit, at worst
        output, output_at_start = max(budget, n_seq_max) * row, n_seq_max * row
    gpu = {"GPU": 0} if k else {}
    return MemoryPlan(
        n_ctx=n_ctx, batch_tokens=budget, n_seq_max=n_seq_max, flash_attn=fa, kv_type=kv_type, n_gpu_layers=k,
        weights={"CPU": w_cpu, **({"GPU": w_gpu} if k else {})},
        kv={"CPU": int(kv_layer * (n_layer - n_gpu)), **({"GPU": int(kv_layer * n_gpu)} if k else gpu)},
        compute=compute, output=output, output_at_start=output_at_start, n_layer=n_layer, fast_path=fast,
        notes=(kept.PLAN_NOTE,) if fast else (),
    )


def _halvings(n: int, floor: int) -> list[int]:
    out = [n]
    while out[-1] // 2 >= floor:
        out.append(out[-1] // 2)
    return out


def fit_budget(path_or_shape, vram_bytes: int, *, n_ctx: int | None = None, batch_tokens: int | None = None) -> MemoryPlan:
    """The roomiest settings whose GPU memory fits ``vram_bytes``.

    Every layer on the GPU first: the largest batch, then smaller batches, then a smaller
    KV-cache type (q8_0, q4_0), then (unless ``n_ctx`` is given) a shorter context, halving
    down to 512; only then fewer layers at the first context. Flash attention is on
    throughout (it keeps the compute buffer small, and a quantised KV cache needs it)."""
    s = path_or_shape if isinstance(path_or_shape, ModelShape) else read_shape(path_or_shape)
    info, n_layer = s.info, s.info.n_layer
    batches = [batch_tokens] if batch_tokens else [DEFAULT_BATCH_TOKENS, 256, 128, 64]
    kv_types = ["f16", "q8_0", "q4_0"] if info.causal else ["f16"]
    if default_kv_type(info) == "f32":
        kv_types = ["f32"] + kv_types
    first_ctx = context_shape(info, n_ctx, batch_tokens)[0]
    ctxs = [first_ctx] if (n_ctx or not info.causal) else _halvings(first_ctx, MIN_AUTO_CTX)

    def first_fit(layers: int, ctx: int) -> MemoryPlan | None:
        for kv in kv_types:
            for bt in batches:
                p = estimate(s, n_ctx=ctx, batch_tokens=bt, flash_attn="on", kv_type=kv, n_gpu_layers=layers)
                if p.device_total("GPU") <= vram_bytes:
                    return p
        return None

    for ctx in ctxs:
        p = first_fit(n_layer + 1, ctx)
        if p is not None:
            note = (f"context cut from {first_ctx} to {p.n_ctx} tokens to keep every layer on the GPU "
                    f"(longer inputs need --ctx and fewer layers on the GPU)") if ctx != first_ctx else None
            return MemoryPlan(**{**p.__dict__, "notes": ((note,) if note else ()) + p.notes})
    for layers in range(n_layer, 0, -1):
        p = first_fit(layers, first_ctx)
        if p is not None:
            return p
    full = estimate(s, n_ctx=first_ctx, batch_tokens=batches[0], flash_attn="on", n_gpu_layers=-1)
    least = estimate(s, n_ctx=ctxs[-1], batch_tokens=batches[-1], flash_attn="on", kv_type=kv_types[-1],
                     n_gpu_layers=1)
    raise BudgetError(
        f"{info.name} does not fit in {vram_bytes / GiB:.2f} GiB of VRAM: every layer on the GPU needs "
        f"{full.device_total('GPU') / GiB:.2f} GiB at context {full.n_ctx} "
        f"({(full.device_total('GPU') - vram_bytes) / GiB:.2f} GiB over), and even the least offload "
        f"(the output layer only, KV {least.kv_type}, batch {least.batch_tokens}, context {least.n_ctx}) needs "
        f"{least.device_total('GPU') / GiB:.2f} GiB ({(least.device_total('GPU') - vram_bytes) / GiB:.2f} GiB over); "
        "use a smaller quantisation, a larger budget, or the CPU (--n-gpu-layers 0)",
        param="vram",
    )


def settings_for_budget(model_path, vram_bytes: int, ctx: int | None = None, batch_tokens: int | None = None) -> dict:
    """Embedder keyword arguments (n_gpu_layers, n_ctx, batch_tokens, flash_attn, kv_type) that fit
    ``vram_bytes`` of GPU memory; raises BudgetError (an InvalidInputError) saying by how much not."""
    return fit_budget(model_path, int(vram_bytes), n_ctx=ctx, batch_tokens=batch_tokens).settings()


def parse_size(text: str) -> int:
    """'3GB', '2.5GiB', '800MB', '3' (GiB) -> bytes. GB and GiB both mean 2**30, as GPU memory is counted."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*", str(text))
    if not m or m.group(1).count(".") > 1:
        raise InvalidInputError(f"cannot read {text!r} as a size (e.g. 3GB, 2.5GiB, 800MB)", param="vram")
    unit = (m.group(2) or "G").upper().rstrip("B").rstrip("I")
    return int(float(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[unit])


def resolve_for_plan(model: str, quant: str | None, models_dir=None, registry=None) -> tuple[ModelShape, Path | None, str]:
    """(shape, file path or None, label): the converted file when there is one (and no other
    quantisation is asked for), else the models.toml entry's shape at ``quant``."""

    reg = registry or load_registry()
    if model in reg and not model.endswith(".gguf"):
        entry = reg.get(model)
        try:
            path = resolve_model(model, registry=reg, models_dir=models_dir)
        except GGUFEmbedError:
            path = None
        q = resolve_quant(quant)[0] if quant else None
        if path is not None and (q is None or path.name == entry.gguf_filename(q)):
            return read_shape(path), path, f"{entry.name} ({path.name})"
        q = q or resolve_quant(entry.default_quant)[0]
        return registry_shape(entry, q), None, f"{entry.name} at {q} (from models.toml, no file)"
    if quant:
        raise GGUFEmbedError(f"`quant` applies to models.toml names; {model} is a file", param="quant")
    path = resolve_model(model, models_dir=models_dir)
    shape = read_shape(path)
    return shape, path, f"{shape.info.name} ({path.name})"
