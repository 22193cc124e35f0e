"""A GGUF file's metadata and tensors as Markdown, read with gguf's GGUFReader.

Long arrays are shown by length and first items; ``tokenizer.ggml.tokens`` also by the
ids and texts of its special tokens (bos/eos/eot/sep/cls/pad/unk/mask/eom) and of the
first added/control tokens. Run as a script: ``python -m tools.models.dump_gguf FILE...``
(with the sdist's gguf-py first on PYTHONPATH to read with the matching gguf package).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

# GGUF's token-id keys (llama.cpp has no cls key: its cls is the bos token; sep is spelt "seperator")
SPECIAL_KEYS = {
    "bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id", "eot": "tokenizer.ggml.eot_token_id",
    "eom": "tokenizer.ggml.eom_token_id", "sep": "tokenizer.ggml.seperator_token_id",
    "pad": "tokenizer.ggml.padding_token_id", "unk": "tokenizer.ggml.unknown_token_id",
    "mask": "tokenizer.ggml.mask_token_id",
}
LONG_TEXT = 240  # chat templates other than "rerank" are shown by length and beginning
FIRST_ITEMS = 8


def read_fields(path: Path):
    """(ordered {key: python value}, [(tensor name, numpy-order shape, type name)])."""
    import gguf

    reader = gguf.GGUFReader(str(path), "r")
    kv = {}
    for name, field in reader.fields.items():
        kv[name] = field_value(field)
    tensors = [(t.name, tuple(int(d) for d in reversed(t.shape.tolist())), t.tensor_type.name) for t in reader.tensors]
    return kv, tensors


def field_value(field):
    import gguf

    T = gguf.GGUFValueType
    types = list(field.types)
    if not types:
        return None
    if types[0] == T.ARRAY:
        inner = types[1] if len(types) > 1 else None
        if inner == T.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        return [field.parts[i].tolist()[0] if len(field.parts[i]) == 1 else field.parts[i].tolist() for i in field.data]
    if types[0] == T.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    value = field.parts[field.data[0]].tolist()[0]
    return bool(value) if types[0] == T.BOOL else value


def _fmt(value, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def describe(path: Path) -> str:
    import gguf

    kv, tensors = read_fields(path)
    arch = kv.get("general.architecture", "?")
    tokens = kv.get("tokenizer.ggml.tokens") or []
    types = kv.get("tokenizer.ggml.token_type") or []
    lines = [f"### `{path.name}`", "", f"- file size: {path.stat().st_size:,} bytes; {len(tensors)} tensors; {len(kv)} keys", ""]

    headline = ["general.architecture", "general.basename", "general.name", "general.file_type",
                f"{arch}.pooling_type", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token",
                "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_sep_token", f"{arch}.classifier.output_labels"]
    lines.append("Headline keys:")
    lines.append("")
    for key in headline:
        value = kv.get(key, "(absent)")
        if key == f"{arch}.pooling_type" and isinstance(value, int):
            value = f"{value} ({gguf.PoolingType(value).name})"
        if key == "general.file_type" and isinstance(value, int):
            value = f"{value} ({gguf.LlamaFileType(value).name})"
        lines.append(f"- `{key}` = {value if isinstance(value, str) and value.startswith('(') else _fmt(value)}")
    lines.append("")

    lines.append("Special tokens:")
    lines.append("")
    for kind, key in SPECIAL_KEYS.items():
        if key in kv:
            tid = kv[key]
            text = tokens[tid] if isinstance(tid, int) and 0 <= tid < len(tokens) else "(out of range)"
            lines.append(f"- {kind}: id {tid} = {text!r}")
        else:
            lines.append(f"- {kind}: (no `{key}`)" + (" - llama.cpp's cls is bos" if kind == "bos" else ""))
    lines.append("")

    for key in [k for k in kv if k.startswith("tokenizer.chat_template") and isinstance(kv[k], str)]:
        text = kv[key]
        if key != "tokenizer.chat_template.rerank" and len(text) > LONG_TEXT:
            lines.append(f"`{key}`: {len(text)} chars, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}, "
                         f"begins {text[:LONG_TEXT]!r}...")
            lines.append("")
            continue
        lines.append(f"`{key}` (exact text, {len(text)} chars; as a Python literal: {text!r}):")
        lines.append("")
        lines.append("```text")
        lines.append(text.replace("```", "`\u200b``"))
        lines.append("```")
        lines.append("")

    lines.append("All metadata keys:")
    lines.append("")
    lines.append("| key | value |")
    lines.append("| --- | --- |")
    for key, value in kv.items():
        if key.startswith("tokenizer.chat_template") and isinstance(value, str):
            shown = f"(text, {len(value)} chars: see above)"
        elif key == "tokenizer.ggml.tokens":
            ctl = [(i, t) for i, t in enumerate(tokens) if i < len(types) and types[i] in (3, 4)]  # CONTROL, USER_DEFINED
            shown = (f"array[{len(value)}], first {FIRST_ITEMS}: {_fmt(value[:FIRST_ITEMS], 200)}; "
                     f"control/user-defined: {len(ctl)}, first: {_fmt(ctl[:6], 240)}, last: {_fmt(ctl[-3:], 200)}")
        elif isinstance(value, list):
            shown = f"array[{len(value)}], first {FIRST_ITEMS}: {_fmt(value[:FIRST_ITEMS], 200)}"
            if len(value) <= FIRST_ITEMS:
                shown = f"array[{len(value)}]: {_fmt(value, 300)}"
        else:
            shown = _fmt(value)
            if key.endswith("pooling_type") and isinstance(value, int):
                shown += f" ({gguf.PoolingType(value).name})"
        shown = shown.replace("|", "\\|").replace("\n", "\\n")
        lines.append(f"| `{key}` | {shown} |")
    lines.append("")

    lines.append("Tensors (numpy order, rows x cols):")
    lines.append("")
    lines.append("| name | shape | type |")
    lines.append("| --- | --- | --- |")
    for name, shape, kind in tensors:
        lines.append(f"| `{name}` | {shape} | {kind} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(describe(Path(arg)))
