"""Pull a catalog release into the models folder: disk check, resumable `.part` downloads, sha256, atomic rename."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from filelock import FileLock, Timeout

from .catalog import BadCatalog, Catalog, HubFile, Release, file_url, load_catalog
from .errors import Conflict, DownloadError, NotEnoughSpace, QwendeskError
from .files import PART_SUFFIX, ensure_free_space, free_space_text, human_size, is_disk_full

HASH_CHUNK = 4 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PullCancelled(QwendeskError):
    """The pull was stopped (client went away); the `.part` files stay for a resume."""

    code = "pull_cancelled"


class PullBusy(Conflict):
    """Another pull of the same release is running."""

    code = "pull_in_progress"


@dataclass(frozen=True)
class Progress:
    """One progress event; `phase` is "download" or "verify". Speed in bytes/s, eta in seconds (None = unknown)."""

    file: str
    done: int
    total: int
    speed: float
    eta: float | None
    phase: str = "download"
    file_index: int = 1
    file_count: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[Progress], None]


class PullSettings(Protocol):
    """The part of qwendesk's Settings a pull reads (models/ does not import daemon/)."""

    catalog_source: str
    huggingface_endpoint: str
    modelscope_endpoint: str

    @property
    def model_folders(self) -> list[Path]: ...


@dataclass
class FileTask:
    """One hub file to fetch into `dest` (via `dest.part`)."""

    hub: HubFile
    url: str
    dest: Path
    total: int | None = None  # exact size, once the hub told us
    sha256: str | None = None  # from the catalog, else the hub's sha256 ETag

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + PART_SUFFIX)

    def in_place(self) -> bool:
        """Already in the models folder with the right size (a previous pull finished it)."""
        expected = self.hub.size or self.total
        return self.dest.is_file() and (expected is None or self.dest.stat().st_size == expected)


@dataclass
class PullResult:
    release: Release
    paths: list[Path]
    downloaded: int = 0  # bytes fetched in this run
    already_present: bool = False

    @property
    def path(self) -> Path:
        """The model file (the first shard of a split model)."""
        return next(p for p in self.paths if p.name == self.release.main_file)


@dataclass
class _Speed:
    """Transfer speed over a sliding window of a few seconds."""

    window: float = 3.0
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def update(self, done: int, now: float) -> float:
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0


def _hub_sha256(response: httpx.Response) -> str | None:
    """HF sends an LFS file's sha256 as X-Linked-Etag on the redirect; use it when the catalog has none.

    Plain ETags are not trusted as checksums: their meaning is up to each server/CDN.
    """
    for r in [*response.history, response]:
        value = r.headers.get("x-linked-etag", "").removeprefix("W/").strip('"').lower()
        if _SHA256.match(value):
            return value
    return None


def _hub_size(response: httpx.Response) -> int | None:
    """Exact size: the hub's X-Linked-Size (on the redirect) or the final Content-Length."""
    for r in [*response.history, response]:
        if r.headers.get("x-linked-size", "").isdigit():
            return int(r.headers["x-linked-size"])
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


@contextlib.contextmanager
def _exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """One pull of a release at a time (CLI and daemon alike); the OS drops the lock if the process dies."""
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise PullBusy(f"{what} is already being pulled by another qwendesk process; wait for it.") from exc
    try:
        yield
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            lock_path.unlink()


def _plain(name: str) -> str:
    """A catalog file name that stays in the models folder: no folders, no `..`, nothing hidden or absolute."""
    if not name or name != Path(name).name or "\\" in name or name.startswith(".") or ":" in name:
        raise BadCatalog(f"The catalog names a file {name!r} that is not a plain file name; fix the catalog.")
    return name


class Puller:
    """Downloads a Release's files with resume, checks space and checksums, then moves them into place."""

    def __init__(
        self,
        dest_dir: Path,
        source: str,
        endpoint: str,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        disk_usage: Callable[[Path], Any] = shutil.disk_usage,
        client: httpx.Client | None = None,
        retries: int = 3,
        retry_delay: float = 1.0,
        min_interval: float = 0.2,
    ) -> None:
        self.dest_dir = Path(dest_dir)
        self.source, self.endpoint = source, endpoint
        self.on_progress = on_progress or (lambda _p: None)
        self.cancel = cancel or threading.Event()
        self.disk_usage = disk_usage  # injectable so tests can fake a full disk
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(30.0, read=60.0),
            follow_redirects=True,
            headers={"User-Agent": "qwendesk", "Accept-Encoding": "identity"},
        )
        self.retries, self.retry_delay, self.min_interval = retries, retry_delay, min_interval
        self.downloaded = 0

    # ---- the whole pull ------------------------------------------------------------------------
    def pull(self, release: Release) -> PullResult:
        """Fetch every file of `release`; nothing lands in the models folder unless all files verified."""
        try:
            return self._pull(release)
        except OSError as exc:  # the download itself says more (_disk_full); this is the lock or a folder
            if not is_disk_full(exc):
                raise
            raise NotEnoughSpace(
                f"The disk holding {self.dest_dir} is full: the pull of {release.name} could not start and "
                "nothing was added. Free some space, then run the same pull again."
            ) from exc

    def _pull(self, release: Release) -> PullResult:
        # A multi-file model folder (faster-whisper) is pulled into its own sub-folder, its model.bin last.
        dest_dir = self.dest_dir / _plain(release.folder) if release.folder else self.dest_dir
        dest_dir.mkdir(parents=True, exist_ok=True)
        repo = release.model.repo(self.source)
        tasks = [
            FileTask(
                hub=f,
                url=file_url(repo, f.file, self.source, self.endpoint),
                dest=dest_dir / _plain(f.file),
            )
            for f in release.files
        ]
        with _exclusive(dest_dir / f".{release.main_file}.lock", release.name):
            todo = [t for t in tasks if not t.in_place()]
            if not todo:
                return PullResult(release, [t.dest for t in tasks], already_present=True)
            for task in todo:
                self._probe(task)
            self._check_space(todo)
            for index, task in enumerate(todo, 1):
                self._fetch(task, index, len(todo))
                self._verify(task, index, len(todo))
            self._move_into_place(todo, release.main_file)
        return PullResult(release, [t.dest for t in tasks], downloaded=self.downloaded)

    # ---- steps ---------------------------------------------------------------------------------
    def _hub_name(self) -> str:
        return {"huggingface": "Hugging Face", "modelscope": "ModelScope"}.get(self.source, self.source)

    def _request_failed(self, task: FileTask, status: int) -> DownloadError:
        where = f"{self._hub_name()} ({task.url})"
        if status == 404:
            other = "huggingface" if self.source == "modelscope" else "modelscope"
            return DownloadError(
                f"{task.hub.file} was not found on {where}. The catalog may be out of date; "
                f"try the other hub with --catalog-source {other}, or update qwendesk."
            )
        if status in (401, 403):
            return DownloadError(
                f"{where} refused {task.hub.file} (HTTP {status}); the repository may be gated."
            )
        return DownloadError(f"{where} answered HTTP {status} for {task.hub.file}; try again later.")

    def _unreachable(self, task: FileTask, exc: Exception) -> DownloadError:
        return DownloadError(
            f"Could not reach {self._hub_name()} at {self.endpoint} ({exc.__class__.__name__}: {exc}). "
            "Check the network, or switch hubs with --catalog-source."
        )

    def _probe(self, task: FileTask) -> None:
        """HEAD the file: exact size and the hub's sha256 (if any); fail early on 404 or a changed file."""
        try:
            response = self.client.head(task.url)
        except httpx.HTTPError as exc:
            raise self._unreachable(task, exc) from exc
        if response.status_code >= 400:
            raise self._request_failed(task, response.status_code)
        task.total = _hub_size(response) or task.hub.size
        hub_sha = _hub_sha256(response)
        task.sha256 = task.hub.sha256 or hub_sha
        if task.hub.size and task.total != task.hub.size:
            raise DownloadError(
                f"{task.hub.file} on {self._hub_name()} is {task.total} bytes, but the catalog expects "
                f"{task.hub.size}: the file on the hub has changed. Nothing was downloaded; update qwendesk."
            )

    def _check_space(self, todo: list[FileTask]) -> None:
        """Refuse before downloading when the rest of the files do not fit on the models folder's disk."""
        needed = 0
        for task in todo:
            size = task.total or task.hub.approx_size or 0
            have = task.part.stat().st_size if task.part.is_file() else 0
            needed += max(size - have, 0)
        ensure_free_space(
            self.dest_dir,
            needed,
            "the download",
            hint="Free some space or point models_dirs at a bigger disk.",
            disk_usage=self.disk_usage,
        )

    def _fetch(self, task: FileTask, index: int, count: int) -> None:
        """Download into the `.part` file, resuming it; retry dropped connections from where they stopped."""
        attempt = 0
        while True:
            try:
                self._stream(task, index, count)
                return
            except OSError as exc:
                if is_disk_full(exc):
                    raise self._disk_full(task) from exc
                raise
            except httpx.TransportError as exc:
                attempt += 1
                have = task.part.stat().st_size if task.part.exists() else 0
                if attempt > self.retries:
                    raise DownloadError(
                        f"The download of {task.hub.file} kept failing ({exc.__class__.__name__}) after "
                        f"{human_size(have)}; the partial file is kept. Run the same pull again to resume."
                    ) from exc
                time.sleep(self.retry_delay * attempt)

    def _disk_full(self, task: FileTask) -> NotEnoughSpace:
        """The disk filled up mid-download (the up-front check passed, something else took the space)."""
        have = task.part.stat().st_size if task.part.exists() else 0
        left = f"{human_size(task.total - have)} more" if task.total else "more space"
        free = free_space_text(self.dest_dir)
        return NotEnoughSpace(
            f"The disk filled up while downloading {task.hub.file}"
            f"{f' ({free})' if free else ''}: nothing was added to the models folder. The "
            f"{human_size(have)} already downloaded are kept in {task.part.name} so the pull can resume: free "
            f"{left} (or point models_dirs at a bigger disk) and run the same pull again. To give up instead, "
            f"delete {task.part}."
        )

    def _stream(self, task: FileTask, index: int, count: int) -> None:
        have = task.part.stat().st_size if task.part.exists() else 0
        total = task.total
        if total is not None and have > total:  # a part from an older, different file
            task.part.unlink()
            have = 0
        if total is not None and have == total:
            return
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self.client.stream("GET", task.url, headers=headers) as response:
            if response.status_code == 416:  # the part does not match the remote file: start over
                task.part.unlink(missing_ok=True)
                raise httpx.RemoteProtocolError("range not satisfiable; restarting", request=response.request)
            if response.status_code >= 400:
                raise self._request_failed(task, response.status_code)
            if response.status_code != 206:  # the server ignored Range: take the whole file again
                have = 0
            elif not response.headers.get("content-range", "").startswith(f"bytes {have}-"):
                raise DownloadError(
                    f"{self._hub_name()} answered a resume of {task.hub.file} with the wrong range."
                )
            if total is None:
                length = response.headers.get("content-length", "")
                total = have + int(length) if length.isdigit() else None
                task.total = total
            self._write(task, response, have, total or 0, index, count)

    def _write(
        self, task: FileTask, response: httpx.Response, have: int, total: int, index: int, count: int
    ) -> None:
        speed, last = _Speed(), 0.0
        done = have
        # Unbuffered: what arrived is on disk if the link drops, and a write that fails (disk full) leaves
        # the part an exact prefix of the file, so a resume from its size is right.
        with task.part.open("ab" if have else "wb", buffering=0) as fh:
            for chunk in response.iter_bytes():
                if self.cancel.is_set():
                    raise PullCancelled(
                        f"Pull of {task.hub.file} stopped at {human_size(done)}; the partial file is kept for a resume."
                    )
                _write_all(fh, chunk)
                done += len(chunk)
                self.downloaded += len(chunk)
                now = time.monotonic()
                rate = speed.update(done, now)
                if now - last >= self.min_interval or done == total:
                    last = now
                    eta = (total - done) / rate if rate > 0 and total else None
                    self.on_progress(
                        Progress(task.hub.file, done, total, rate, eta, "download", index, count)
                    )

    def _verify(self, task: FileTask, index: int, count: int) -> None:
        """Size, then sha256 when known; a bad file is deleted so it never reaches the models folder."""
        size = task.part.stat().st_size
        if task.total is not None and size != task.total:
            task.part.unlink()
            raise DownloadError(
                f"{task.hub.file} arrived with {size} bytes instead of {task.total}; it was deleted. Run the pull again."
            )
        if not task.sha256:
            return  # the publisher gives no checksum here; verified by size
        digest = hashlib.sha256()
        done, last = 0, 0.0
        with task.part.open("rb") as fh:
            while block := fh.read(HASH_CHUNK):
                digest.update(block)
                done += len(block)
                now = time.monotonic()
                if now - last >= self.min_interval or done == size:
                    last = now
                    self.on_progress(Progress(task.hub.file, done, size, 0.0, None, "verify", index, count))
        actual = digest.hexdigest()
        if actual != task.sha256:
            task.part.unlink()
            raise DownloadError(
                f"Checksum mismatch for {task.hub.file}: expected sha256 {task.sha256}, got {actual}. "
                "The download was deleted and nothing was added to the models folder. Run the pull again; "
                "if it fails the same way, the file on the hub differs from the catalog (try --catalog-source)."
            )

    @staticmethod
    def _move_into_place(tasks: list[FileTask], main_file: str) -> None:
        """Rename every verified part; the model file (first shard) goes last so the watcher sees a complete set."""
        for task in sorted(tasks, key=lambda t: t.hub.file == main_file):
            os.replace(task.part, task.dest)


def _write_all(fh: Any, data: bytes) -> None:
    """Write all of `data` to an unbuffered file (a raw write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[fh.write(view) :]


def pull(
    name: str,
    settings: PullSettings,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    catalog: Catalog | None = None,
    disk_usage: Callable[[Path], Any] = shutil.disk_usage,
) -> PullResult:
    """Resolve `name` in the catalog and pull it into `settings.model_folders[0]` from `settings.catalog_source`."""
    catalog = catalog or load_catalog(getattr(settings, "catalog_file", None))
    release = catalog.resolve(name)
    source = settings.catalog_source
    endpoint = settings.huggingface_endpoint if source == "huggingface" else settings.modelscope_endpoint
    puller = Puller(
        settings.model_folders[0],
        source,
        endpoint,
        on_progress=on_progress,
        cancel=cancel,
        disk_usage=disk_usage,
    )
    try:
        return puller.pull(release)
    finally:
        puller.client.close()
