"""The transcription worker: one Whisper model served on loopback with OpenAI's /v1/audio API.

    python -m qwendesk.daemon.speech.worker --model DIR --port P [--key K] [--threads N] [--device auto|cpu|cuda]
        [--max-seconds S] [--max-upload-mib M] [--parent PID]

The key comes from `--key` or the QWENDESK_SPEECH_KEY environment variable (preferred: a command line is
visible to other users); every request needs `Authorization: Bearer <key>`. The model is loaded before the
port opens, so `GET /health` answering 200 means ready. Exit status: 2 bad arguments, 3 the model cannot be
loaded (the reason is the last line on stderr), 1 the port cannot be bound. SIGTERM stops it within ~2 s,
abandoning a transcription in progress.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qwendesk.daemon.disconnects import until_disconnect
from qwendesk.models.errors import BadRequest, QwendeskError

from .audio import decode_audio
from .engine import Cancelled, Options, SpeechEngine
from .limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_SECONDS, FORM_SLACK, check_upload_size
from .transcript import MEDIA_TYPES, RESPONSE_FORMATS, Transcript, render

log = logging.getLogger("qwendesk.speech")
T = TypeVar("T")
KEY_ENV = "QWENDESK_SPEECH_KEY"
EXIT_PORT_TAKEN, EXIT_LOAD_FAILED = 1, 3
CLIENT_CLOSED = 499
STATUS_BY_CODE = {"unauthorized": 401, "not_found": 404, "upload_too_large": 413}  # other QwendeskErrors: 400
GRANULARITIES = ("segment", "word")


# ---- errors --------------------------------------------------------------------------------------
def error_response(status: int, message: str, code: str) -> JSONResponse:
    """OpenAI's error shape; `code` is qwendesk's stable error code (the daemon can rebuild the error from it)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status)


def qwendesk_error_response(error: QwendeskError) -> JSONResponse:
    status = STATUS_BY_CODE.get(error.code, 500 if error.code == "internal_error" else 400)
    return error_response(status, error.message, error.code)


# ---- the request ---------------------------------------------------------------------------------
def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"`{name}` must be a plain form field, not a file.")
    return value.strip() or None


def parse_options(form: FormData, task: str) -> tuple[Options, str, bool]:
    """(engine options, response format, whether segments are wanted) from OpenAI's form fields."""
    fmt = _field(form, "response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise BadRequest(f"`response_format` must be one of {', '.join(RESPONSE_FORMATS)}, not '{fmt}'.")
    if (_field(form, "stream") or "false").lower() not in ("false", "0"):
        raise BadRequest("Streamed transcription is not supported here: leave `stream` out.")
    raw_temperature = _field(form, "temperature") or "0"
    try:
        temperature = float(raw_temperature)
    except ValueError:
        raise BadRequest(
            f"`temperature` must be a number between 0 and 1, not '{raw_temperature}'."
        ) from None
    if not 0.0 <= temperature <= 1.0:
        raise BadRequest(f"`temperature` must be between 0 and 1, not {temperature:g}.")
    granularities = [
        g.strip()
        for key in ("timestamp_granularities[]", "timestamp_granularities")  # the SDK sends the first
        for g in form.getlist(key)
        if isinstance(g, str)
    ]
    unknown = [g for g in granularities if g not in GRANULARITIES]
    if unknown:
        raise BadRequest(
            f"`timestamp_granularities[]` takes 'segment' and/or 'word', not {', '.join(unknown)}."
        )
    language = _field(form, "language") if task == "transcribe" else None  # translations have no language
    options = Options(
        task=task,
        language=language.lower() if language else None,
        prompt=_field(form, "prompt"),
        temperature=temperature,
        word_timestamps="word" in granularities and fmt == "verbose_json",
    )
    return options, fmt, not granularities or "segment" in granularities


async def read_form(request: Request, max_bytes: int) -> FormData:
    """The multipart form, refused (UploadTooLarge) as soon as the body passes `max_bytes`."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + FORM_SLACK:
        check_upload_size(int(length), max_bytes)
    received = 0
    receive = request.receive

    async def counting_receive() -> dict[str, Any]:  # also bounds bodies sent without a Content-Length
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > max_bytes + FORM_SLACK:
            check_upload_size(received, max_bytes)
        return message

    limited = Request(request.scope, counting_receive)
    try:
        return await limited.form(max_files=1, max_fields=32, max_part_size=1024 * 1024)
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", str(exc))
        raise BadRequest(f"The request is not a valid multipart form ({detail}).") from exc


async def run_in_daemon_thread(work: Callable[[], T]) -> T:
    """`work()` on a new daemon thread. anyio's worker threads are not daemons, and the interpreter joins
    them at exit: a SIGTERM during a long transcription would then wait for it to finish."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name="transcribe", daemon=True).start()
    return await future


# ---- the app -------------------------------------------------------------------------------------
class Worker:
    """The HTTP face of one SpeechEngine."""

    def __init__(
        self, engine: SpeechEngine, key: str, *, name: str, max_seconds: float, max_bytes: int
    ) -> None:
        self.engine, self.key, self.name = engine, key, name
        self.max_seconds, self.max_bytes = max_seconds, max_bytes
        self.busy = 0
        self._app = self.app()

    def app(self) -> Starlette:
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
            Route("/v1/audio/translations", self.translations, methods=["POST"]),
        ]
        return Starlette(routes=routes, exception_handlers={404: self._not_found})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The app behind the bearer-key check (every route, /health too)."""
        if scope["type"] == "http" and not self._authorized(scope):
            response = error_response(
                401, "Missing or wrong bearer key for the speech worker.", "unauthorized"
            )
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key.encode())

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return error_response(
            404, f"No route {request.method} {request.url.path} on the speech worker.", "not_found"
        )

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "model": self.name,
                "folder": str(self.engine.folder),
                "languages": self.engine.languages,
                "can_translate": self.engine.multilingual,
                "device": self.engine.device,
                "compute_type": self.engine.compute_type,
                "threads": self.engine.threads,
                "busy": self.busy,  # requests in progress
                "transcribing": self.engine.active,  # the engine is running (also for an abandoned request)
                "pid": os.getpid(),
            }
        )

    async def transcriptions(self, request: Request) -> Response:
        return await self._serve(request, "transcribe")

    async def translations(self, request: Request) -> Response:
        return await self._serve(request, "translate")

    async def _serve(self, request: Request, task: str) -> Response:
        self.busy += 1
        try:
            return await self._answer(request, task)
        except QwendeskError as exc:
            return qwendesk_error_response(exc)
        except Exception as exc:  # a bug or an engine failure: say so, keep serving
            log.exception("transcription failed")
            return error_response(
                500, f"The speech engine failed: {type(exc).__name__}: {exc}", "engine_error"
            )
        finally:
            self.busy -= 1

    async def _answer(self, request: Request, task: str) -> Response:
        form = await read_form(request, self.max_bytes)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise BadRequest("The request needs a `file` field holding the audio (multipart/form-data).")
            options, fmt, segments = parse_options(form, task)
            self.engine.check(options)  # before decoding: a refused request costs nothing
            data = await upload.read()
            name = f"'{upload.filename}'" if upload.filename else "The file"
        finally:
            await form.close()
        cancel = threading.Event()
        started = time.perf_counter()

        def work() -> Transcript:
            audio = decode_audio(data, name=name, max_seconds=self.max_seconds, max_bytes=self.max_bytes)
            return self.engine.transcribe(audio.samples, options, cancel)

        try:
            transcript = await until_disconnect(request, run_in_daemon_thread(work))
        except Cancelled:
            transcript = None
        finally:
            cancel.set()  # stops an abandoned transcription at its next segment
        if transcript is None:
            log.info("%s abandoned: the client went away", task)
            return Response(status_code=CLIENT_CLOSED)
        wall = time.perf_counter() - started
        log.info("%s %.1f s of audio in %.2f s (%.1fx real time)", task, transcript.duration, wall,
                 transcript.duration / wall if wall else 0.0)  # fmt: skip
        body = render(transcript, fmt, segments=segments)
        if isinstance(body, dict):
            return Response(json.dumps(body, ensure_ascii=False), media_type=MEDIA_TYPES[fmt])
        return Response(body, media_type=MEDIA_TYPES[fmt])


# ---- the process ---------------------------------------------------------------------------------
def watch_parent(pid: int, interval: float = 2.0) -> None:
    """Exit when process `pid` (the daemon that started this one) is gone: a killed daemon leaves no worker.

    When it is the real parent, being re-parented is the sign (safe against a reused pid); else the pid's end.
    """
    import psutil

    is_parent = os.name != "nt" and os.getppid() == pid  # Windows never re-parents

    def gone() -> bool:
        return os.getppid() != pid if is_parent else not psutil.pid_exists(pid)

    def loop() -> None:
        while not gone():
            time.sleep(interval)
        log.warning("process %d that started this worker is gone; stopping", pid)
        os._exit(0)

    threading.Thread(target=loop, name="watch-parent", daemon=True).start()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m qwendesk.daemon.speech.worker", description=__doc__.split("\n")[0]
    )
    p.add_argument("--model", type=Path, required=True, help="a faster-whisper (CTranslate2) model folder")
    p.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    p.add_argument("--key", default=None, help=f"bearer key (default: ${KEY_ENV})")
    p.add_argument("--name", default=None, help="the model's name in logs and /health (default: folder name)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: the CPUs available)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, help="longest audio accepted")
    p.add_argument("--max-upload-mib", type=float, default=DEFAULT_MAX_BYTES / 2**20, help="largest upload")
    p.add_argument("--parent", type=int, default=None, help="exit when this process id is gone")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    args = p.parse_args(argv)
    args.key = args.key or os.environ.get(KEY_ENV)
    if not args.key:
        p.error(f"a bearer key is required: --key or ${KEY_ENV}")
    if not 0 < args.port < 65536:
        p.error("--port must be between 1 and 65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s speech %(levelname)s %(message)s")
    if args.parent:
        watch_parent(args.parent)
    name = args.name or args.model.name
    try:
        sock = bind_port(args.port)
    except OSError as exc:
        print(
            f"qwendesk speech worker: cannot listen on 127.0.0.1:{args.port}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_PORT_TAKEN
    started = time.perf_counter()
    try:
        engine = SpeechEngine(args.model, device=args.device, threads=args.threads)
    except Exception as exc:  # CTranslate2/tokenizers raise plain RuntimeError/ValueError/OSError
        print(
            f"qwendesk speech worker: cannot load the model in {args.model}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_LOAD_FAILED
    log.info("loaded %s (%s, %s, %d threads) in %.2f s", name, engine.device, engine.compute_type,
             engine.threads, time.perf_counter() - started)  # fmt: skip
    worker = Worker(
        engine, args.key, name=name, max_seconds=args.max_seconds, max_bytes=int(args.max_upload_mib * 2**20)
    )
    import uvicorn

    config = uvicorn.Config(
        worker, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )
    uvicorn.Server(config).run(sockets=[sock])  # it listens from here on: connections were refused until now
    return 0


def bind_port(port: int) -> socket.socket:
    """The loopback port, bound before the model loads (a taken port fails at once, with its own exit status;
    uvicorn would exit 3 like a model that cannot load). Not listening yet: nothing connects before ready."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if os.name != "nt":  # as uvicorn does; on Windows SO_REUSEADDR would let two processes share the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


if __name__ == "__main__":
    sys.exit(main())
