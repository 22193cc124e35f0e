"""Ready GGUFs from the Hugging Face Hub: ``hf:OWNER/REPO/FILE.gguf`` and ``hf:OWNER/REPO:QUANT``.

A file lands in ``MODELS_DIR/hf/OWNER/REPO/FILE.gguf`` and is used from there from then on,
without asking the Hub again. The download goes through huggingface-hub (its endpoint, token,
proxy settings and progress bar): the repo's file list and each file's sha256 from
``HfApi.model_info(files_metadata=True)``, the bytes from ``/resolve/main/FILE`` into a hidden
``.FILE.<sha>.partial`` next to the target that a later call resumes with a Range request. The
file takes its name only once complete and matching the Hub's sha256; a mismatch removes it.
Every failure is one ``ModelNotFoundError``/``ModelLoadError`` line.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import GGUFEmbedError, ModelLoadError, ModelNotFoundError
from .gguf_file import sha256_file

__all__ = ["HF_PREFIX", "HFRef", "parse_hf", "hf_folder", "local_hf_file", "fetch_hf", "matches_quant", "is_extra_part"]

HF_PREFIX = "hf:"
REVISION = "main"
_REPO = r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*"
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class HFRef:
    """A GGUF in a Hub repo: by its path in the repo, or by a quantisation tag (or neither: the one GGUF)."""

    repo: str
    filename: str | None = None
    quant: str | None = None

    @property
    def spec(self) -> str:
        tail = f"/{self.filename}" if self.filename else f":{self.quant}" if self.quant else ""
        return f"{HF_PREFIX}{self.repo}{tail}"


@dataclass(frozen=True)
class _Remote:
    sha256: str | None
    size: int | None


def parse_hf(spec: str) -> HFRef:
    body = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    m = re.fullmatch(rf"({_REPO})(?::([A-Za-z0-9_]+)|/(.+\.gguf))?", body, re.IGNORECASE)
    if m is None or (m.group(3) and (m.group(3).startswith("/") or ".." in m.group(3).split("/"))):
        raise ModelNotFoundError(f"cannot read {spec!r}: expected hf:OWNER/REPO/FILE.gguf or hf:OWNER/REPO:QUANT",
                                 param="model")
    return HFRef(m.group(1), m.group(3), m.group(2).upper() if m.group(2) else None)


def hf_folder(models_dir: Path, repo: str) -> Path:
    return Path(models_dir) / "hf" / repo


def matches_quant(name: str, quant: str) -> bool:
    """``quant`` as a whole tag of the file name, any case: Q8_0 in ``x-q8_0.gguf``, F16 not in ``x-bf16``,
    Q4_K not in ``x-Q4_K_M``."""
    base = name.rsplit("/", 1)[-1]
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9]|_[A-Za-z0-9])", base, re.IGNORECASE) is not None


def is_extra_part(name: str) -> bool:
    """A split model's second or later part (``-00002-of-00003.gguf``...), which llama.cpp finds from the first."""
    m = _SPLIT.search(name)
    return m is not None and int(m.group(1)) > 1


def _groups(names, quant: str | None) -> list[list[str]]:
    """The GGUFs among ``names`` that match ``quant``, a split model's parts as one group."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        if name.lower().endswith(".gguf") and (quant is None or matches_quant(name, quant)):
            groups.setdefault(_SPLIT.sub(".gguf", name), []).append(name)
    return list(groups.values())


def _complete(group: list[str], have) -> bool:
    m = _SPLIT.search(group[0])
    return all(n in have for n in group) and (m is None or len(group) == int(m.group(2)))


def local_hf_file(ref: HFRef, models_dir: Path) -> Path | None:
    """The file ``ref`` names if it was downloaded before (no network)."""
    folder = hf_folder(models_dir, ref.repo)
    if ref.filename:
        m = _SPLIT.search(ref.filename)
        parts = [_SPLIT.sub(f"-{i:05d}-of-{m.group(2)}.gguf", ref.filename) for i in range(1, int(m.group(2)) + 1)] \
            if m else [ref.filename]
        return folder / ref.filename if all((folder / p).is_file() for p in parts) else None
    if not folder.is_dir():
        return None
    have = {p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf") if p.is_file()}
    groups = [g for g in _groups(have, ref.quant) if _complete(g, have)]
    return folder / groups[0][0] if len(groups) == 1 else None


def fetch_hf(ref: HFRef, models_dir: Path, *, fallback_quant: str | None = None) -> Path:
    """Download what ``ref`` names into the models dir (unless there already) and return its path.
    With ``fallback_quant``, a ``ref.filename`` the repo lacks is replaced by its file of that quantisation."""
    found = local_hf_file(ref, models_dir)
    if found is not None:
        return found
    listing = _listing(ref.repo)
    names = _pick(ref, listing, fallback_quant)
    folder = hf_folder(models_dir, ref.repo)
    try:
        for name in names:
            _download(ref.repo, name, listing[name], folder / name)
    except OSError as exc:  # the models dir is not writable, the disk is full
        raise ModelLoadError(f"cannot write {folder}: {exc.strerror or exc}") from None
    return folder / names[0]


def _pick(ref: HFRef, listing: dict[str, _Remote], fallback_quant: str | None) -> list[str]:
    there = f"it has: {', '.join(sorted(listing))}" if listing else "it has no GGUF files"
    if ref.filename and ref.filename in listing:
        return next(g for g in _groups(listing, None) if ref.filename in g)
    if ref.filename and not fallback_quant:
        raise ModelNotFoundError(f"{ref.repo} has no file {ref.filename} ({there})", param="model")
    quant = ref.quant or fallback_quant
    groups = _groups(listing, quant)
    if len(groups) == 1:
        return groups[0]
    if not groups:
        raise ModelNotFoundError(f"{ref.repo} has no GGUF file for {quant} ({there})" if quant else
                                 f"{ref.repo} has no GGUF files", param="model")
    names = ", ".join(g[0] for g in groups)
    if quant:
        raise ModelNotFoundError(f"{quant} matches several GGUF files in {ref.repo} ({names}); name one: "
                                 f"hf:{ref.repo}/FILE.gguf", param="model")
    raise ModelNotFoundError(f"{ref.repo} has several GGUF files ({names}); name one: hf:{ref.repo}:QUANT or "
                             f"hf:{ref.repo}/FILE.gguf", param="model")


def _endpoint() -> str | None:
    env = os.environ.get("HF_ENDPOINT")
    return env.rstrip("/") if env else None


def _listing(repo: str) -> dict[str, _Remote]:
    """The repo's GGUF files with the sha256 and size the Hub has for each."""
    from huggingface_hub import HfApi

    with _hub_errors(repo, f"list the files of {repo}"):
        info = HfApi(endpoint=_endpoint()).model_info(repo, revision=REVISION, files_metadata=True)
    out = {}
    for s in info.siblings or []:
        if s.rfilename.lower().endswith(".gguf"):
            lfs = s.lfs
            sha = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
            out[s.rfilename] = _Remote(str(sha).lower() if sha else None, s.size)
    return out


def _expected_sha256(repo: str, name: str, remote: _Remote) -> str:
    """The listing's LFS sha256, else the file's ETag when it is one (LFS files' ETag is their sha256)."""
    if remote.sha256:
        return remote.sha256
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    with _hub_errors(repo, f"read the metadata of {name} in {repo}"):
        etag = get_hf_file_metadata(hf_hub_url(repo, name, revision=REVISION, endpoint=_endpoint()),
                                    endpoint=_endpoint()).etag
    if etag and _SHA256.fullmatch(etag.lower()):
        return etag.lower()
    raise ModelLoadError(f"the Hub gives no sha256 for {name} in {repo}; not downloading it unchecked")


def _download(repo: str, name: str, remote: _Remote, dest: Path) -> None:
    from filelock import FileLock

    sha = _expected_sha256(repo, name, remote)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial, lock = dest.with_name(f".{dest.name}.{sha[:16]}.partial"), dest.with_name(f".{dest.name}.lock")
    try:
        with FileLock(str(lock)):  # one download per file, even from several processes (Ray actors)
            if dest.is_file():  # another process finished it meanwhile
                return
            _transfer(repo, name, remote.size, partial)
            digest = sha256_file(partial)
            if digest != sha:
                partial.unlink(missing_ok=True)
                raise ModelLoadError(f"{name} from {repo} has sha256 {digest[:16]}..., the Hub says {sha[:16]}...; "
                                     "deleted it, nothing was installed")
            os.replace(partial, dest)
    finally:
        lock.unlink(missing_ok=True)


def _transfer(repo: str, name: str, size: int | None, partial: Path) -> None:
    """The bytes of ``name`` into ``partial``, resuming after what an earlier attempt left there."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo, name, revision=REVISION, endpoint=_endpoint())
    with _hub_errors(repo, f"download {name} from {repo}"), open(partial, "r+b" if partial.exists() else "wb") as fh:
        have = fh.seek(0, os.SEEK_END)
        if size is not None and have > size:
            fh.seek(0)
            fh.truncate()
            have = 0
        http_get(url, fh, resume_size=have, headers=build_hf_headers(), expected_size=size, displayed_filename=name)


@contextmanager
def _hub_errors(repo: str, what: str):
    """Whatever huggingface-hub or the network raises, as one line that says what to do."""
    from huggingface_hub import errors as hf

    try:
        yield
    except GGUFEmbedError:
        raise
    except hf.GatedRepoError:
        raise ModelNotFoundError(f"cannot {what}: the repo is gated; accept its terms on the Hub and log in "
                                 "(hf auth login)", param="model") from None
    except hf.RepositoryNotFoundError:
        raise ModelNotFoundError(f"cannot {what}: no Hugging Face repo {repo} (or it is private: log in with "
                                 "hf auth login)", param="model") from None
    except hf.RevisionNotFoundError:
        raise ModelNotFoundError(f"cannot {what}: {repo} has no revision {REVISION}", param="model") from None
    except hf.OfflineModeIsEnabled:
        raise ModelLoadError(f"cannot {what}: HF_HUB_OFFLINE is set and the file is not in the models dir yet") from None
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if getattr(exc, "response", None) is not None else "?"
        raise ModelLoadError(f"cannot {what}: the Hub answered HTTP {status}") from None
    except Exception as exc:  # no network, DNS, TLS, timeouts, a full disk
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(f"cannot {what}: {type(exc).__name__}{': ' + first if first else ''}") from None
