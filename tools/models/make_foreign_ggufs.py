"""Build the foreign fixtures, convert them with llama.cpp's converter, and describe the results.

    HF_HUB_OFFLINE=1 .venv/bin/python -m tools.models.make_foreign_ggufs OUT_DIR [NOTES.md]

For each fixture: the Hugging Face folder (tools.models.foreign_models), the GGUF written by
llama.cpp's ``convert_hf_to_gguf.py`` (tools.models.llama_converter), its metadata and tensors
(tools.models.dump_gguf, read with the sdist's gguf-py), what llama.cpp itself makes of it
(tools.models.llama_check) and a check of llama.cpp's pooled output against transformers.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
QUERY = "how do plants make energy from sunlight?"
DOCUMENT = "Photosynthesis converts light energy into chemical energy stored in glucose."
TEXT = "Photosynthesis converts light energy into chemical energy."


def _use_sdist_gguf(converter: Path) -> None:
    """Read with the sdist's gguf-py (the converter's own), not the installed gguf package."""
    sys.path.insert(0, str(converter / "gguf-py"))
    for name in [m for m in sys.modules if m == "gguf" or m.startswith("gguf.")]:
        del sys.modules[name]


def hf_reference(folder: Path, kind: str, llama_tokens: list[int]):
    """transformers' pooled output for the same token ids llama.cpp ran."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        hidden = model(torch.tensor([llama_tokens])).last_hidden_state[0]
    if kind == "last":
        return hidden[-1].numpy()
    if kind == "cls":
        return hidden[0].numpy()
    return hidden.mean(0).numpy()


def pre_tokenizer_ref(folder: Path, converter: Path) -> str:
    """Which entry of the converter's BPE pre-tokenizer table the folder's tokenizer hashes to."""
    import re
    from hashlib import sha256

    from transformers import AutoTokenizer

    src = (converter / "conversion" / "base.py").read_text(encoding="utf-8")
    chktxt = eval(re.search(r"chktxt = ('.*')\n", src).group(1))  # the converter's own probe text
    table = dict(re.findall(r'if chkhsh == "([0-9a-f]+)":\n\s+# ref: (\S+)', src))
    h = sha256(str(AutoTokenizer.from_pretrained(str(folder)).encode(chktxt)).encode()).hexdigest()
    return f"chkhsh {h[:16]}... = the converter's entry for {table.get(h, '(none)')}"


def check(gguf_path: Path, folder: Path, kind: str) -> list[str]:
    import numpy as np

    from .llama_check import LlamaModel, llama_embed, llama_rank, vocab_info

    lines = []
    m = LlamaModel(gguf_path)
    try:
        info = vocab_info(m)
        lines.append("llama.cpp (llama-cpp-python low-level API) loads it:")
        lines.append("")
        for k, v in info.items():
            if k == "chat_template.rerank":
                v = "present (same text as above)" if v else None
            lines.append(f"- {k}: {v!r}")
        if kind == "rank":
            from tools.models.rerankers import qwen3_recipe_scores

            out, tokens, prompt = llama_rank(m, QUERY, DOCUMENT)
            probs, raws, ids, (yes, no) = qwen3_recipe_scores(folder, QUERY, [DOCUMENT])
            lines += [
                f"- rerank pair: query={QUERY!r}, document={DOCUMENT!r}",
                f"- prompt = rerank template with {{query}}/{{document}} replaced, tokenized add_special=false, "
                f"parse_special=true: {len(tokens)} tokens, first 6 {tokens[:6]}, last 6 {tokens[-6:]}",
                f"- llama.cpp RANK pooling output (n_cls_out={len(out)}, labels yes/no, softmax for qwen3): "
                f"{out.tolist()}  -> llama-server score = embd[0] = {float(out[0]):.6f}",
                f"- transformers recipe (Qwen3-Reranker model card): P(yes) = {probs[0]:.6f}, "
                f"logit(yes)-logit(no) = {raws[0]:.6f}; recipe token ids == llama.cpp prompt ids: {ids[0] == tokens}",
                f"- |llama.cpp P(yes) - recipe P(yes)| = {abs(float(out[0]) - probs[0]):.2e}; "
                f"log(p_yes/p_no) from llama.cpp = {float(np.log(out[0] / out[1])):.6f}",
            ]
        else:
            vec, tokens = llama_embed(m, TEXT)
            ref = hf_reference(folder, kind, tokens)
            cos = float(vec @ ref / (np.linalg.norm(vec) * np.linalg.norm(ref)))
            lines += [
                f"- embedding of {TEXT!r}: tokens (add_special=true, parse_special=true, as llama-server's "
                f"/embedding) {len(tokens)}: first {tokens[:4]}, last {tokens[-3:]} = "
                f"{[m.text(t) for t in tokens[-2:]]}",
                f"- pooled vector: dim {vec.shape[0]}, norm {float(np.linalg.norm(vec)):.4f}; cosine vs transformers "
                f"({kind} pooling of last_hidden_state on the same ids) = {cos:.6f}",
            ]
    finally:
        m.close()
    lines.append("")
    return lines


def main(out_dir: Path, notes: Path | None) -> int:
    from .llama_converter import converter_dir, llama_convert

    converter = converter_dir(CACHE)
    if converter is None:
        print("llama.cpp's converter is unavailable (make install-test)", file=sys.stderr)
        return 2
    _use_sdist_gguf(converter)
    from .dump_gguf import describe

    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    from .foreign_models import FIXTURES

    for name, (build, outtypes, kind) in FIXTURES.items():
        t0 = time.time()
        folder = build(out_dir / "hf")
        t_build = time.time() - t0
        for outtype in outtypes:
            gguf_path = out_dir / f"{name}-{outtype}.gguf"
            t0 = time.time()
            llama_convert(folder, gguf_path, outtype, converter=converter, log=gguf_path.with_suffix(".log"))
            t_conv = time.time() - t0
            print(f"{gguf_path.name}: built in {t_build:.1f} s, converted in {t_conv:.1f} s", flush=True)
            text = [describe(gguf_path), f"(HF folder `{folder.name}`, built in {t_build:.1f} s; "
                                         f"convert_hf_to_gguf.py --outtype {outtype}: {t_conv:.1f} s)", ""]
            if kind in ("last", "rank"):
                text += [f"BPE pre-tokenizer hash: {pre_tokenizer_ref(folder, converter)}", ""]
            text += check(gguf_path, folder, kind)
            sections.append("\n".join(text))
    body = "\n\n".join(sections)
    if notes is not None:
        notes.write_text(body, encoding="utf-8")
    else:
        print(body)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    args = sys.argv[1:]
    sys.exit(main(Path(args[0]), Path(args[1]) if len(args) > 1 else None))
