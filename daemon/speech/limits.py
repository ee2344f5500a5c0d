"""The bounds of speech to text, with what each costs (measured with tiny.en on 2 cores; see bench/speech.py)."""

from __future__ import annotations

from .errors import UploadTooLarge

SAMPLE_RATE = 16_000  # what every Whisper model was trained on
# faster-whisper computes the spectrogram of the whole recording at once: about 50 MiB of transient memory per
# minute of audio (+493 MiB for 10 min, +1481 MiB for 30 min), so the default stays at 10 min.
DEFAULT_MAX_SECONDS = 10 * 60.0
DEFAULT_MAX_BYTES = 25 * 1024 * 1024  # OpenAI's own upload limit for /v1/audio
FORM_SLACK = 64 * 1024  # the multipart framing and small fields around a file of the maximum size
MIB_PER_AUDIO_MINUTE = 50
# The worker's RSS besides the weights and the per-minute cost: the interpreter, PyAV, CTranslate2, the
# tokenizer and beam-search buffers (idle 161 MiB and 316 MiB peak on a 46 s clip with tiny.en's 76 MB).
WORKER_BASE_MIB = 256


def check_upload_size(size: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """UploadTooLarge when `size` bytes exceed the limit (light: the daemon can check before buffering)."""
    if size > max_bytes:
        raise UploadTooLarge(
            f"The upload is {size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB. "
            "Send a shorter recording, or a compressed one (mp3, m4a, opus)."
        )
