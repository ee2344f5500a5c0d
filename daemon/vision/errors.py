"""Why an image in a chat request was refused; each message names the part (messages[i].content[j])."""

from __future__ import annotations

from qwendesk.models.errors import BadRequest


class BadImage(BadRequest):
    """An image part is corrupt, not an image, in an unsupported format, or too large."""

    code = "bad_image"


class ImageURLRefused(BadRequest):
    """An image URL qwendesk will not load: remote (while fetching is off) or an unsupported scheme."""

    code = "image_url_refused"


class ImageFetchFailed(BadRequest):
    """A remote image (fetching on) could not be downloaded within the size and time limits."""

    code = "image_fetch_failed"


class MediaNotSupported(BadRequest):
    """A content part qwendesk does not take (video): refused, since the engine would fetch its URL itself."""

    code = "media_not_supported"


class VisionNotSupported(BadRequest):
    """The model cannot see images (no vision projector paired with it)."""

    code = "vision_not_supported"


def vision_not_supported(model: str, vision_models: list[str]) -> VisionNotSupported:
    """The error for image parts sent to a text-only model, naming the models that can see."""
    if vision_models:
        can = "Models that can see images: " + ", ".join(sorted(vision_models)) + "."
    else:
        can = (
            "No model here can see images: add a vision model (e.g. a Qwen2-VL, Qwen2.5-VL or Qwen3-VL GGUF) "
            "with its mmproj file to the models folder."
        )
    return VisionNotSupported(f"Model '{model}' cannot see images (it has no vision projector). {can}")


def size_text(n: int) -> str:
    """A byte count for people: `20 MiB`, `1.5 MiB`, `800 bytes`."""
    return f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n} bytes"
