"""Uploaded audio to what Whisper hears: 16 kHz mono float32 samples, decoded with PyAV, bounded in length.

PyAV (FFmpeg's libraries, the decoder faster-whisper itself uses) reads wav, mp3, m4a/mp4, webm/opus (what
Chromium's MediaRecorder records), ogg, flac and more. Only the demuxers in `DEMUXERS` may run, so FFmpeg's
playlist-like formats (hls, concat, ...), which open the files an upload names, never do (reading from memory
they fail today as well; the allowlist does not rely on that).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import av
import numpy as np

from .errors import AudioTooLong, BadAudio
from .limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_SECONDS, SAMPLE_RATE, check_upload_size

log = logging.getLogger(__name__)

# FFmpeg demuxer names (a container is accepted when any of its names is listed).
DEMUXERS = (
    "wav", "w64", "mp3", "aac", "mov", "matroska", "ogg", "flac", "aiff", "caf", "mpeg", "mpegts", "asf",
    "amr", "au",
)  # fmt: skip
FORMATS_HINT = "wav, mp3, m4a, mp4, webm, ogg, opus, flac"


@dataclass(frozen=True)
class Audio:
    """Decoded audio: mono float32 samples at SAMPLE_RATE, and where they came from."""

    samples: np.ndarray
    container: str  # FFmpeg's demuxer name, e.g. "matroska,webm"
    codec: str

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def decode_audio(
    data: bytes,
    *,
    name: str = "The file",
    max_seconds: float = DEFAULT_MAX_SECONDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Audio:
    """`data` (any container and codec PyAV reads) as 16 kHz mono float32; BadAudio when unusable."""
    if not data:
        raise BadAudio(f"{name} is empty: send a recording ({FORMATS_HINT}).")
    check_upload_size(len(data), max_bytes)
    try:
        container = av.open(
            io.BytesIO(data),
            container_options={"format_whitelist": ",".join(DEMUXERS)},
            metadata_errors="ignore",
        )
    except av.FFmpegError as exc:
        raise BadAudio(
            f"{name} is not audio qwendesk can read ({_reason(exc)}). Send {FORMATS_HINT}."
        ) from exc
    with container:
        if not container.streams.audio:
            raise BadAudio(f"{name} ({container.format.name}) has no audio track.")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        samples = _decode_stream(container, stream, name, max_seconds)
    if not len(samples):
        raise BadAudio(
            f"{name} ({container.format.name}, {codec}) holds no decodable sound; it may be corrupt."
        )
    return Audio(samples=samples, container=container.format.name, codec=codec)


def _decode_stream(container, stream, name: str, max_seconds: float) -> np.ndarray:
    """Every decodable packet of `stream`, resampled; corrupt packets are skipped (as FFmpeg's CLI does)."""
    limit = int(max_seconds * SAMPLE_RATE)
    # 16-bit first, then float, exactly as faster-whisper's decode_audio does: the same file gives the model the
    # same samples whichever way it arrives (tiny models change words on differences of half a 16-bit step).
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = bad = 0

    def keep(frame: av.AudioFrame | None) -> None:  # None flushes the resampler
        nonlocal total
        for out in resampler.resample(frame):
            chunk = out.to_ndarray().reshape(-1)
            total += len(chunk)
            if total > limit:
                raise AudioTooLong(
                    f"{name} is longer than the limit of {_minutes(max_seconds)}; split it into shorter parts."
                )
            chunks.append(chunk)

    try:
        for packet in container.demux(stream):  # the last packet is empty: it flushes the decoder
            try:
                frames = packet.decode()
            except av.FFmpegError:
                bad += 1
                continue
            for frame in frames:
                keep(frame)
    except av.FFmpegError as exc:  # a broken container part way through: keep what came before
        bad += 1
        log.info("%s: demuxing stopped early (%s)", name, _reason(exc))
    if chunks:
        keep(None)
    if bad:
        log.info("%s: skipped %d undecodable packet(s)", name, bad)
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def _reason(exc: av.FFmpegError) -> str:
    if isinstance(exc, av.ArgumentError):  # what FFmpeg says when the probed format is not in DEMUXERS
        return "a container format that is not read here"
    return (getattr(exc, "strerror", None) or str(exc)).rstrip(".")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
