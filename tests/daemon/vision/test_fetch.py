"""Remote images (image_fetch on): a real local HTTP server, bounded bytes and time, errors naming the part."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qwendesk.daemon.vision.errors import BadImage, ImageFetchFailed
from qwendesk.daemon.vision.fetch import fetch_image
from qwendesk.daemon.vision.images import ImageLimits, prepare_images
from tests.conftest import free_port
from tests.daemon.vision.imagefiles import chat, data_url, decode_url, encode, image_part, pattern

PNG = encode(pattern(1200, 900), "PNG")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str = "image/png", length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/cat.png":
            self._send(200, PNG)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/cat.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/missing":
            self._send(404, b"no", "text/plain")
        elif self.path == "/declared-big":
            self._send(200, b"", length=50 * 2**20)  # claims 50 MiB; the client must not wait for it
        elif self.path == "/undeclared-big":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\0" * 1024)
            self.close_connection = True
        elif self.path == "/trickle":  # a byte every 0.2 s: every read is quick, the whole never ends
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(500):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass  # the client gave up, as it should
        elif self.path == "/text":
            self._send(200, b"<html>not an image</html>", "text/html")
        else:
            self._send(404, b"", "text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


ALLOW = ImageLimits(fetch_remote=True, fetch_timeout=5.0)


def test_remote_image_is_fetched_and_downscaled(server: str) -> None:
    out, notes = prepare_images(chat(image_part(f"{server}/cat.png")), ALLOW)
    url = out["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    note = notes[0]
    assert note.source == "http" and note.format == "PNG" and note.original_size == (1200, 900)
    assert note.resized and note.size[0] * note.size[1] <= ALLOW.max_pixels
    assert decode_url(url).size == note.size


def test_small_remote_png_is_inlined_byte_for_byte(server: str) -> None:
    out, (note,) = prepare_images(
        chat(image_part(f"{server}/cat.png")), ImageLimits(fetch_remote=True, max_pixels=10**7)
    )
    assert not note.resized and not note.reencoded and note.source == "http"
    assert out["messages"][0]["content"][0]["image_url"]["url"] == data_url(PNG)


def test_redirects_are_followed(server: str) -> None:
    _, notes = prepare_images(chat(image_part(f"{server}/moved")), ALLOW)
    assert notes[0].original_size == (1200, 900)


def test_fetch_returns_the_bytes_exactly_up_to_the_limit(server: str) -> None:
    assert fetch_image(f"{server}/cat.png", where="w", max_bytes=len(PNG), timeout=5) == PNG
    with pytest.raises(ImageFetchFailed, match="larger than"):
        fetch_image(f"{server}/cat.png", where="w", max_bytes=len(PNG) - 1, timeout=5)


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/missing", "answered HTTP 404"),
        ("/loop", "could not download .*TooManyRedirects"),
        ("/declared-big", "larger than 20 MiB"),
    ],
)
def test_fetch_failures_name_the_part(server: str, path: str, match: str) -> None:
    with pytest.raises(ImageFetchFailed, match=r"^messages\[0\]\.content\[0\]: .*" + match) as err:
        prepare_images(chat(image_part(server + path)), ALLOW)
    assert err.value.code == "image_fetch_failed" and "data URL" in err.value.message


def test_body_without_length_is_cut_at_the_byte_limit(server: str) -> None:
    with pytest.raises(ImageFetchFailed, match="larger than 1000 bytes"):
        fetch_image(f"{server}/undeclared-big", where="messages[0].content[0]", max_bytes=1000, timeout=5)


def test_trickling_server_is_cut_at_the_deadline(server: str) -> None:
    """Each read is fast (a byte every 0.2 s), so only the overall deadline stops it (the body takes 100 s)."""
    started = time.monotonic()
    with pytest.raises(ImageFetchFailed, match="took longer than 1 s"):
        fetch_image(f"{server}/trickle", where="messages[0].content[0]", max_bytes=2**20, timeout=1.0)
    assert time.monotonic() - started < 10


def test_unreachable_host() -> None:
    with pytest.raises(ImageFetchFailed, match="could not download .*ConnectError"):
        fetch_image(f"http://127.0.0.1:{free_port()}/x.png", where="w", max_bytes=1000, timeout=5)


def test_fetched_non_image_is_refused(server: str) -> None:
    with pytest.raises(
        BadImage, match=r"messages\[0\]\.content\[0\]: the data is not a PNG, JPEG, WebP or GIF"
    ):
        prepare_images(chat(image_part(f"{server}/text")), ALLOW)
