"""Prometheus text-format counters and histograms for the server (no extra dependency)."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1

    def render(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        lines = [f'{name}_bucket{{{labels}{sep}le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        suffix = f"{{{labels}}}" if labels else ""
        lines += [f"{name}_sum{suffix} {self.sum}", f"{name}_count{suffix} {self.total}"]
        return lines


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests = defaultdict(int)  # (model, status) -> n
        self.inputs = defaultdict(int)
        self.tokens = defaultdict(int)
        self.errors = defaultdict(int)  # error code -> n
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_seqs = Histogram(BATCH_BUCKETS)
        self.batch_tokens = Histogram(tuple(b * 64 for b in BATCH_BUCKETS))

    def request(self, model: str, status: int, seconds: float, n_inputs: int = 0, n_tokens: int = 0) -> None:
        with self._lock:
            self.requests[(model, status)] += 1
            self.inputs[model] += n_inputs
            self.tokens[model] += n_tokens
            self.latency.observe(seconds)

    def error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def batch(self, n_seqs: int, n_tokens: int) -> None:
        with self._lock:
            self.batch_seqs.observe(n_seqs)
            self.batch_tokens.observe(n_tokens)

    def render(self) -> str:
        out = []
        with self._lock:
            out += ["# HELP gguf_embed_requests_total Embedding requests by model and HTTP status.",
                    "# TYPE gguf_embed_requests_total counter"]
            out += [f'gguf_embed_requests_total{{model="{m}",status="{s}"}} {n}' for (m, s), n in sorted(self.requests.items())]
            out += ["# HELP gguf_embed_inputs_total Inputs embedded.", "# TYPE gguf_embed_inputs_total counter"]
            out += [f'gguf_embed_inputs_total{{model="{m}"}} {n}' for m, n in sorted(self.inputs.items())]
            out += ["# HELP gguf_embed_tokens_total Tokens embedded.", "# TYPE gguf_embed_tokens_total counter"]
            out += [f'gguf_embed_tokens_total{{model="{m}"}} {n}' for m, n in sorted(self.tokens.items())]
            out += ["# HELP gguf_embed_errors_total Rejected or failed requests by error kind.",
                    "# TYPE gguf_embed_errors_total counter"]
            out += [f'gguf_embed_errors_total{{kind="{k}"}} {n}' for k, n in sorted(self.errors.items())]
            out += ["# HELP gguf_embed_request_seconds Request latency.", "# TYPE gguf_embed_request_seconds histogram"]
            out += self.latency.render("gguf_embed_request_seconds")
            out += ["# HELP gguf_embed_batch_sequences Sequences per llama.cpp batch round.",
                    "# TYPE gguf_embed_batch_sequences histogram"]
            out += self.batch_seqs.render("gguf_embed_batch_sequences")
            out += ["# HELP gguf_embed_batch_tokens Tokens per llama.cpp batch round.",
                    "# TYPE gguf_embed_batch_tokens histogram"]
            out += self.batch_tokens.render("gguf_embed_batch_tokens")
        return "\n".join(out) + "\n"
