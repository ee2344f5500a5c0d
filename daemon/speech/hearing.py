"""Audio as chat input: which GGUF models can hear, and the check of `input_audio` parts before a chat request.

llama.cpp's server takes OpenAI's `{"type": "input_audio", "input_audio": {"data": <base64>, "format": "wav" |
"mp3"}}` parts when the model was started with an audio projector (an mmproj whose header says
`clip.has_audio_encoder`, e.g. Qwen2.5-Omni's or Ultravox's); other formats it refuses, and a model without
such a projector fails the request with an engine error. So parts are checked here first and refused with a 400
that names the part and the models that can hear; the body itself is passed on unchanged.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from qwendesk.models.errors import BadRequest, ModelFileError
from qwendesk.models.gguf_info import read_gguf

from ..chat_parts import content_parts
from .errors import BadAudio
from .limits import DEFAULT_MAX_BYTES

AUDIO_TYPE = "input_audio"
AUDIO_MARKER = b'"input_audio"'  # a cheap look at the raw request before parsing it
FORMATS = ("wav", "mp3")  # what llama-server accepts (OpenAI's two input formats)
# The FFmpeg demuxer that must recognise each format's bytes (a wav part holding an mp3 is refused here,
# as llama.cpp's decoder would fail on it with a less helpful message).
_DEMUXER = {"wav": "wav", "mp3": "mp3"}


class AudioNotSupported(BadRequest):
    """Audio parts sent to a model that cannot hear (it has no audio projector)."""

    code = "audio_not_supported"


def projector_hears(mmproj: Path | None) -> bool:
    """Whether a model's projector (mmproj GGUF) has an audio encoder; a bounded header read, never raising."""
    if mmproj is None:
        return False
    try:
        return read_gguf(mmproj, check_architecture=False).has_audio_encoder
    except (ModelFileError, OSError):
        return False


def audio_parts(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, part) of every `input_audio` content part, `where` as `messages[i].content[j]`."""
    for where, _, _, part in content_parts(body, frozenset({AUDIO_TYPE})):
        yield where, part


def check_audio_parts(
    body: dict[str, Any],
    model_can_hear: bool,
    hearing_models: Sequence[str],
    *,
    model: str = "",
    speech_models: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> int:
    """Refuse `input_audio` parts a model cannot take; returns how many parts there are (0: nothing to do).

    A model that cannot hear gets AudioNotSupported naming the first part and the models that can hear (and
    the speech models that could transcribe the audio first); for one that can, each part must be base64 wav
    or mp3 of at most `max_bytes` (BadAudio naming the part). The body is not changed."""
    parts = list(audio_parts(body))
    if not parts:
        return 0
    if not model_can_hear:
        raise audio_not_supported(parts[0][0], model, hearing_models, speech_models)
    for where, part in parts:
        _check_part(where, part, max_bytes)
    return len(parts)


def audio_not_supported(
    where: str, model: str, hearing_models: Sequence[str], speech_models: Sequence[str] = ()
) -> AudioNotSupported:
    who = f"Model '{model}'" if model else "This model"
    message = f"{where}: {who} cannot hear audio (it has no audio projector)."
    if hearing_models:
        message += " Models that can hear: " + ", ".join(sorted(hearing_models)) + "."
    else:
        message += (
            " No model here can hear audio: add an audio-capable GGUF (e.g. Qwen2.5-Omni) with its mmproj file "
            "to the models folder."
        )
    if speech_models:
        message += (
            " Or transcribe the audio first with /v1/audio/transcriptions (speech models: "
            + ", ".join(sorted(speech_models))
            + ") and send the text."
        )
    return AudioNotSupported(message)


def _check_part(where: str, part: dict[str, Any], max_bytes: int) -> None:
    audio = part.get(AUDIO_TYPE)
    if not isinstance(audio, dict):
        raise BadAudio(
            f'{where}: `input_audio` must be an object {{"data": <base64>, "format": "wav" | "mp3"}}.'
        )
    fmt = audio.get("format")
    if fmt not in FORMATS:
        raise BadAudio(
            f"{where}: input_audio.format must be 'wav' or 'mp3', not {fmt!r}. Convert the recording first "
            "(or send it to /v1/audio/transcriptions, which reads most formats)."
        )
    data = audio.get("data")
    if not isinstance(data, str) or not data.strip():
        raise BadAudio(f"{where}: input_audio.data must be the {fmt} file as a base64 string.")
    if len(data) * 3 // 4 > max_bytes + 3:  # before decoding: base64 is 4 characters per 3 bytes
        raise BadAudio(f"{where}: the audio is larger than the limit of {max_bytes / 2**20:.0f} MiB.")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadAudio(f"{where}: input_audio.data is not valid base64.") from None
    _probe(where, raw, fmt)


def _probe(where: str, raw: bytes, fmt: str) -> None:
    """BadAudio when `raw` is not a `fmt` file with an audio track (the container header only: cheap)."""
    import av  # PyAV loads with the first audio part, not at start-up

    try:
        with av.open(io.BytesIO(raw), format=_DEMUXER[fmt], metadata_errors="ignore") as container:
            has_audio = bool(container.streams.audio)
    except av.FFmpegError:
        raise BadAudio(f"{where}: input_audio.data is not a readable {fmt} file.") from None
    if not has_audio:
        raise BadAudio(f"{where}: the {fmt} file has no audio track.")
