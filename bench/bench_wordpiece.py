"""Texts per second: the Python WordPiece against llama.cpp's WPM tokenizer, on the built-in
multilingual set (208 texts) normalised by gguf-embed as the runtime does.

    python bench/bench_wordpiece.py MODEL.gguf [--reps 20]

MODEL.gguf: a BERT WordPiece GGUF, e.g. ``gguf-embed convert all-minilm-l6-v2``'s.
"cold" clears the WordPiece's word cache before every text, "warm" keeps it across passes.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import parser

from gguf_embed.engine import llama as _llama  # noqa: E402
from gguf_embed.quality import texts as multilingual  # noqa: E402
from gguf_embed.text import normalize as textnorm  # noqa: E402
from gguf_embed.text.wordpiece import WordPiece, needed  # noqa: E402


def rate(fn, texts, reps: int, tries: int = 5) -> float:
    """The best of ``tries`` rates, each over ``reps`` passes (a shared machine is noisy)."""
    best = 0.0
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(reps):
            for text in texts:
                fn(text)
        best = max(best, reps * len(texts) / (time.perf_counter() - start))
    return best


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("model", type=Path)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()

    import gguf

    field = gguf.GGUFReader(args.model).fields["tokenizer.ggml.tokens"]
    wp = WordPiece([bytes(field.parts[i]).decode("utf-8") for i in field.data])
    model = _llama.Model(args.model, vocab_only=True)
    texts = [textnorm.apply("nfd_strip_lower", t) for t in multilingual.texts()]
    needed("\u0915")  # builds its character class, once

    def cold(text):
        wp._cache.clear()
        return wp.encode(text)

    rows = {
        "llama.cpp tokenize": rate(lambda t: model.tokenize(t, add_special=False), texts, args.reps),
        "WordPiece.encode, cold": rate(cold, texts, args.reps),
        "WordPiece.encode, warm": rate(wp.encode, texts, args.reps),
        "needed()": rate(needed, texts, args.reps),
        "textnorm nfd_strip_lower": rate(lambda t: textnorm.apply("nfd_strip_lower", t), texts, args.reps),
    }
    flagged = [t for t in texts if needed(t)]
    rows["WordPiece.encode, cold, needed() texts only"] = rate(cold, flagged, args.reps)
    rows["llama.cpp tokenize, needed() texts only"] = rate(lambda t: model.tokenize(t, add_special=False), flagged, args.reps)
    print(f"{len(texts)} texts, {sum(map(len, texts))} characters; needed() on {len(flagged)}")
    for name, value in rows.items():
        print(f"{name:46s} {value:10,.0f} texts/s")
    model.close()


if __name__ == "__main__":
    main()
