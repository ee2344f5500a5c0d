"""The response formats of a transcription: text, json, srt, vtt and verbose_json, from known segments."""

from __future__ import annotations

import json

import pytest

from qwendesk.daemon.speech.transcript import RESPONSE_FORMATS, Segment, Transcript, Word, render, timestamp


def transcript(words: bool = False) -> Transcript:
    return Transcript(
        task="transcribe",
        language="en",
        duration=3725.25,
        segments=[
            Segment(
                id=0,
                start=0.0,
                end=4.24,
                text=" Please send the report.",
                tokens=[50363, 4222],
                avg_logprob=-0.2,
            ),
            Segment(id=1, start=3723.5, end=3725.0, text=" Before Friday.", seek=372350, temperature=0.2),
        ],
        words=[Word(" Please", 0.0, 0.48), Word(" send", 0.48, 0.84)] if words else None,
    )


@pytest.mark.parametrize(
    ("seconds", "marker", "expected"),
    [
        (0.0, ",", "00:00:00,000"),
        (4.2449, ".", "00:00:04.245"),
        (3725.5, ",", "01:02:05,500"),
        (-0.01, ".", "00:00:00.000"),
    ],
)
def test_timestamps(seconds: float, marker: str, expected: str) -> None:
    assert timestamp(seconds, marker) == expected


def test_text_joins_segments() -> None:
    assert render(transcript(), "text") == "Please send the report. Before Friday.\n"


def test_json_has_text_and_usage() -> None:
    assert render(transcript(), "json") == {
        "text": "Please send the report. Before Friday.",
        "usage": {"type": "duration", "seconds": 3725.25},
    }


def test_srt() -> None:
    assert render(transcript(), "srt") == (
        "1\n00:00:00,000 --> 00:00:04,240\nPlease send the report.\n\n"
        "2\n01:02:03,500 --> 01:02:05,000\nBefore Friday.\n"
    )


def test_vtt() -> None:
    assert render(transcript(), "vtt") == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:04.240\nPlease send the report.\n\n"
        "01:02:03.500 --> 01:02:05.000\nBefore Friday.\n"
    )


def test_verbose_json_segments_as_openai_gives_them() -> None:
    body = render(transcript(), "verbose_json")
    assert isinstance(body, dict)
    assert body["task"] == "transcribe" and body["language"] == "en" and body["duration"] == 3725.25
    assert body["text"] == "Please send the report. Before Friday."
    assert "words" not in body
    first, second = body["segments"]
    assert set(first) == {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                          "compression_ratio", "no_speech_prob"}  # fmt: skip
    assert (first["id"], first["start"], first["end"], first["tokens"]) == (0, 0.0, 4.24, [50363, 4222])
    assert (second["seek"], second["temperature"]) == (372350, 0.2)
    json.dumps(body)  # serialisable as is


def test_verbose_json_words_only_when_asked() -> None:
    body = render(transcript(words=True), "verbose_json", segments=False)
    assert isinstance(body, dict)
    assert "segments" not in body
    assert body["words"] == [
        {"word": " Please", "start": 0.0, "end": 0.48},
        {"word": " send", "start": 0.48, "end": 0.84},
    ]


def test_silence_renders_empty_everywhere() -> None:
    silent = Transcript(task="transcribe", language="en", duration=2.0, segments=[])
    assert render(silent, "text") == "\n"
    assert render(silent, "srt") == ""
    assert render(silent, "vtt") == "WEBVTT\n"
    assert render(silent, "verbose_json")["segments"] == []  # type: ignore[index]
    assert set(RESPONSE_FORMATS) == {"json", "text", "srt", "vtt", "verbose_json"}
