"""A local stand-in for the Hugging Face Hub on 127.0.0.1, serving exactly what huggingface-hub's
``HfApi.model_info(files_metadata=True)``, ``get_hf_file_metadata`` (HEAD) and its file download
(GET, with Range for resuming) ask for, with the headers it reads: ``X-Repo-Commit``, ``ETag`` /
``X-Linked-Etag`` (an LFS file's sha256), ``X-Linked-Size``, ``Content-Length``, ``Content-Range``
and ``X-Error-Code`` on a 404. Every request is recorded, so a test can tell whether the network
was touched."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["FakeHub", "sha256_of"]

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class FakeFile:
    path: Path
    sha256: str  # what the Hub says (a test may make it wrong)
    lfs: bool  # listed with LFS metadata (else only the HEAD's ETag carries the sha256)

    @property
    def size(self) -> int:
        return self.path.stat().st_size


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict[str, FakeFile]] = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._sha: dict[Path, str] = {}

    def add(self, repo: str, filename: str, path: Path, *, sha256: str | None = None, lfs: bool = True) -> FakeFile:
        path = Path(path)
        if path not in self._sha:
            self._sha[path] = sha256_of(path)
        f = FakeFile(path, sha256 or self._sha[path], lfs)
        self.repos.setdefault(repo, {})[filename] = f
        return f

    def start(self) -> "FakeHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self._thread.is_alive():
            self.stop()


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _error(self, code: int, error_code: str) -> None:
            body = json.dumps({"error": error_code}).encode()
            self.send_response(code)
            self.send_header("X-Error-Code", error_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self):
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, dict(self.headers)))
            api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
            if api and self.command == "GET":
                return self._info(api.group(1))
            res = re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path)
            if res:
                return self._file(res.group(1), res.group(2))
            return self._error(404, "NotFound")

        do_GET = do_HEAD = _route

        def _info(self, repo: str) -> None:
            if repo not in hub.repos:
                return self._error(404, "RepoNotFound")
            siblings = [{"rfilename": "README.md", "size": 10, "blobId": "1" * 40}]
            for name, f in hub.repos[repo].items():
                row = {"rfilename": name, "size": f.size, "blobId": f.sha256[:40]}
                if f.lfs:
                    row["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
                siblings.append(row)
            body = json.dumps({"id": repo, "sha": COMMIT, "private": False, "siblings": siblings}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _file(self, repo: str, name: str) -> None:
            if repo not in hub.repos:
                return self._error(404, "RepoNotFound")
            f = hub.repos[repo].get(name)
            if f is None:
                return self._error(404, "EntryNotFound")
            size, start = f.size, 0
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if m and self.command == "GET" and int(m.group(1)) < size:
                start = int(m.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{f.sha256}"')
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("X-Linked-Size", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            if self.command == "GET":
                with open(f.path, "rb") as fh:
                    fh.seek(start)
                    while chunk := fh.read(1 << 20):
                        self.wfile.write(chunk)

    return Handler
