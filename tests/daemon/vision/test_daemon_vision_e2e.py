"""Images through the real daemon: a vision pair registers and launches with its projector, images are scaled
to the pixel budget before the engine sees them, and every refusal is a 400 that names the part.

Random weights (tests/fixtures/vision.py): what is checked is the plumbing and the token counts, not answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from openai import BadRequestError, OpenAI

from qwendesk.daemon.vision.images import ImageLimits, prepare_images, tokens_cap
from tests.conftest import DaemonProcess, free_port, link_model
from tests.daemon.vision.imagefiles import chat, image_part, png_url
from tests.fixtures.vision import image_tokens, write_qwen2vl_pair

pytestmark = pytest.mark.e2e

MARKERS = 2  # <|vision_start|> and <|vision_end|> around an image's tokens
BUDGET = 200_704  # 256 image tokens for Qwen2-VL: small enough that the test images are scaled down
VL = "qwen2-vl-tiny-instruct-q8_0"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, qwen2_gguf: Path):
    home = tmp_path_factory.mktemp("vision-home")
    proc = DaemonProcess(
        home, free_port(), {"QWENDESK_KEEP_ALIVE": "0", "QWENDESK_IMAGE_MAX_PIXELS": str(BUDGET)}
    )
    write_qwen2vl_pair(proc.models_dir)
    link_model(qwen2_gguf, proc.models_dir)
    proc.start()
    try:
        proc.wait_for(lambda _c: proc.model(VL), what="the vision pair to be listed")
        yield proc
    finally:
        proc.stop()


def prompt_tokens(daemon: DaemonProcess, body: dict) -> int:
    r = httpx.post(daemon.url + "/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens"]


def request(*parts: dict, **extra) -> dict:
    return {**chat(*parts), "model": VL, "max_tokens": 4, "temperature": 0, **extra}


def test_the_pair_is_listed_as_a_vision_model(daemon: DaemonProcess) -> None:
    model = daemon.model(VL)
    assert model["mmproj"] and "vision" in model["abilities"] and not model["error"]
    listed = {m["id"]: m for m in httpx.get(daemon.url + "/v1/models").json()["data"]}
    assert "vision" in listed[VL]["capabilities"]
    assert "vision" not in listed["qwen2-tiny-q8_0"]["capabilities"]


@pytest.mark.parametrize(("w", "h"), [(64, 64), (1600, 1200)])
def test_images_cost_the_tokens_of_their_scaled_size(daemon: DaemonProcess, w: int, h: int) -> None:
    body = request(image_part(png_url(w, h)))
    base = prompt_tokens(daemon, request())
    added = prompt_tokens(daemon, body) - base
    # What the engine gets is the image scaled into the budget (a small one passes as it is).
    _, (note,) = prepare_images(body, ImageLimits(max_pixels=BUDGET))
    assert note.resized == (w * h > BUDGET) and note.size[0] * note.size[1] <= BUDGET
    assert added == image_tokens(*note.size) + MARKERS
    assert added - MARKERS <= tokens_cap(BUDGET)  # the budget caps what one image costs


def test_an_image_reply_streams(daemon: DaemonProcess) -> None:
    body = request(image_part(png_url(320, 240)), stream=True, max_tokens=6)
    with httpx.stream("POST", daemon.url + "/v1/chat/completions", json=body, timeout=300) as r:
        assert r.status_code == 200
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    assert all(json.loads(line)["model"] == VL for line in lines[:-1])


def test_refusals_name_the_part_and_what_to_do(daemon: DaemonProcess) -> None:
    client = OpenAI(base_url=daemon.url + "/v1", api_key="unused")

    def refused(model: str, part: dict) -> str:
        with pytest.raises(BadRequestError) as info:
            client.chat.completions.create(model=model, messages=chat(part)["messages"], max_tokens=2)  # type: ignore[arg-type]
        return str(info.value)

    text_only = refused("qwen2-tiny-q8_0", image_part(png_url(32, 32)))
    assert "cannot see images" in text_only and VL in text_only and "vision_not_supported" in text_only
    remote = refused(VL, image_part("https://example.com/cat.png"))
    assert "messages[0].content[0]" in remote and "image_fetch" in remote
    corrupt = refused(VL, image_part("data:image/png;base64," + "A" * 64))
    assert "messages[0].content[0]" in corrupt and "bad_image" in corrupt
    video = refused(VL, {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}})
    assert "not supported" in video
    assert daemon.client.is_running()
