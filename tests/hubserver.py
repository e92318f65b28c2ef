"""A local stand-in for the Hugging Face Hub on 127.0.0.1, with fault injection, for tests.

It speaks the part of the Hub's HTTP API that huggingface_hub 2.x calls for Hearth:

- `GET /api/models?search=&filter=gguf&sort=&limit=&expand=` (`HfApi.list_models`)
- `GET /api/models/{repo}[/revision/{rev}][?blobs=true]` (`HfApi.model_info`)
- `GET /api/models/{repo}/tree/{rev}[/{path}]` (`HfApi.list_repo_tree`)
- `HEAD|GET /{repo}/resolve/{rev}/{file}` (`get_hf_file_metadata`, `http_get`): LFS files
  answer 302 with `X-Repo-Commit`, `X-Linked-Etag` (the sha256), `X-Linked-Size` and a
  `Location` on a second "CDN" server (another port, so the client treats it as another
  host, as with the real Hub); small files answer 200 with `ETag` and `Content-Length`.
- `GET /cdn/{repo}/{commit}/{file}` with `Range: bytes=N-` → 206 + `Content-Range`.

No `X-Xet-*` headers are ever sent, so clients download over plain HTTP.

Faults are set per file (`HubFile`): drop the connection after N bytes (once, N times or
always), serve wrong bytes, answer a status (404, 401, 403, 500...), answer 503 to the first
HEADs, send slowly (a delay per chunk), or hold the transfer at a byte offset until the test
releases it. Every request is recorded, so tests can assert what was asked and served.

Run it by hand for a demo: `python -m tests.hubserver --port 8765`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.gguf_factory import write_tiny_gguf

ALWAYS = -1  # for HubFile.drops: drop on every request
GATED_MESSAGE = (
    "Access to model {repo} is restricted. You must have access to it and be authenticated."
)


@dataclass
class HubFile:
    """One file of a repo: its real bytes, and the faults to inject when it is served."""

    path: str
    data: bytes
    lfs: bool | None = None  # None: .gguf files are LFS (served through the CDN), others not
    #: Close the connection after this many body bytes (counted from the start of each
    #: response), `drops` times (ALWAYS: every time).
    drop_after: int | None = None
    drops: int = 1
    corrupt: bool = False  # serve bytes that do not match the sha256 the Hub announces
    status: int | None = None  # answer every resolve/CDN request with this HTTP status
    head_failures: int = 0  # answer the first N HEAD requests with 503
    chunk: int = 16 * 1024  # bytes per write on the CDN
    delay_per_chunk: float = 0.0  # seconds to sleep between chunks (a slow line)
    #: Hold the transfer once this many bytes of the file have been sent, until
    #: `release.set()` (bounded by `hold_timeout`), so tests can act mid-transfer
    #: without sleeping.
    hold_at: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    hold_timeout: float = 30.0
    reached_hold: threading.Event = field(default_factory=threading.Event)
    #: Stop sending (keeping the connection open, as a stalled proxy does) once this many
    #: bytes of the file have been sent, for `stalls` responses (ALWAYS: every one); the
    #: stall lasts until the client gives up or the server stops.
    stall_at: int | None = None
    stalls: int = 1
    #: The size the listings claim instead of the real one: stands in for a multi-GB file
    #: in tests that only list a repo (never download such a file).
    listed_size: int | None = None

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(".gguf") if self.lfs is None else self.lfs

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        """The git blob id of the file (or of its LFS pointer, for LFS files)."""
        body = self.pointer if self.is_lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()

    @property
    def pointer(self) -> bytes:
        return (
            "version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{self.sha256}\nsize {self.size}\n"
        ).encode()

    def served_bytes(self) -> bytes:
        if not self.corrupt:
            return self.data
        flipped = bytes([self.data[-1] ^ 0xFF])
        return self.data[:-1] + flipped


@dataclass
class HubRepo:
    """A model repo: files plus the numbers the Hub shows for it."""

    repo_id: str
    files: list[HubFile]
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2025-01-15T10:00:00.000Z"
    gated: str | bool = False  # "manual"/"auto": downloads need an allowed token
    allowed_tokens: set[str] = field(default_factory=set)
    license: str | None = "apache-2.0"
    gguf: dict[str, Any] | None = None  # what the Hub reports under `gguf` (may be None)
    tags: list[str] = field(default_factory=list)

    @property
    def commit(self) -> str:
        return hashlib.sha1(f"commit:{self.repo_id}".encode()).hexdigest()

    def file(self, path: str) -> HubFile | None:
        return next((f for f in self.files if f.path == path), None)

    def all_tags(self) -> list[str]:
        has_gguf = any(f.path.endswith(".gguf") for f in self.files)
        return sorted({*self.tags, *(["gguf"] if has_gguf else [])})


@dataclass
class Served:
    """One request the server answered (recorded when it arrives, updated as it is served,
    so a client that has its answer always finds the request in the log)."""

    server: str  # "hub" or "cdn"
    method: str
    path: str  # decoded, without the query
    query: dict[str, list[str]]
    range: str | None
    token: str | None  # the bearer token the client sent, if any
    status: int = 0
    body_bytes: int = 0  # body bytes handed to the socket


class HubServer:
    """The Hub and its CDN, each a ThreadingHTTPServer on 127.0.0.1 in a daemon thread.

    >>> with HubServer() as hub:  # doctest: +SKIP
    ...     hub.add(HubRepo("test/Tiny-GGUF", [HubFile("tiny-Q4_K_M.gguf", b"...")]))
    ...     os.environ["HF_ENDPOINT"] = hub.url
    """

    def __init__(self, port: int = 0, cdn_port: int = 0, *, lifetime_s: float = 300.0) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.log: list[Served] = []
        self._lock = threading.Lock()
        self._port = port
        self._cdn_port = cdn_port
        self.lifetime_s = lifetime_s
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._timer: threading.Timer | None = None

    # --- set-up ---------------------------------------------------------------------------

    def add(self, repo: HubRepo) -> HubRepo:
        self.repos[repo.repo_id] = repo
        return repo

    def start(self) -> HubServer:
        hub = _Server(("127.0.0.1", self._port), _Handler, self, "hub")
        cdn = _Server(("127.0.0.1", self._cdn_port), _Handler, self, "cdn")
        self._servers = [hub, cdn]
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        # A forgotten server must not keep a test run alive: stop by itself after a while.
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The endpoint to put in HF_ENDPOINT."""
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # --- what was served --------------------------------------------------------------------

    def _record(self, served: Served) -> None:
        with self._lock:
            self.log.append(served)

    def requests(self, path_contains: str = "", *, method: str | None = None) -> list[Served]:
        with self._lock:
            return [
                r
                for r in self.log
                if path_contains in r.path and (method is None or r.method == method)
            ]

    def downloads_of(self, filename: str) -> list[Served]:
        """The CDN GETs for a file (the requests that carry its bytes)."""
        return [r for r in self.requests(filename, method="GET") if r.server == "cdn"]

    def bytes_served(self, filename: str) -> int:
        return sum(r.body_bytes for r in self.downloads_of(filename))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], hub: HubServer, role: str
    ) -> None:
        super().__init__(address, handler)
        self.hub = hub
        self.role = role
        self.stopping = threading.Event()  # set by stop(): stalled handlers let go

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # a stuck client cannot pin a handler thread for ever

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read `HubServer.log` instead

    # --- plumbing ---------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        self._method = method
        self._path = unquote(parts.path)
        self._query = parse_qs(parts.query)
        auth = self.headers.get("Authorization") or ""
        self._served = Served(
            server=self.server.role,
            method=method,
            path=self._path,
            query=self._query,
            range=self.headers.get("Range"),
            token=auth.removeprefix("Bearer ").strip() or None,
        )
        self._token = self._served.token
        self.server.hub._record(self._served)
        try:
            if self.server.role == "cdn":
                self._cdn()
            elif self._path == "/api/models":
                self._list_models()
            elif self._path.startswith("/api/models/"):
                self._model_api(self._path.removeprefix("/api/models/"))
            elif "/resolve/" in self._path:
                self._resolve()
            else:
                self._json(404, {"error": "Not found"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a paused or cancelled download)

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self._served.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._start(
            status,
            {
                "Content-Type": "application/json",
                "Content-Length": str(len(data)),
                **(headers or {}),
            },
        )
        if self._method != "HEAD":
            self._served.body_bytes += len(data)
            self.wfile.write(data)

    def _error(self, status: int, code: str | None, message: str, **headers: str) -> None:
        extra = {"X-Error-Message": message, **headers}
        if code:
            extra["X-Error-Code"] = code
        self._json(status, {"error": message}, extra)

    def _repo(self, repo_id: str) -> HubRepo | None:
        return self.server.hub.repos.get(repo_id)

    def _revision_ok(self, repo: HubRepo, revision: str) -> bool:
        return revision in ("main", repo.commit)

    # --- API --------------------------------------------------------------------------------

    def _list_models(self) -> None:
        search = (self._query.get("search") or [""])[0].lower()
        filters = self._query.get("filter") or []
        limit = int((self._query.get("limit") or ["1000"])[0])
        expand = set(self._query.get("expand") or [])
        repos = [
            r
            for r in self.server.hub.repos.values()
            if search in r.repo_id.lower() and all(f in r.all_tags() for f in filters)
        ]
        sort = (self._query.get("sort") or ["downloads"])[0]
        if sort in ("downloads", "likes"):
            repos.sort(key=lambda r: getattr(r, sort), reverse=True)
        items = []
        for repo in repos[:limit]:
            item = _summary(repo)
            if "gguf" in expand and repo.gguf is not None:
                item["gguf"] = repo.gguf
            items.append(item)
        self._json(200, items)

    def _model_api(self, rest: str) -> None:
        parts = rest.split("/")
        repo_id = "/".join(parts[:2])
        repo = self._repo(repo_id)
        if repo is None:
            # The real Hub answers 401 for a repo that does not exist (or is private).
            self._error(401, "RepoNotFound", "Repository not found")
            return
        revision = "main"
        tree_path: str | None = None
        if len(parts) >= 4 and parts[2] == "revision":
            revision = parts[3]
        elif len(parts) >= 4 and parts[2] == "tree":
            revision = parts[3]
            tree_path = "/".join(parts[4:])
        if not self._revision_ok(repo, revision):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        if tree_path is not None:
            self._json(200, _tree(repo, tree_path))
            return
        blobs = (self._query.get("blobs") or ["false"])[0].lower() == "true"
        info = _summary(repo)
        info.update(
            sha=repo.commit,
            cardData={"license": repo.license} if repo.license else {},
            siblings=[_sibling(f, blobs) for f in repo.files],
            usedStorage=sum(f.size for f in repo.files),
        )
        if repo.gguf is not None:
            info["gguf"] = repo.gguf
        self._json(200, info)

    # --- files ------------------------------------------------------------------------------

    def _resolve(self) -> None:
        head, _, tail = self._path.lstrip("/").partition("/resolve/")
        revision, _, filename = tail.partition("/")
        repo = self._repo(head)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return
        if not self._revision_ok(repo, revision):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        commit_header = {"X-Repo-Commit": repo.commit}
        if repo.gated and self._token not in repo.allowed_tokens:
            status = 403 if self._token else 401
            self._error(
                status, "GatedRepo", GATED_MESSAGE.format(repo=repo.repo_id), **commit_header
            )
            return
        hub_file = repo.file(filename)
        if hub_file is None:
            self._error(404, "EntryNotFound", f"{filename} does not exist", **commit_header)
            return
        if self._forced_status(hub_file, commit_header):
            return
        if self._method == "HEAD" and hub_file.head_failures > 0:
            hub_file.head_failures -= 1
            self._error(503, None, "Service temporarily unavailable")
            return
        if hub_file.is_lfs:
            location = (
                f"{self.server.hub.cdn_url}/cdn/{repo.repo_id}/{repo.commit}/"
                f"{quote(hub_file.path)}?X-Amz-Signature=test"
            )
            self._start(
                302,
                {
                    **commit_header,
                    "ETag": f'"{hub_file.git_sha1}"',
                    "X-Linked-Etag": f'"{hub_file.sha256}"',
                    "X-Linked-Size": str(hub_file.size),
                    "Location": location,
                    "Content-Length": "0",
                },
            )
            return
        self._send_file(hub_file, {**commit_header, "ETag": f'"{hub_file.git_sha1}"'})

    def _forced_status(self, hub_file: HubFile, headers: dict[str, str]) -> bool:
        if hub_file.status is None:
            return False
        code = "EntryNotFound" if hub_file.status == 404 else None
        self._error(hub_file.status, code, f"HTTP {hub_file.status} (injected)", **headers)
        return True

    def _cdn(self) -> None:
        if not self._path.startswith("/cdn/"):
            self._json(404, {"error": "Not found"})
            return
        parts = self._path.removeprefix("/cdn/").split("/")
        repo = self._repo("/".join(parts[:2]))
        hub_file = repo.file("/".join(parts[3:])) if repo else None
        if repo is None or hub_file is None or parts[2] != repo.commit:
            self._json(404, {"error": "NoSuchKey"})
            return
        if self._forced_status(hub_file, {}):
            return
        self._send_file(hub_file, {"ETag": f'"{hub_file.sha256}"'})

    def _send_file(self, hub_file: HubFile, headers: dict[str, str]) -> None:
        data = hub_file.served_bytes()
        start = 0
        wanted = self.headers.get("Range")
        status = 200
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start = int(first or 0)
            end = int(last) if last else len(data) - 1
            if start >= len(data):
                self._start(416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"})
                return
            data = data[start : end + 1]
            status = 206
            headers = {
                **headers,
                "Content-Range": f"bytes {start}-{start + len(data) - 1}/{hub_file.size}",
            }
        self._start(
            status,
            {
                **headers,
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
            },
        )
        if self._method == "HEAD":
            return
        drop_at = self._drop_point(hub_file)
        stall_at = self._stall_point(hub_file)
        offset = 0
        while offset < len(data):
            if stall_at is not None and start + offset >= stall_at:
                self._stall()
                return
            piece = data[offset : offset + hub_file.chunk]
            if drop_at is not None and offset + len(piece) >= drop_at:
                piece = piece[: max(drop_at - offset, 0)]
                self._write(piece)
                self._drop()
                return
            if hub_file.hold_at is not None and start + offset >= hub_file.hold_at:
                hub_file.reached_hold.set()
                hub_file.release.wait(hub_file.hold_timeout)
            self._write(piece)
            offset += len(piece)
            if hub_file.delay_per_chunk:
                time.sleep(hub_file.delay_per_chunk)

    def _drop_point(self, hub_file: HubFile) -> int | None:
        if hub_file.drop_after is None or hub_file.drops == 0:
            return None
        if hub_file.drops > 0:
            hub_file.drops -= 1
        return hub_file.drop_after

    def _stall_point(self, hub_file: HubFile) -> int | None:
        if hub_file.stall_at is None or hub_file.stalls == 0:
            return None
        if hub_file.stalls > 0:
            hub_file.stalls -= 1
        return hub_file.stall_at

    def _stall(self) -> None:
        """Send nothing more, until the client hangs up or the server stops."""
        self.close_connection = True
        stopping = self.server.stopping
        self.connection.settimeout(0.2)
        while not stopping.is_set():
            try:
                if not self.connection.recv(1, socket.MSG_PEEK):
                    return  # the client closed its end
            except TimeoutError:
                continue
            except OSError:
                return

    def _write(self, piece: bytes) -> None:
        self._served.body_bytes += len(piece)
        self.wfile.write(piece)
        self.wfile.flush()

    def _drop(self) -> None:
        """Cut the connection mid-body, as a flaky network does."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _summary(repo: HubRepo) -> dict[str, Any]:
    publisher = repo.repo_id.split("/")[0]
    return {
        "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": publisher,
        "likes": repo.likes,
        "downloads": repo.downloads,
        "lastModified": repo.last_modified,
        "createdAt": "2024-06-01T00:00:00.000Z",
        "private": False,
        "gated": repo.gated,
        "disabled": False,
        "tags": repo.all_tags(),
        "library_name": "gguf" if "gguf" in repo.all_tags() else None,
    }


def _sibling(hub_file: HubFile, blobs: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"rfilename": hub_file.path}
    if blobs:
        item["blobId"] = hub_file.git_sha1
        item["size"] = hub_file.listed_size or hub_file.size
        if hub_file.is_lfs:
            item["lfs"] = {
                "sha256": hub_file.sha256,
                "size": hub_file.listed_size or hub_file.size,
                "pointerSize": len(hub_file.pointer),
            }
    return item


def _tree(repo: HubRepo, folder: str) -> list[dict[str, Any]]:
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    entries = []
    for hub_file in repo.files:
        if not hub_file.path.startswith(prefix):
            continue
        entry: dict[str, Any] = {
            "type": "file",
            "oid": hub_file.git_sha1,
            "size": hub_file.size,
            "path": hub_file.path,
        }
        if hub_file.is_lfs:
            entry["lfs"] = {
                "oid": hub_file.sha256,
                "size": hub_file.size,
                "pointerSize": len(hub_file.pointer),
            }
        entries.append(entry)
    return entries


# --- model files to serve ---------------------------------------------------------------


def tiny_gguf_bytes(folder: Path, name: str, **kwargs: Any) -> bytes:
    """The bytes of a small, valid GGUF (see tests/gguf_factory.py)."""
    return write_tiny_gguf(folder / name, name=name, **kwargs).read_bytes()


def tiny_split_gguf(folder: Path, stem: str, parts: int = 2, **kwargs: Any) -> dict[str, bytes]:
    """A real split GGUF set (`stem-00001-of-0000N.gguf`...) written by gguf's own writer."""
    import numpy as np
    from gguf import GGUFWriter

    n_layers = int(kwargs.get("n_layers", 2))
    n_embd, vocab = int(kwargs.get("n_embd", 32)), int(kwargs.get("vocab", 64))
    folder.mkdir(parents=True, exist_ok=True)
    tensors = 2 + n_layers * 2
    writer = GGUFWriter(
        str(folder / f"{stem}.gguf"), "llama", split_max_tensors=-(-tensors // parts)
    )
    writer.add_name(stem)
    writer.add_block_count(n_layers)
    writer.add_context_length(int(kwargs.get("context_length", 2048)))
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_embd * 2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"t{i}".encode() for i in range(vocab)])
    rng = np.random.default_rng(1)
    writer.add_tensor("token_embd.weight", rng.standard_normal((vocab, n_embd)).astype(np.float32))
    for i in range(n_layers):
        for part in ("attn_q", "ffn_up"):
            weight = rng.standard_normal((n_embd, n_embd)).astype(np.float32)
            writer.add_tensor(f"blk.{i}.{part}.weight", weight)
    writer.add_tensor("output.weight", rng.standard_normal((vocab, n_embd)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    names = [f"{stem}-{i:05d}-of-{parts:05d}.gguf" for i in range(1, parts + 1)]
    return {name: (folder / name).read_bytes() for name in names}


#: The Tiny repo's quants and their layer counts: more layers for bigger quants, so sizes
#: grow with quality as on the real Hub.
TINY_CHAT_LAYERS = {
    "tiny-chat-Q4_K_M.gguf": 2,
    "tiny-chat-Q8_0.gguf": 3,
    "tiny-chat-F16.gguf": 4,
    "tiny-chat-IQ4_XS.gguf": 1,
}


def standard_repos(folder: Path, *, big: bool = False) -> list[HubRepo]:
    """The repos the tests (and the demo) serve.

    `big=True` makes the Tiny repo's files a few MB so a transfer takes long enough to
    interrupt by hand (`python -m tests.hubserver --big`).
    """
    size = {"n_embd": 512, "vocab": 4096} if big else {}
    tiny = HubRepo(
        "hearth-test/Tiny-Chat-GGUF",
        [
            HubFile("README.md", b"# Tiny Chat\nA test model.\n"),
            *(
                HubFile(name, tiny_gguf_bytes(folder, name, n_layers=layers, **size))
                for name, layers in TINY_CHAT_LAYERS.items()
            ),
        ],
        downloads=1200,
        likes=34,
        gguf={"total": 1_500_000_000, "architecture": "llama", "context_length": 32768},
    )
    split = HubRepo(
        "hearth-test/Split-Chat-GGUF",
        [
            HubFile(name, data)
            for name, data in tiny_split_gguf(folder / "split", "split-chat-Q4_K_M").items()
        ]
        + [HubFile("split-chat-Q8_0.gguf", tiny_gguf_bytes(folder, "split-chat-Q8_0.gguf"))],
        downloads=300,
        likes=5,
        license="mit",
    )
    no_gguf = HubRepo(
        "hearth-test/Tiny-Chat-safetensors",
        [
            HubFile("config.json", b'{"model_type": "llama"}'),
            HubFile("model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ", lfs=True),
        ],
        downloads=50,
        likes=1,
        tags=["safetensors"],
    )
    gated = HubRepo(
        "hearth-test/Gated-Chat-GGUF",
        [HubFile("gated-chat-Q4_K_M.gguf", tiny_gguf_bytes(folder, "gated-chat-Q4_K_M.gguf"))],
        downloads=900,
        likes=12,
        gated="manual",
        license="llama3.1",
    )
    return [tiny, split, no_gguf, gated]


class SilentServer:
    """A server on 127.0.0.1 that accepts connections and never answers (a stalled proxy,
    a captive portal): what a client without read timeouts waits on for ever.

    >>> with SilentServer() as silent:  # doctest: +SKIP
    ...     os.environ["HF_ENDPOINT"] = silent.url
    """

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)  # read nothing, send nothing, close nothing
            self.accepted += 1

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@contextmanager
def running_hub(folder: Path | None = None, **kwargs: Any) -> Iterator[HubServer]:
    """A started HubServer with the standard repos (used by the pytest fixture)."""
    with tempfile.TemporaryDirectory() as tmp:
        server = HubServer(**kwargs)
        for repo in standard_repos(folder or Path(tmp)):
            server.add(repo)
        with server:
            yield server


def point_hub_client_at(server: HubServer, monkeypatch: Any, tmp_path: Path) -> None:
    """Send this process's Hub traffic to `server`, online, with no token from the user.

    tests/conftest.py sets HF_HUB_OFFLINE=1 for every test, and huggingface_hub reads it
    once at import (as it reads its token path), so its module constants are patched too.
    """
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HEARTH_NO_KEYRING", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the test Hub on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--cdn-port", type=int, default=0, help="default: PORT + 1")
    parser.add_argument(
        "--big", action="store_true", help="serve multi-MB files (to interrupt by hand)"
    )
    parser.add_argument(
        "--slow", type=float, default=0.0, help="seconds to wait between 16 KiB chunks"
    )
    parser.add_argument("--lifetime", type=float, default=3600.0, help="stop after this long")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = HubServer(args.port, args.cdn_port or args.port + 1, lifetime_s=args.lifetime)
        for repo in standard_repos(Path(tmp), big=args.big):
            for hub_file in repo.files:
                hub_file.delay_per_chunk = args.slow
            server.add(repo)
        with server:
            print(f"Test Hub at {server.url} (CDN {server.cdn_url}); Ctrl-C stops it.", flush=True)
            for repo in server.repos.values():
                sizes = ", ".join(f"{f.path} {f.size:,} B" for f in repo.files)
                print(f"  {repo.repo_id}: {sizes}", flush=True)
            try:
                while server._servers:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
