"""Images through real llama.cpp (xllamacpp, in process) with the synthetic Qwen2-VL pair: each image adds
exactly the tokens llama.cpp's resizing rules predict, the engine's cap and qwendesk's pixel budget bound
them, replies stream, and what the engine would do unguarded (fetch URLs, refuse text-only) is shown."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from qwendesk.daemon.vision.errors import ImageURLRefused, MediaNotSupported
from qwendesk.daemon.vision.images import ImageLimits, prepare_images, tokens_cap
from tests.daemon.vision.imagefiles import chat, data_url, encode, image_part, pattern, png_url
from tests.fixtures.vision import image_tokens, write_qwen2vl_pair

pytestmark = pytest.mark.e2e

MARKERS = 2  # <|vision_start|> and <|vision_end|> around the image's embeddings


def server(model: Path, mmproj: Path | None, **params: Any):
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = str(model)
    if mmproj is not None:
        p.mmproj.path = str(mmproj)
    p.n_ctx, p.n_parallel, p.use_jinja, p.warmup = 4096, 1, True, False
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 2
    for key, value in params.items():
        setattr(p, key, value)
    return xllamacpp.Server(p)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_qwen2vl_pair(tmp_path_factory.mktemp("vl"))


@pytest.fixture(scope="module")
def engine(pair: tuple[Path, Path]):
    return server(*pair)


@pytest.fixture(scope="module")
def capped(pair: tuple[Path, Path]):
    return server(*pair, image_max_tokens=256)


# Servers live as long as the module: xllamacpp's Server destructor can hang joining its loop when the
# object goes away right after its last request; at module teardown it has been idle a while.
BUDGET_200 = 200 * 784


@pytest.fixture(scope="module")
def budget_capped(pair: tuple[Path, Path]):
    return server(*pair, image_max_tokens=tokens_cap(BUDGET_200))


@pytest.fixture(scope="module")
def without_projector(pair: tuple[Path, Path]):
    return server(pair[0], None)


def ask(srv, body: dict[str, Any]) -> dict[str, Any]:
    body = {**body, "max_tokens": 4, "temperature": 0}
    reply = srv.handle_chat_completions(body)
    assert "error" not in reply, reply
    return reply


def prompt_tokens(srv, body: dict[str, Any]) -> int:
    return ask(srv, body)["usage"]["prompt_tokens"]


def text_only(srv) -> int:
    return prompt_tokens(srv, chat())


@pytest.mark.parametrize(("w", "h"), [(64, 64), (640, 480), (1000, 1000), (300, 900), (2000, 1500)])
def test_image_adds_the_expected_tokens(engine, w: int, h: int) -> None:
    """usage.prompt_tokens grows by the image's tokens, derived from size, patch 14, merge 2 and llama.cpp's
    smart resize (640x480 -> 644x476 -> 23x17 = 391; 2000x1500 -> 1988x1512 -> 3834)."""
    with_image = prompt_tokens(engine, chat(image_part(png_url(w, h))))
    assert with_image - text_only(engine) == image_tokens(w, h) + MARKERS


@pytest.mark.parametrize(("w", "h"), [(640, 480), (1000, 1000), (2000, 1500)])
def test_engine_cap_image_max_tokens(engine, capped, w: int, h: int) -> None:
    added = prompt_tokens(capped, chat(image_part(png_url(w, h)))) - text_only(capped) - MARKERS
    assert added == image_tokens(w, h, max_tokens=256) <= 256
    assert added < image_tokens(w, h)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_pixel_budget_caps_the_tokens(engine, fmt: str) -> None:
    """qwendesk's downscale alone bounds the tokens; the engine then gets exactly the image's tokens."""
    budget = 256 * 784
    raw = encode(pattern(2000, 1500), fmt)
    body, notes = prepare_images(
        chat(image_part(data_url(raw, f"image/{fmt.lower()}"))), ImageLimits(max_pixels=budget)
    )
    (note,) = notes
    added = prompt_tokens(engine, body) - text_only(engine) - MARKERS
    assert added == image_tokens(*note.size)
    assert added <= 256 < image_tokens(2000, 1500)


def test_pixel_budget_with_the_matching_engine_cap_is_exact(budget_capped) -> None:
    """A budget that llama.cpp's rounding overshoots (1002x802 -> 442x354 here -> 448x364 there = 16x13 =
    208 > 200 tokens) is held when the model is launched with image_max_tokens = tokens_cap(budget)."""
    body, (note,) = prepare_images(chat(image_part(png_url(1002, 802))), ImageLimits(max_pixels=BUDGET_200))
    assert image_tokens(*note.size) > 200  # the downscale alone lands a little over
    added = prompt_tokens(budget_capped, body) - text_only(budget_capped) - MARKERS
    assert added == image_tokens(*note.size, max_tokens=200) <= 200


@pytest.mark.parametrize("default_size", [(3000, 2000), (4032, 3024)])
def test_default_budget_tokens(engine, default_size: tuple[int, int]) -> None:
    """At the default budget a phone-sized photo costs about 512 tokens."""
    raw = encode(pattern(*default_size), "JPEG", quality=80)
    body, (note,) = prepare_images(chat(image_part(data_url(raw, "image/jpeg"))))
    added = prompt_tokens(engine, body) - text_only(engine) - MARKERS
    assert added == image_tokens(*note.size) and 480 <= added <= 530


def test_prepared_formats_reach_the_engine(engine) -> None:
    """WebP, an animated GIF and a sideways EXIF JPEG, after prepare_images, encode at their upright size."""
    exif = pattern(300, 150).getexif()
    exif[0x0112] = 6
    frames = [pattern(120, 80), pattern(80, 120).resize((120, 80))]
    images = [
        data_url(encode(pattern(200, 100), "WEBP"), "image/webp"),
        data_url(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), "image/gif"),
        data_url(encode(pattern(300, 150), "JPEG", exif=exif), "image/jpeg"),
    ]
    base = text_only(engine)
    for url in images:
        body, (note,) = prepare_images(chat(image_part(url)))
        assert prompt_tokens(engine, body) - base - MARKERS == image_tokens(*note.size)
    assert note.size == (150, 300)


def test_reply_streams_with_an_image(engine) -> None:
    chunks: list[dict[str, Any]] = []
    body = {
        **chat(image_part(png_url(320, 240))),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 6,
        "temperature": 0,
    }
    engine.handle_chat_completions(body, lambda r: chunks.extend(r if isinstance(r, list) else [r]))
    deltas = [c for c in chunks if c.get("choices") and c["choices"][0].get("delta", {}).get("content")]
    assert len(deltas) >= 3  # one chunk per token, not one blob
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 6
    assert usage["prompt_tokens"] - text_only(engine) == image_tokens(320, 240) + MARKERS


def test_text_only_engine_cannot_take_images(without_projector) -> None:
    """Without the projector llama.cpp refuses with a hint about mmproj; the daemon must say more (which
    models can see) before the request gets there."""
    with pytest.raises(RuntimeError, match="image input is not supported"):
        without_projector.handle_chat_completions({**chat(image_part(png_url(32, 32))), "max_tokens": 1})


@pytest.fixture
def counting_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    png = encode(pattern(64, 64), "PNG")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def test_engine_would_fetch_urls_itself(engine, counting_server: tuple[str, list[str]]) -> None:
    """Why http(s) image URLs and video parts are refused up front: llama-server downloads them itself."""
    base_url, hits = counting_server
    body = chat(image_part(f"{base_url}/from-engine.png"))
    with pytest.raises(ImageURLRefused):
        prepare_images(body)
    assert hits == []
    ask(engine, body)
    assert hits == ["/from-engine.png"]
    video = chat({"type": "video_url", "video_url": {"url": f"{base_url}/clip.mp4"}})
    with pytest.raises(MediaNotSupported):
        prepare_images(video)
    with contextlib.suppress(RuntimeError):  # a PNG is no video; the download is what matters here
        engine.handle_chat_completions({**video, "max_tokens": 1})
    assert hits == ["/from-engine.png", "/clip.mp4"]
