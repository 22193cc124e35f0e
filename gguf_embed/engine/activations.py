"""The compute buffers llama.cpp reserves for one ubatch: the activations alive at once, by device.

``s`` is a ``planning.ModelShape``; every size is in bytes. The CPU-only figures were fitted to
llama.cpp's CPU report, the offloaded ones to its report on a Vulkan device (``make test-gpu``
checks them per buffer).
"""

from __future__ import annotations

# Feed-forward and other activations alive inside a layer, in units of n_ubatch x n_ff x 4 bytes.
# Fitted to llama.cpp's compute buffer report (CPU backend, BERT and Qwen3 shapes, n_ubatch 64-4096).
FFN_ACT = 1.8


def cpu_compute(s, n_ub: int, n_ctx: int, fa: bool, n_out: int) -> tuple[int, int]:
    """Everything on the CPU: peak activations for one ubatch with ``n_out`` outputs, inside a layer
    and at the head (the caller takes the larger)."""
    causal = s.info.causal
    n_kv = n_ctx if causal else n_ub
    if fa:
        attn = n_ub * n_kv * 2  # the F16 mask only
    else:
        attn = n_ub * n_kv * (4 * s.n_head + (4 if causal else 2))  # F32 scores per head + the mask
    layer = attn + n_ub * s.n_ff * 4 * FFN_ACT
    head = n_out * (s.n_vocab + 2 * s.info.n_embd) * 4 if causal else 0  # logits + the normed input
    return int(layer), int(head)


def offloaded_compute(s, n_ub: int, n_kv: int, fa: bool, n_out: int, partial: bool) -> tuple[int, int]:
    """The compute buffers (device, host) once layers are on a GPU, in units of one ubatch's hidden
    states (n_ubatch x n_embd floats). On the device: the attention mask, beside the larger of a layer's
    attention (every head's scores without flash attention, plus Q, K, V and the residual: five units
    in an encoder, three where K and V are views of the cache) and its feed-forward (the n_ff-wide
    activations, three when gated, plus two units), or the head's outputs; two units more when some
    layers stay on the CPU (their matrix products are sent to the GPU, llama.cpp's op offload). On the
    host: the graph's inputs (the mask, token ids, positions) and the embedding lookups, three units
    (two in a decoder with flash attention). Fitted to llama.cpp's own report on a Vulkan device,
    n_ubatch 64-1024, BERT and Qwen3 shapes, flash attention on and off."""
    info = s.info
    unit = n_ub * info.n_embd * 4
    mask = n_ub * n_kv * (2 if fa else 4)
    ffn = n_ub * 4 * ((3 if s.gated_ffn else 1) * s.n_ff + 2 * info.n_embd)
    attn = (0 if fa else s.n_head * n_ub * n_kv * 4) + (3 if info.causal else 5) * unit
    head = n_out * (s.n_vocab + 2 * info.n_embd) * 4 if info.causal else 0
    device = max(mask + max(attn, ffn), head) + (2 * unit if partial else 0)
    return device, mask + (2 if info.causal and fa else 3) * unit
