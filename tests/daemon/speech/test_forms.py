"""Reading the `model` field out of a multipart body the daemon forwards unchanged."""

from __future__ import annotations

import httpx
import pytest

from qwendesk.daemon.speech.forms import MAX_FIELD_BYTES, FieldReader, form_field
from qwendesk.models.errors import BadRequest


def multipart(data: dict[str, str], audio: bytes = b"RIFF" + b"\x00" * 5000) -> tuple[bytes, str]:
    """A body as httpx (and so the openai SDK) encodes it."""
    request = httpx.Request(
        "POST", "http://127.0.0.1/", data=data, files={"file": ("a.wav", audio, "audio/wav")}
    )
    return request.read(), request.headers["content-type"]


def test_reads_plain_fields_and_skips_files() -> None:
    body, ctype = multipart({"model": "whisper-tiny.en", "language": "en"})
    assert form_field(body, ctype, "model") == "whisper-tiny.en"
    assert form_field(body, ctype, "language") == "en"
    assert form_field(body, ctype, "file") is None  # a file part is not a plain field
    assert form_field(body, ctype, "prompt") is None


def test_fed_in_small_chunks() -> None:
    body, ctype = multipart({"model": "whisper-tiny.en"})
    reader = FieldReader(ctype, "model")
    for i in range(0, len(body), 7):
        reader.feed(body[i : i + 7])
    assert reader.done and reader.value == "whisper-tiny.en"


def test_field_after_the_file() -> None:
    request = httpx.Request(
        "POST", "http://x/", files=[("file", ("a.wav", b"\x00" * 100, "audio/wav")), ("model", (None, "m1"))]
    )
    assert form_field(request.read(), request.headers["content-type"], "model") == "m1"


@pytest.mark.parametrize("ctype", ["application/json", "multipart/form-data", ""])
def test_not_multipart_is_a_bad_request(ctype: str) -> None:
    with pytest.raises(BadRequest, match="multipart/form-data"):
        FieldReader(ctype, "model")


def test_garbage_body_is_a_bad_request() -> None:
    _, ctype = multipart({"model": "m"})
    with pytest.raises(BadRequest, match="not a valid multipart form"):
        form_field(b"this is not multipart at all", ctype, "model")


def test_overlong_field_is_refused() -> None:
    body, ctype = multipart({"model": "x" * (MAX_FIELD_BYTES + 1)})
    with pytest.raises(BadRequest, match="longer than"):
        form_field(body, ctype, "model")
