"""Errors of speech to text: audio that cannot be used, an upload too large, a task the model cannot do."""

from __future__ import annotations

from qwendesk.models.errors import BadRequest


class BadAudio(BadRequest):
    """The upload is empty, not audio, corrupt, or in a container qwendesk does not read."""

    code = "bad_audio"


class AudioTooLong(BadAudio):
    """The audio lasts longer than the configured maximum."""

    code = "audio_too_long"


class UploadTooLarge(BadRequest):
    """The request body is larger than the configured maximum upload size."""

    code = "upload_too_large"


class SpeechUnsupported(BadRequest):
    """The model cannot do what was asked (translate, or a language it does not know)."""

    code = "speech_unsupported"
