"""A tiny random bge-m3: ``XLMRobertaModel`` around the real XLM-R vocabulary (CLS pooling, normalised)
plus random ``sparse_linear`` (hidden -> 1) and ``colbert_linear`` (hidden -> hidden) torch Linear
layers, saved as state dicts in ``sparse_linear.pt`` / ``colbert_linear.pt`` as BAAI/bge-m3 has them."""

from __future__ import annotations

from pathlib import Path

from .multilingual import build_tiny_xlmr
from .tiny import write_st_files


def build_tiny_m3(dest: Path, tok: dict, *, hidden: int = 32, seed: int = 3, safetensors: bool = False) -> Path:
    import torch

    build_tiny_xlmr(dest, tok, hidden=hidden, pooling="cls", seed=seed)
    write_st_files(dest, hidden, "cls", {}, 8192)  # bge-m3 has no prompts
    torch.manual_seed(seed + 100)
    sparse, colbert = torch.nn.Linear(hidden, 1), torch.nn.Linear(hidden, hidden)
    # bge-m3's own lexical weights are mostly 0.0-0.4 (FlagEmbedding's README example: 0.04-0.27); a sparse
    # head of this scale gives weights in that range on these hidden states (norm ~ sqrt(hidden))
    torch.nn.init.normal_(sparse.weight, std=0.02)
    torch.nn.init.normal_(sparse.bias, std=0.02)
    torch.nn.init.normal_(colbert.weight, std=0.5)
    torch.nn.init.normal_(colbert.bias, std=0.2)
    for name, layer in (("sparse_linear", sparse), ("colbert_linear", colbert)):
        if safetensors:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in layer.state_dict().items()}, str(dest / f"{name}.safetensors"))
        else:
            torch.save(layer.state_dict(), dest / f"{name}.pt")
    return dest


def load_heads(folder: Path):
    """The two Linear layers back, as torch modules (the reference's own copy)."""
    import torch

    out = {}
    for name in ("sparse_linear", "colbert_linear"):
        state = torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True)
        layer = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
        layer.load_state_dict(state)
        out[name] = layer.eval()
    return out
