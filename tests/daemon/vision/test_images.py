"""Image parts of chat requests: decoding, checks, downscaling and the errors naming the part."""

from __future__ import annotations

import base64
import copy
import math

import pytest
from PIL import Image

from qwendesk.daemon.vision.errors import (
    BadImage,
    ImageURLRefused,
    MediaNotSupported,
    VisionNotSupported,
    vision_not_supported,
)
from qwendesk.daemon.vision.images import (
    DEFAULT_MAX_PIXELS,
    ImageLimits,
    has_media,
    image_parts,
    prepare_images,
    tokens_cap,
)
from qwendesk.models.errors import BadRequest
from tests.daemon.vision.imagefiles import (
    chat,
    data_url,
    decode_url,
    encode,
    image_part,
    pattern,
    png_claiming,
    png_url,
)


def one(body: dict, limits: ImageLimits | None = None):
    """(new url, note) of a body with one image part."""
    out, notes = prepare_images(body, limits)
    assert len(notes) == 1
    return out["messages"][0]["content"][0]["image_url"]["url"], notes[0]


# ---- finding parts -------------------------------------------------------------------------------
def test_body_without_images_is_returned_as_is() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": [{"type": "text"}]}]}
    out, notes = prepare_images(body)
    assert out is body and notes == []
    assert not has_media(body) and not has_media({}) and not has_media({"messages": "x"})


def test_parts_are_named_by_message_and_content_index() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, image_part("u1")]},
            {"role": "user", "content": [image_part("u2")]},
        ]
    }
    assert [where for where, *_ in image_parts(body)] == ["messages[1].content[1]", "messages[2].content[0]"]
    assert has_media(body)


def test_error_names_the_bad_part_among_good_ones() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [image_part(png_url(8, 8))]},
            {"role": "assistant", "content": "ok"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "and"}, image_part("data:image/png;base64,AAAA")],
            },
        ]
    }
    with pytest.raises(BadImage, match=r"^messages\[2\]\.content\[1\]: "):
        prepare_images(body)


# ---- formats -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_small_png_and_jpeg_go_through_unchanged(fmt: str, mime: str) -> None:
    url = data_url(encode(pattern(64, 48), fmt), mime)
    new, note = one(chat(image_part(url)))
    assert new == url  # the very same string: no re-encoding loss
    assert (note.format, note.size, note.original_size, note.frames) == (fmt, (64, 48), (64, 48), 1)
    assert not note.resized and not note.reencoded and note.source == "data"
    assert note.part == "messages[0].content[0]"


def test_webp_becomes_png() -> None:
    """WebP (and GIF) are converted, so the engine only ever decodes PNG or JPEG."""
    src = pattern(40, 30)
    new, note = one(chat(image_part(data_url(encode(src, "WEBP", lossless=True), "image/webp"))))
    assert new.startswith("data:image/png;base64,")
    img = decode_url(new)
    assert img.format == "PNG" and img.size == (40, 30) and note.format == "WEBP" and note.reencoded
    assert img.convert("RGB").tobytes() == src.tobytes()  # lossless WebP -> identical pixels


def test_gif_keeps_its_first_frame() -> None:
    frames = [Image.new("RGB", (20, 10), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    raw = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    new, note = one(chat(image_part(data_url(raw, "image/gif"))))
    img = decode_url(new).convert("RGB")
    assert note.format == "GIF" and note.frames == 3 and img.size == (20, 10)
    assert img.getpixel((5, 5)) == (255, 0, 0)


def test_animated_png_keeps_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ((10, 20, 30), (200, 100, 0))]
    raw = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    new, note = one(chat(image_part(data_url(raw))))
    assert note.frames == 2 and note.reencoded
    assert decode_url(new).convert("RGB").getpixel((3, 3)) == (10, 20, 30)


def test_mislabelled_media_type_is_read_by_content() -> None:
    """Clients often send JPEG bytes as image/png; the bytes decide."""
    raw = encode(pattern(30, 20), "JPEG")
    new, note = one(chat(image_part(data_url(raw, "image/png"))))
    assert note.format == "JPEG" and not note.reencoded
    assert new == data_url(raw, "image/jpeg")  # the same bytes, labelled for what they are


def test_transparency_is_flattened_onto_white() -> None:
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.putpixel((1, 1), (255, 0, 0, 255))
    new, note = one(chat(image_part(data_url(encode(img, "PNG")))))
    out = decode_url(new)
    assert out.mode == "RGB" and note.reencoded
    assert out.getpixel((5, 5)) == (255, 255, 255) and out.getpixel((1, 1)) == (255, 0, 0)


def test_palette_and_cmyk_images_become_rgb() -> None:
    pal = pattern(12, 12).convert("P")
    new, note = one(chat(image_part(data_url(encode(pal, "PNG")))))
    assert decode_url(new).mode == "RGB" and note.reencoded
    cmyk = pattern(12, 12).convert("CMYK")
    new, note = one(chat(image_part(data_url(encode(cmyk, "JPEG"), "image/jpeg"))))
    out = decode_url(new)
    assert out.format == "JPEG" and out.mode == "RGB" and note.format == "JPEG" and note.reencoded


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    img = Image.new("I;16", (2, 1))
    img.putpixel((0, 0), 0x8000)
    img.putpixel((1, 0), 0xFFFF)
    new, note = one(chat(image_part(data_url(encode(img, "PNG")))))
    out = decode_url(new)
    assert out.mode == "L" and out.getpixel((0, 0)) == 128 and out.getpixel((1, 0)) == 255 and note.reencoded


def test_camera_mpo_is_read_as_jpeg() -> None:
    raw = encode(pattern(40, 30), "MPO", save_all=True, append_images=[pattern(40, 30)])
    new, note = one(chat(image_part(data_url(raw, "image/jpeg"))))
    assert note.format == "JPEG" and note.frames == 2 and new.startswith("data:image/jpeg;base64,")


def test_exif_rotated_photo_is_turned_upright() -> None:
    img = pattern(200, 100)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": phones store portrait photos like this
    new, note = one(chat(image_part(data_url(encode(img, "JPEG", exif=exif), "image/jpeg"))))
    assert note.original_size == (100, 200) and note.size == (100, 200) and note.reencoded
    assert decode_url(new).size == (100, 200)


def test_other_image_formats_are_refused() -> None:
    for fmt in ("BMP", "TIFF"):
        with pytest.raises(BadImage, match="not a PNG, JPEG, WebP or GIF image"):
            prepare_images(chat(image_part(data_url(encode(pattern(8, 8), fmt), "image/bmp"))))


# ---- the pixel budget ----------------------------------------------------------------------------
@pytest.mark.parametrize(("w", "h"), [(2000, 1500), (1500, 2000), (4000, 500), (1001, 999)])
def test_large_png_is_scaled_into_the_budget(w: int, h: int) -> None:
    budget = 401_408
    new, note = one(chat(image_part(png_url(w, h))), ImageLimits(max_pixels=budget))
    nw, nh = note.size
    assert note.resized and note.reencoded and note.original_size == (w, h)
    assert nw * nh <= budget and nw * nh > 0.98 * budget  # as large as the budget allows
    assert abs(nw / nh - w / h) < 0.01 * (w / h)  # aspect ratio kept
    img = decode_url(new)
    assert img.format == "PNG" and img.size == (nw, nh)


def test_large_jpeg_stays_jpeg_within_the_budget() -> None:
    raw = encode(pattern(3000, 2000), "JPEG", quality=85)
    new, note = one(chat(image_part(data_url(raw, "image/jpeg"))))
    nw, nh = note.size
    assert note.original_size == (3000, 2000) and nw * nh <= DEFAULT_MAX_PIXELS
    assert nw * nh > 0.98 * DEFAULT_MAX_PIXELS  # JPEG's reduced-scale decoding never undershoots
    assert new.startswith("data:image/jpeg;base64,") and decode_url(new).size == (nw, nh)
    assert note.bytes < note.original_bytes


def test_the_budget_is_a_setting() -> None:
    _, note = one(chat(image_part(png_url(640, 480))), ImageLimits(max_pixels=64 * 784))
    assert note.size[0] * note.size[1] <= 64 * 784 and note.resized


def test_images_within_the_budget_are_not_enlarged() -> None:
    _, note = one(chat(image_part(png_url(10, 10))), ImageLimits(max_pixels=100))
    assert note.size == (10, 10) and not note.resized


def test_tokens_cap_matches_the_budget() -> None:
    assert DEFAULT_MAX_PIXELS == 401_408
    assert tokens_cap(DEFAULT_MAX_PIXELS) == 512  # Qwen2-VL / Qwen2.5-VL: 28x28 pixels a token
    assert tokens_cap(DEFAULT_MAX_PIXELS, patch_size=16) == 392  # Qwen3-VL: 32x32
    assert tokens_cap(10) == 1


# ---- bad payloads --------------------------------------------------------------------------------
def test_truncated_image_is_refused() -> None:
    raw = encode(pattern(64, 64), "PNG")
    with pytest.raises(BadImage, match=r"messages\[0\]\.content\[0\]: the PNG image is corrupt or truncated"):
        prepare_images(chat(image_part(data_url(raw[: len(raw) // 2]))))


def test_corrupt_jpeg_is_refused() -> None:
    raw = bytearray(encode(pattern(64, 64), "JPEG"))
    raw[200:] = b"\x00" * (len(raw) - 200)  # scan data gone, header intact
    with pytest.raises(BadImage, match="corrupt or truncated"):
        prepare_images(chat(image_part(data_url(bytes(raw), "image/jpeg"))))


@pytest.mark.parametrize("payload", [b"hello, not an image", b"%PDF-1.7\n" + b"x" * 100, b"\x89PN"])
def test_non_image_bytes_are_refused(payload: bytes) -> None:
    with pytest.raises(
        BadImage, match=r"^messages\[0\]\.content\[0\]: the data is not a PNG, JPEG, WebP or GIF"
    ):
        prepare_images(chat(image_part(data_url(payload))))


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("data:image/png;base64,@@@not-base64@@@", "base64 is invalid"),
        ("data:image/png;base64,iVBORw0KGgo", "base64 is invalid"),  # truncated: bad padding
        ("data:image/png;base64,", "empty"),
        ("data:image/png,rawbytes", "not base64-encoded"),
        ("data:text/plain;base64,aGVsbG8=", "holds 'text/plain', not an image"),
        ("data:;base64,aGVsbG8=", "holds 'text/plain', not an image"),
        ("data:image/png;base64", "malformed data URL"),
    ],
)
def test_malformed_data_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(BadImage, match=match) as err:
        prepare_images(chat(image_part(url)))
    assert err.value.code == "bad_image" and isinstance(err.value, BadRequest)


def test_wrapped_base64_is_accepted() -> None:
    raw = encode(pattern(16, 16), "PNG")
    b64 = base64.encodebytes(raw).decode()  # 76-character lines, as some clients send
    new, note = one(chat(image_part("data:image/png;BASE64," + b64)))
    assert note.size == (16, 16) and not note.reencoded
    assert new == data_url(raw)  # re-wrapped in the plain form llama.cpp parses, bytes unchanged


def test_missing_url_is_refused() -> None:
    for part in ({"type": "image_url"}, {"type": "image_url", "image_url": {}}, image_part("  ")):
        with pytest.raises(BadImage, match="has no URL"):
            prepare_images(chat(part))


def test_bare_string_image_url_is_normalised() -> None:
    url = png_url(8, 8)
    out, _ = prepare_images(chat({"type": "image_url", "image_url": url}))
    assert out["messages"][0]["content"][0]["image_url"] == {"url": url}


def test_other_part_fields_are_kept_and_input_not_modified() -> None:
    body = chat(image_part(png_url(900, 900), detail="high"))
    before = copy.deepcopy(body)
    out, _ = prepare_images(body)
    assert body == before
    part = out["messages"][0]["content"][0]
    assert (
        part["image_url"]["detail"] == "high"
        and part["image_url"]["url"] != before["messages"][0]["content"][0]["image_url"]["url"]
    )
    assert (
        out["messages"][0]["content"][1] == {"type": "text", "text": "What is this?"} and out["model"] == "m"
    )


# ---- limits against bombs and huge payloads ------------------------------------------------------
def test_pixel_count_is_checked_before_decoding() -> None:
    bomb = png_claiming(8_000, 8_000)  # 64 MP claimed (under Pillow's own warning), a few dozen bytes sent
    assert len(bomb) < 100
    with pytest.raises(BadImage, match=r"8000x8000 \(64\.0 megapixels\); images may have at most 50 mega"):
        prepare_images(chat(image_part(data_url(bomb))))


def test_pillow_bomb_ceiling_gives_the_same_advice() -> None:
    """Past 2x Image.MAX_IMAGE_PIXELS Pillow refuses at open, before our own check."""
    bomb = png_claiming(100_000, 100_000)
    with pytest.raises(BadImage, match="at most 50 megapixels. Scale it down"):
        prepare_images(chat(image_part(data_url(bomb))))


def test_source_pixel_limit_is_a_setting() -> None:
    with pytest.raises(BadImage, match="at most 0.01 megapixels"):
        prepare_images(chat(image_part(png_url(200, 200))), ImageLimits(max_source_pixels=10_000))


def test_byte_limit() -> None:
    raw = encode(pattern(300, 300), "PNG")
    assert len(raw) > 1000
    with pytest.raises(BadImage, match=r"larger than 1000 bytes"):
        prepare_images(chat(image_part(data_url(raw))), ImageLimits(max_bytes=1000))
    with pytest.raises(BadImage, match=r"larger than 20 MiB"):  # refused from the base64 length alone
        prepare_images(chat(image_part("data:image/png;base64," + "A" * (28 * 2**20))))


def test_extreme_aspect_ratio_is_refused() -> None:
    with pytest.raises(BadImage, match="more than 200 times as long"):
        prepare_images(chat(image_part(png_url(2010, 10))))


# ---- URLs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://example.com/cat.png", "https://example.com/cat.png", "HTTPS://X/y"])
def test_remote_urls_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(
        ImageURLRefused, match=r"^messages\[0\]\.content\[0\]: remote image URLs are not fetched"
    ) as e:
        prepare_images(chat(image_part(url)))
    assert "image_fetch" in e.value.message and "data:image/png;base64" in e.value.message
    assert e.value.code == "image_url_refused"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("file:///etc/passwd", "the file: scheme"),
        ("ftp://example.com/a.png", "the ftp: scheme"),
        (base64.b64encode(encode(pattern(4, 4), "PNG")).decode(), "without the data: prefix"),
    ],
)
def test_unsupported_schemes_are_refused(url: str, match: str) -> None:
    with pytest.raises(ImageURLRefused, match=match):
        prepare_images(chat(image_part(url)))


@pytest.mark.parametrize("kind", ["video_url", "input_video"])
def test_video_parts_are_refused_before_any_image_is_decoded(kind: str) -> None:
    """llama-server would download a video part's http(s) URL itself (tests/daemon/vision/test_engine_e2e.py)."""
    video = {"type": kind, kind: {"url": "http://example.com/v.mp4"}}
    body = {"messages": [{"role": "user", "content": [image_part("data:image/png;base64,AAAA"), video]}]}
    assert has_media({"messages": [{"role": "user", "content": [video]}]})
    with pytest.raises(
        MediaNotSupported, match=rf"^messages\[0\]\.content\[1\]: {kind} parts are not supported"
    ):
        prepare_images(body)  # the corrupt image would raise BadImage, had it been decoded first


# ---- text-only models ----------------------------------------------------------------------------
def test_vision_not_supported_names_the_models_that_can_see() -> None:
    err = vision_not_supported("qwen2.5-0.5b", ["qwen2-vl-2b", "qwen2.5-vl-3b"])
    assert isinstance(err, VisionNotSupported) and isinstance(err, BadRequest)
    assert err.code == "vision_not_supported"
    assert "'qwen2.5-0.5b' cannot see images" in err.message
    assert "Models that can see images: qwen2-vl-2b, qwen2.5-vl-3b." in err.message
    none = vision_not_supported("m", [])
    assert "No model here can see images" in none.message and "mmproj" in none.message


def test_budget_arithmetic_matches_the_docstring() -> None:
    """The module docstring promises ~512 tokens and about 731x548 (4:3) or 633x633 at the default."""
    assert math.isqrt(DEFAULT_MAX_PIXELS) == 633 and math.isqrt(DEFAULT_MAX_PIXELS * 4 // 3) == 731
