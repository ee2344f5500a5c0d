"""A local model hub on 127.0.0.1 that serves files the way Hugging Face and ModelScope do.

`/{repo}/resolve/main/{file}` (HF) and `/models/{repo}/resolve/master/{file}` (ModelScope) answer 302 to a
CDN path, HF with `X-Linked-Size` and `X-Linked-Etag` (the file's sha256) like its LFS files; the CDN path
serves GET and HEAD with Range (206 + Content-Range, 416). Unknown files get 404 with HF's error header.
It counts the body bytes it sends and can drop a connection after N bytes or send slowly.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

_HF = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_MS = re.compile(r"^/models/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(r"^/cdn/(?P<key>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Served:
    """One request the hub answered: method, path, Range header, status, body bytes sent."""

    method: str
    path: str
    range: str | None
    status: int
    sent: int = 0


@dataclass
class HubState:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (repo, file) -> content
    blobs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content (the CDN)
    log: list[Served] = field(default_factory=list)
    drop_after: dict[str, int] = field(default_factory=dict)  # file name -> bytes before dropping (once)
    bytes_per_second: float | None = None  # slow the CDN down (for cancel tests)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    # ---- routing -------------------------------------------------------------------------------
    def _answer(self, body: bool) -> None:
        state = self.server.state
        path = unquote(self.path.split("?", 1)[0])
        record = Served(self.command, path, self.headers.get("Range"), 0)
        with state.lock:
            state.log.append(record)
        if match := _CDN.match(path):
            self._blob(match["key"], body, record)
            return
        if path.startswith("/models/"):
            match, hub = _MS.match(path), "modelscope"
        else:
            match, hub = _HF.match(path), "huggingface"
        content = state.files.get((match["repo"], match["file"])) if match else None
        if content is None:
            record.status = 404
            self._send(404, b'{"error":"Entry not found"}', {"X-Error-Code": "EntryNotFound"}, body)
            return
        sha = hashlib.sha256(content).hexdigest()
        headers = {"Location": f"/cdn/{sha}", "ETag": f'"{sha[:40]}"'}
        if hub == "huggingface":  # what HF's LFS files carry on the redirect
            headers |= {
                "X-Linked-Size": str(len(content)),
                "X-Linked-Etag": f'"{sha}"',
                "X-Repo-Commit": "0" * 40,
            }
        record.status = 302
        self._send(302, b"", headers, body)

    def _blob(self, key: str, body: bool, record: Served) -> None:
        state = self.server.state
        content = state.blobs.get(key)
        if content is None:
            record.status = 404
            self._send(404, b"not found", {}, body)
            return
        size, start, end = len(content), 0, len(content) - 1
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{key}"', "Content-Type": "application/octet-stream"}
        status = 200
        if (range_header := self.headers.get("Range")) and (match := _RANGE.match(range_header)):
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
            if start >= size:
                record.status = 416
                self._send(416, b"", {"Content-Range": f"bytes */{size}"}, body)
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        record.status = status
        self._send(
            status, content[start : end + 1], headers, body, record, self._drop_for(key) if body else None
        )

    def _drop_for(self, key: str) -> int | None:
        """Bytes to send before cutting this connection (used once per file)."""
        state = self.server.state
        with state.lock:
            for name, limit in list(state.drop_after.items()):
                if any(
                    hashlib.sha256(c).hexdigest() == key for (_, f), c in state.files.items() if f == name
                ):
                    del state.drop_after[name]
                    return limit
        return None

    # ---- sending -------------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        payload: bytes,
        headers: dict[str, str],
        body: bool,
        record: Served | None = None,
        drop_after: int | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not body or not payload:
            return
        rate = self.server.state.bytes_per_second
        limit = len(payload) if drop_after is None else min(drop_after, len(payload))
        step = 64 * 1024
        for offset in range(0, limit, step):
            piece = payload[offset : min(offset + step, limit)]
            try:
                self.wfile.write(piece)
                self.wfile.flush()
            except OSError:  # the client went away
                self.close_connection = True
                return
            if record is not None:
                with self.server.state.lock:
                    record.sent += len(piece)
            if rate:
                time.sleep(len(piece) / rate)
        if drop_after is not None:
            self.close_connection = True  # body cut short: the client sees an incomplete read


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState


class HubServer:
    """Start with `HubServer().start()`; `url` is both the HF and the ModelScope endpoint."""

    def __init__(self) -> None:
        self.state = HubState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, repo: str, file: str, content: bytes) -> str:
        """Publish `content` as `repo/file`; returns its sha256."""
        sha = hashlib.sha256(content).hexdigest()
        with self.state.lock:
            self.state.files[(repo, file)] = content
            self.state.blobs[sha] = content
        return sha

    def body_bytes(self, file: str | None = None) -> int:
        """Body bytes sent from the CDN, for one published file name or for all."""
        keys = {hashlib.sha256(c).hexdigest() for (_, f), c in self.state.files.items() if file in (None, f)}
        with self.state.lock:
            return sum(r.sent for r in self.state.log if r.path.removeprefix("/cdn/") in keys)

    def requests(self, method: str | None = None, cdn: bool | None = None) -> list[Served]:
        with self.state.lock:
            log = list(self.state.log)
        return [
            r
            for r in log
            if (method is None or r.method == method) and (cdn is None or r.path.startswith("/cdn/") == cdn)
        ]


def catalog_entry(
    hub: HubServer,
    name: str,
    repo: str,
    files: dict[str, bytes],
    *,
    extra_files: dict[str, bytes] | None = None,
    sha256: dict[str, str] | None = None,
    exact_size: dict[str, int] | None = None,
) -> dict:
    """Publish `files` (the shards of one quantization, in order) on the hub; return a catalog model entry.

    `name` is `family:tag-quant`. Checksums/sizes go into the entry only where given, like the real catalog.
    """
    base, _, quant = name.rpartition("-")

    def described(file: str, content: bytes) -> dict:
        hub.add(repo, file, content)
        return {"file": file, "size": (exact_size or {}).get(file), "sha256": (sha256 or {}).get(file)}

    entry = {
        "name": base,
        "title": base,
        "repos": {"huggingface": repo, "modelscope": repo},
        "arch": {"layers": 2, "kv_heads": 1, "head_dim": 8, "context_length": 512},
        "default": quant,
        "quantizations": {
            quant: {
                "size": sum(len(c) for c in files.values()),
                "files": [described(f, c) for f, c in files.items()],
            }
        },
    }
    if extra_files:
        entry["extra_files"] = [
            {**described(f, c), "role": "mmproj", "approx_size": len(c)} for f, c in extra_files.items()
        ]
    return entry


def blob(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes for a served file."""
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])
