"""A transcription and its OpenAI response formats: json, text, srt, vtt and verbose_json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faster_whisper.utils import format_timestamp

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


@dataclass
class Segment:
    """One stretch of speech, with the fields OpenAI's verbose_json gives each segment."""

    id: int
    start: float
    end: float
    text: str
    seek: int = 0
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


@dataclass
class Word:
    word: str
    start: float
    end: float


@dataclass
class Transcript:
    task: str  # "transcribe" or "translate"
    language: str  # ISO 639-1 code of the speech, as faster-whisper detects or was told
    duration: float  # seconds of audio
    segments: list[Segment]
    words: list[Word] | None = None  # only when word timestamps were asked for

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


def timestamp(seconds: float, marker: str) -> str:
    """`HH:MM:SS<marker>mmm`, the form both SubRip (`,`) and WebVTT (`.`) accept."""
    return format_timestamp(max(0.0, seconds), always_include_hours=True, decimal_marker=marker)


def to_srt(transcript: Transcript) -> str:
    blocks = [
        f"{n}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text.strip()}\n"
        for n, s in enumerate(transcript.segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = [
        f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text.strip()}\n"
        for s in transcript.segments
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _usage(transcript: Transcript) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(transcript.duration, 3)}


def to_json(transcript: Transcript) -> dict[str, Any]:
    return {"text": transcript.text, "usage": _usage(transcript)}


def to_verbose_json(transcript: Transcript, *, segments: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": transcript.task,
        "language": transcript.language,
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
    }
    if segments:
        body["segments"] = [
            {
                "id": s.id,
                "seek": s.seek,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": s.tokens,
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in transcript.segments
        ]
    if transcript.words is not None:
        body["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in transcript.words
        ]
    body["usage"] = _usage(transcript)
    return body


def render(transcript: Transcript, response_format: str, *, segments: bool = True) -> str | dict[str, Any]:
    """The response body for `response_format` (a dict for the JSON formats, text for the others)."""
    if response_format == "json":
        return to_json(transcript)
    if response_format == "verbose_json":
        return to_verbose_json(transcript, segments=segments)
    if response_format == "srt":
        return to_srt(transcript)
    if response_format == "vtt":
        return to_vtt(transcript)
    return transcript.text + "\n"
