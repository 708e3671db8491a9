"""A local Hugging Face Hub on 127.0.0.1 for ``interleaf models pull`` (the hub is not reachable
from the test machines).

It is a real HTTP server (stdlib, in a background thread) that answers the part of the hub's
REST protocol ``huggingface_hub.snapshot_download`` uses: the revision's repo info
(``/api/models/{repo}/revision/{rev}``), the recursive tree listing
(``/api/models/{repo}/tree/{commit}``) and file downloads (``/{repo}/resolve/{commit}/{path}``,
HEAD for the metadata, then GET), with the hub's ``X-Error-Code`` on a missing repository or
revision. Files are served from folders on disk (one per repository) as plain HTTP files (no
Xet). Every request path is recorded, so a test sees which files were fetched.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class HubServer:
    """``repos``: ``{"owner/name": folder}``; every repository has the one branch ``main``, whose
    commit is derived from the repository's name."""

    def __init__(self, repos: dict[str, Path]):
        self.repos = {k: Path(v) for k, v in repos.items()}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                server._answer(self, head=True)

            def do_GET(self) -> None:
                server._answer(self, head=False)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def commit(self, repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def fetched(self) -> set[str]:
        """The repository paths whose content was downloaded (GET of a resolve URL)."""
        return {p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p in self.requests if m == "GET" and "/resolve/" in p}

    def _files(self, repo: str) -> list[Path]:
        root = self.repos[repo]
        return sorted(p for p in root.rglob("*") if p.is_file())

    def _answer(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(("HEAD" if head else "GET", path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo, rev = "/".join(parts[2:4]), parts[5]
            if repo not in self.repos:
                return self._error(h, 404, "RepoNotFound", f"Repository {repo} not found")
            if rev not in ("main", self.commit(repo)):
                return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
            root = self.repos[repo]
            if parts[4] == "revision":
                siblings = [{"rfilename": p.relative_to(root).as_posix()} for p in self._files(repo)]
                return self._json(h, {"id": repo, "modelId": repo, "sha": self.commit(repo), "private": False, "siblings": siblings}, head)
            entries: list[dict[str, object]] = []
            dirs = sorted({p.relative_to(root).parent.as_posix() for p in self._files(repo)} - {"."})
            entries += [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d} for d in dirs]
            entries += [{"type": "file", "oid": self._oid(p), "size": p.stat().st_size, "path": p.relative_to(root).as_posix()} for p in self._files(repo)]
            return self._json(h, entries, head)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, rev, rel = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            if repo not in self.repos:
                return self._error(h, 404, "RepoNotFound", f"Repository {repo} not found")
            if rev not in ("main", self.commit(repo)):
                return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
            file = self.repos[repo] / rel
            if ".." in rel.split("/") or not file.is_file():
                return self._error(h, 404, "EntryNotFound", f"{rel} does not exist")
            data = file.read_bytes()
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(data)))
            h.send_header("ETag", f'"{self._oid(file)}"')
            h.send_header("X-Repo-Commit", self.commit(repo))
            h.end_headers()
            if not head:
                h.wfile.write(data)
            return None
        return self._error(h, 404, "EntryNotFound", f"no route for {path}")

    @staticmethod
    def _oid(file: Path) -> str:
        data = file.read_bytes()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id, as the hub's

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, obj: object, head: bool) -> None:
        body = json.dumps(obj).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.end_headers()
        h.wfile.write(body)
