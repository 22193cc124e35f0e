"""A command of gguf-embed's, run in a subprocess that reports its own peak resident memory, for memory
tests and benchmarks. The peak is the process's VmHWM, which starts afresh with the program it runs
(``getrusage``'s maxrss does not: Linux carries it across exec, so a child started from a large test
process would report that process's size)."""

from __future__ import annotations

import os
import subprocess
import sys

_WRAPPER = ("import runpy, sys\n"
            "sys.argv = ['gguf-embed'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('gguf_embed', run_name='__main__')\n"
            "finally:\n    hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')]\n"
            "    print('PEAK_RSS', hwm[0], file=sys.stderr)\n")


def gguf_embed_peak_rss(*args, env: dict | None = None, timeout: int = 900) -> tuple[int, subprocess.CompletedProcess]:
    """(peak resident bytes, the finished process) of ``gguf-embed ARGS``; a failure raises with its stderr."""
    res = subprocess.run([sys.executable, "-c", _WRAPPER, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, env=env if env is not None else dict(os.environ))
    if res.returncode != 0:
        raise RuntimeError(f"gguf-embed {' '.join(map(str, args))} failed: {res.stderr[-2000:]}")
    peak = next(int(line.split()[1]) * 1024 for line in res.stderr.splitlines() if line.startswith("PEAK_RSS"))
    return peak, res
