"""llama.cpp's own Hugging Face -> GGUF converter, as users run it.

The llama-cpp-python sdist vendors llama.cpp, and with it ``convert_hf_to_gguf.py``, the
``conversion/`` package it imports its model classes from, and ``gguf-py/`` (the gguf
package of the same commit). The Makefile extracts those pieces into ``.cache/llama-cpp/``;
``converter_dir`` finds them there, or extracts them itself from an sdist tarball left in
the cache folder, and returns None when neither is there (the tests that need it skip).

``llama_convert`` runs the converter in a subprocess with ``sys.executable``, with the
sdist's ``gguf-py`` first on PYTHONPATH so that the converter writes with the gguf-py it
was released with, never the (possibly older or newer) installed gguf package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

SDIST_VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{SDIST_VERSION}"
SDIST_TARBALL = f"{SDIST_NAME}.tar.gz"
VENDOR = f"{SDIST_NAME}/vendor/llama.cpp/"
SCRIPT = "convert_hf_to_gguf.py"
# what the converter imports or reads from its own folder
PIECES = (SCRIPT, "conversion/", "gguf-py/")
EXTRACT_DIR = "llama-cpp"


def _complete(folder: Path) -> bool:
    return (
        (folder / SCRIPT).is_file()
        and (folder / "gguf-py" / "gguf" / "__init__.py").is_file()
        # older llama.cpp keeps every model class in the script itself, without conversion/
        and ((folder / "conversion" / "__init__.py").is_file() or "from conversion" not in (folder / SCRIPT).read_text("utf-8"))
    )


def _extract(tarball: Path, dest: Path) -> Path | None:
    """Extract only the converter pieces (a few MB) from the sdist into ``dest``."""
    import shutil

    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)  # a half-done earlier extraction
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            members = []
            for m in tar.getmembers():
                if not m.name.startswith(VENDOR) or not (m.isfile() or m.isdir()):
                    continue
                rel = m.name[len(VENDOR):]
                if rel == SCRIPT or any(rel.startswith(p) for p in PIECES[1:]):
                    m.name = rel
                    members.append(m)
            if not members:
                return None
            tmp.mkdir(parents=True, exist_ok=True)
            try:
                tar.extractall(tmp, members=members, filter="data")
            except TypeError:  # Python without extraction filters (< 3.11.4)
                tar.extractall(tmp, members=members)
    except (OSError, tarfile.TarError):
        return None
    if not _complete(tmp):
        return None
    if _complete(dest):  # a concurrent extraction finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return dest
    shutil.rmtree(dest, ignore_errors=True)  # e.g. the empty folder an offline make left
    tmp.rename(dest)
    return dest if _complete(dest) else None


def converter_dir(cache_root: Path) -> Path | None:
    """A folder with ``convert_hf_to_gguf.py``, ``conversion/`` and ``gguf-py/`` from the sdist, or None.

    Looks for ``cache_root/llama-cpp`` (the Makefile's extraction) first, then for the
    sdist tarball anywhere under ``cache_root`` (extracted into ``cache_root/llama-cpp``).
    Never touches the network.
    """
    cache_root = Path(cache_root)
    dest = cache_root / EXTRACT_DIR
    if _complete(dest):
        return dest
    if not cache_root.is_dir():
        return None
    for tarball in sorted(cache_root.rglob(SDIST_TARBALL)):
        found = _extract(tarball, dest)
        if found is not None:
            return found
    return None


class ConversionError(RuntimeError):
    pass


def llama_convert(hf_dir: Path, out: Path, outtype: str = "f32", *, converter: Path | None = None,
                  cache_root: Path | None = None, timeout: float = 600, extra_args: tuple[str, ...] = (),
                  log: Path | None = None) -> Path:
    """Convert ``hf_dir`` with llama.cpp's ``convert_hf_to_gguf.py`` into ``out``; returns ``out``.

    ``converter`` is the folder from ``converter_dir`` (found under ``cache_root``, by default
    the repository's ``.cache``, when not given). Runs offline (HF_HUB_OFFLINE,
    TRANSFORMERS_OFFLINE). ``log``: a file for the converter's whole output (its log lines go
    to stderr). Raises ConversionError with the tail of the converter's output.
    """
    if converter is None:
        root = cache_root if cache_root is not None else Path(__file__).resolve().parents[2] / ".cache"
        converter = converter_dir(root)
        if converter is None:
            raise FileNotFoundError(f"llama.cpp's converter is not in {root} (run make install-test)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    gguf_py = str(Path(converter) / "gguf-py")
    env["PYTHONPATH"] = os.pathsep.join([gguf_py] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("NO_LOCAL_GGUF", None)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONIOENCODING="utf-8")
    cmd = [sys.executable, str(Path(converter) / SCRIPT), str(hf_dir), "--outfile", str(out), "--outtype", outtype,
           *extra_args]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise ConversionError(f"{SCRIPT} timed out after {timeout} s on {hf_dir}") from e
    if log is not None:
        Path(log).write_text((proc.stdout or "") + (proc.stderr or ""), encoding="utf-8")
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-30:])
        raise ConversionError(f"{SCRIPT} failed on {hf_dir} (exit {proc.returncode}):\n{tail}")
    return out
