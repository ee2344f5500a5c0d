"""Decoding uploads: every common format to the same 16 kHz mono samples; bad, empty, long and large uploads refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from qwendesk.daemon.speech.audio import SAMPLE_RATE, decode_audio
from qwendesk.daemon.speech.errors import AudioTooLong, BadAudio, UploadTooLarge

from .media import FORMATS


def test_wav_decodes_to_16k_mono_float32(sentence_wav: Path) -> None:
    audio = decode_audio(sentence_wav.read_bytes())
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.container == "wav"
    assert 3.5 < audio.duration < 6.0  # espeak-ng speaks the sentence in about 4.5 s
    assert 0.05 < float(np.abs(audio.samples).max()) <= 1.0  # sound, in the [-1, 1] range


def test_same_samples_as_faster_whisper(sentence_wav: Path) -> None:
    """What faster-whisper's own decoder would give the model (so the bench compares like with like)."""
    from faster_whisper import decode_audio as reference

    ours = decode_audio(sentence_wav.read_bytes()).samples
    theirs = reference(str(sentence_wav), sampling_rate=SAMPLE_RATE)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_every_format_decodes_to_the_same_sound(suffix: str, sentence_files: dict[str, Path]) -> None:
    reference = decode_audio(sentence_files["wav"].read_bytes())
    audio = decode_audio(sentence_files[suffix].read_bytes(), name=f"sentence.{suffix}")
    # Lossy codecs pad the start and end by a few tens of milliseconds.
    assert abs(audio.duration - reference.duration) < 0.15, (suffix, audio.duration, reference.duration)
    rms = float(np.sqrt(np.mean(audio.samples**2)))
    ref_rms = float(np.sqrt(np.mean(reference.samples**2)))
    assert 0.5 * ref_rms < rms < 2.0 * ref_rms, (suffix, rms, ref_rms)


def test_webm_opus_from_ffmpeg_cli(sentence_wav: Path, tmp_path: Path) -> None:
    """webm/opus as ffmpeg's CLI writes it (`-c:a libopus`), like a browser recording's container and codec."""
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        pytest.skip("ffmpeg is not installed: apt-get install ffmpeg")
    out = tmp_path / "rec.webm"
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-i", str(sentence_wav), "-c:a", "libopus", str(out)], check=True
    )
    audio = decode_audio(out.read_bytes())
    assert "webm" in audio.container and audio.codec == "opus"
    assert 3.5 < audio.duration < 6.0


def test_ogg_vorbis_from_ffmpeg_cli(sentence_wav: Path, tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        pytest.skip("ffmpeg is not installed: apt-get install ffmpeg")
    out = tmp_path / "rec.ogg"
    result = subprocess.run(
        [ffmpeg, "-loglevel", "error", "-i", str(sentence_wav), "-c:a", "libvorbis", str(out)],
        capture_output=True,
    )
    if result.returncode:
        pytest.skip(f"this ffmpeg has no libvorbis: {result.stderr.decode(errors='replace')[:200]}")
    audio = decode_audio(out.read_bytes())
    assert audio.codec == "vorbis" and 3.5 < audio.duration < 6.0


def test_empty_upload_is_refused() -> None:
    with pytest.raises(BadAudio, match="empty") as info:
        decode_audio(b"")
    assert info.value.code == "bad_audio"


@pytest.mark.parametrize(
    "data",
    [
        b"This is a text file, not a recording.\n" * 20,
        bytes(range(256)) * 64,
        b"%PDF-1.7\n" + b"\x00" * 4000,
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000,
    ],
    ids=["text", "noise-bytes", "pdf", "png"],
)
def test_non_audio_is_refused(data: bytes) -> None:
    with pytest.raises(BadAudio) as info:
        decode_audio(data, name="'upload.bin'")
    assert info.value.code == "bad_audio"
    assert "'upload.bin'" in info.value.message


def test_wav_header_without_sound_is_refused(sentence_wav: Path) -> None:
    with pytest.raises(BadAudio, match="no decodable sound"):
        decode_audio(sentence_wav.read_bytes()[:100])


@pytest.mark.parametrize("suffix", ["mp3", "webm", "m4a"])
def test_garbled_middle_still_refused_or_decoded_never_crashes(
    suffix: str, sentence_files: dict[str, Path]
) -> None:
    """Corruption inside the stream: either a clear BadAudio or the decodable rest, never another exception."""
    data = bytearray(sentence_files[suffix].read_bytes())
    rng = np.random.default_rng(7)
    middle = slice(len(data) // 3, 2 * len(data) // 3)
    data[middle] = rng.integers(0, 256, middle.stop - middle.start, dtype=np.uint8).tobytes()
    try:
        audio = decode_audio(bytes(data))
    except BadAudio as exc:
        assert exc.code == "bad_audio"
    else:
        assert audio.duration < 6.0


def test_truncated_file_keeps_what_came_before(sentence_files: dict[str, Path]) -> None:
    data = sentence_files["mp3"].read_bytes()
    audio = decode_audio(data[: len(data) // 2])
    assert 1.0 < audio.duration < 4.0


def test_a_file_without_audio_track_is_refused(sentence_wav: Path, tmp_path: Path) -> None:
    import av

    video = tmp_path / "silent.webm"
    with av.open(str(video), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(BadAudio, match="no audio track"):
        decode_audio(video.read_bytes())


def test_playlists_naming_other_files_are_refused(sentence_wav: Path) -> None:
    """FFmpeg's hls and concat demuxers would read the files an upload names; neither may run."""
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5,\n{sentence_wav}\n#EXT-X-ENDLIST\n"
    concat = f"ffconcat version 1.0\nfile '{sentence_wav}'\n"
    for data in (playlist.encode(), concat.encode()):
        with pytest.raises(BadAudio):
            decode_audio(data)


def test_too_long_is_refused_with_the_limit(paragraph_wav: Path) -> None:
    with pytest.raises(AudioTooLong, match="limit of 5 s") as info:
        decode_audio(paragraph_wav.read_bytes(), max_seconds=5)
    assert info.value.code == "audio_too_long"
    assert isinstance(info.value, BadAudio)


def test_too_large_is_refused_before_decoding() -> None:
    with pytest.raises(UploadTooLarge, match="limit is 1 MiB") as info:
        decode_audio(b"\x00" * (2 * 2**20), max_bytes=2**20)
    assert info.value.code == "upload_too_large"
