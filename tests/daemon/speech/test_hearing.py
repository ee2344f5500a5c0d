"""Audio parts in chat requests: refused for models that cannot hear, checked for those that can."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from qwendesk.daemon.speech.errors import BadAudio
from qwendesk.daemon.speech.hearing import (
    AUDIO_MARKER,
    AudioNotSupported,
    audio_parts,
    check_audio_parts,
    projector_hears,
)


def chat(*parts: dict) -> dict:
    return {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is said here?"}, *parts]},
        ],
    }


def audio(data: bytes, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


def test_a_request_without_audio_is_left_alone() -> None:
    body = chat({"type": "text", "text": "no audio"})
    assert check_audio_parts(body, False, []) == 0
    assert list(audio_parts({"messages": "not a list"})) == []


def test_a_model_that_cannot_hear_is_refused_naming_the_part_and_who_can(sentence_wav: Path) -> None:
    body = chat(audio(sentence_wav.read_bytes()))
    assert AUDIO_MARKER in json.dumps(body).encode()  # the cheap pre-check finds it
    with pytest.raises(AudioNotSupported) as info:
        check_audio_parts(
            body, False, ["qwen2.5-omni-3b", "ultravox"], model="smollm2", speech_models=["whisper"]
        )
    message = info.value.message
    assert info.value.code == "audio_not_supported"
    assert message.startswith("messages[1].content[1]: Model 'smollm2' cannot hear audio")
    assert "Models that can hear: qwen2.5-omni-3b, ultravox." in message
    assert "/v1/audio/transcriptions (speech models: whisper)" in message
    with pytest.raises(AudioNotSupported, match="No model here can hear audio: add an audio-capable GGUF"):
        check_audio_parts(body, False, [])


def test_wav_and_mp3_parts_pass_for_a_model_that_hears(
    sentence_wav: Path, sentence_files: dict[str, Path]
) -> None:
    body = chat(audio(sentence_wav.read_bytes()), audio(sentence_files["mp3"].read_bytes(), "mp3"))
    before = repr(body)
    assert check_audio_parts(body, True, ["omni"]) == 2
    assert repr(body) == before  # passed on unchanged


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ({"type": "input_audio", "input_audio": "abc"}, "must be an object"),
        (
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "flac"}},
            "'wav' or 'mp3', not 'flac'",
        ),
        ({"type": "input_audio", "input_audio": {"format": "wav"}}, "base64 string"),
        (
            {"type": "input_audio", "input_audio": {"data": "not base64!", "format": "wav"}},
            "not valid base64",
        ),
        (audio(b"these are not sounds" * 20), "not a readable wav file"),
    ],
)
def test_bad_parts_are_named(part: dict, expected: str) -> None:
    with pytest.raises(BadAudio, match=expected) as info:
        check_audio_parts(chat(part), True, ["omni"])
    assert info.value.message.startswith("messages[1].content[1]: ")


def test_an_mp3_sent_as_wav_and_a_part_too_large_are_refused(sentence_files: dict[str, Path]) -> None:
    mp3 = sentence_files["mp3"].read_bytes()
    with pytest.raises(BadAudio, match="not a readable wav file"):
        check_audio_parts(chat(audio(mp3, "wav")), True, ["omni"])
    with pytest.raises(BadAudio, match="larger than the limit of 0 MiB"):
        check_audio_parts(chat(audio(mp3, "mp3")), True, ["omni"], max_bytes=1000)


def write_projector(path: Path, **flags: bool) -> Path:
    w = GGUFWriter(path, "clip")
    w.add_type("mmproj")
    for key, value in flags.items():
        w.add_bool(f"clip.{key}", value)
    w.add_tensor("weight", np.zeros((4, 32), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_projector_hears_reads_the_audio_encoder_flag(tmp_path: Path) -> None:
    assert projector_hears(
        write_projector(tmp_path / "a.gguf", has_audio_encoder=True, has_vision_encoder=True)
    )
    assert not projector_hears(write_projector(tmp_path / "v.gguf", has_vision_encoder=True))
    (tmp_path / "broken.gguf").write_bytes(b"GGUF\x03\x00")
    assert not projector_hears(tmp_path / "broken.gguf") and not projector_hears(None)
    assert not projector_hears(tmp_path / "missing.gguf")
