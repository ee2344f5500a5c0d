"""The worker's HTTP layer with a stand-in engine (unit tests; the real engine is in test_worker_e2e.py):
the bearer key, OpenAI's form fields, limits and the error shapes."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from qwendesk.daemon.speech.engine import Options, SpeechEngine
from qwendesk.daemon.speech.errors import SpeechUnsupported
from qwendesk.daemon.speech.transcript import Segment, Transcript
from qwendesk.daemon.speech.worker import Worker, parse_args

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


class StandInEngine:
    """Records what it was asked; answers one fixed segment. English-only unless told otherwise."""

    def __init__(self, multilingual: bool = False) -> None:
        self.folder = Path("/models/whisper-tiny.en")
        self.multilingual = multilingual
        self.languages = ["en", "de"] if multilingual else ["en"]
        self.device, self.compute_type, self.threads, self.active = "cpu", "int8", 2, False
        self.calls: list[tuple[int, Options]] = []
        self.fail: Exception | None = None

    check = SpeechEngine.check  # the real rules

    def transcribe(
        self, samples: np.ndarray, options: Options, cancel: threading.Event | None = None
    ) -> Transcript:
        self.check(options)
        if self.fail:
            raise self.fail
        self.calls.append((len(samples), options))
        seg = Segment(id=0, start=0.0, end=len(samples) / 16000, text=" Hello there.")
        return Transcript(task=options.task, language=options.language or "en", duration=len(samples) / 16000,
                          segments=[seg])  # fmt: skip


@pytest.fixture
def engine() -> StandInEngine:
    return StandInEngine()


@pytest.fixture
def client(engine: StandInEngine) -> TestClient:
    worker = Worker(engine, KEY, name="whisper-tiny.en", max_seconds=10, max_bytes=2 * 2**20)  # type: ignore[arg-type]
    return TestClient(worker)


def post(client: TestClient, audio: bytes, path: str = "/v1/audio/transcriptions", **fields: str):
    return client.post(path, headers=AUTH, data={"model": "whisper-tiny.en", **fields},
                       files={"file": ("clip.wav", audio, "audio/wav")})  # fmt: skip


def error(response) -> dict:
    body = response.json()["error"]
    assert set(body) == {"message", "type", "code"}
    return body


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}]
)
def test_every_route_needs_the_key(client: TestClient, headers: dict[str, str], sentence_wav: Path) -> None:
    for response in (
        client.get("/health", headers=headers),
        client.post(
            "/v1/audio/transcriptions", headers=headers, files={"file": ("a.wav", sentence_wav.read_bytes())}
        ),
        client.post("/v1/audio/translations", headers=headers),
    ):
        assert response.status_code == 401
        assert error(response)["code"] == "unauthorized"


def test_health(client: TestClient) -> None:
    body = client.get("/health", headers=AUTH).json()
    assert body["status"] == "ok" and body["model"] == "whisper-tiny.en"
    assert body["languages"] == ["en"] and body["can_translate"] is False and body["busy"] == 0


def test_unknown_route_is_404_in_openai_shape(client: TestClient) -> None:
    response = client.get("/v1/models", headers=AUTH)
    assert response.status_code == 404 and error(response)["code"] == "not_found"


def test_fields_reach_the_engine(client: TestClient, engine: StandInEngine, sentence_wav: Path) -> None:
    response = post(client, sentence_wav.read_bytes(), language="EN", prompt="Quarterly report.", temperature="0.4",
                    response_format="verbose_json", **{"timestamp_granularities[]": "word"})  # fmt: skip
    assert response.status_code == 200, response.text
    [(n_samples, options)] = engine.calls
    assert 4.0 < n_samples / 16000 < 5.5  # the decoded upload, at 16 kHz
    assert options == Options(task="transcribe", language="en", prompt="Quarterly report.", temperature=0.4,
                              word_timestamps=True)  # fmt: skip
    assert response.json()["task"] == "transcribe"


@pytest.mark.parametrize(
    ("fmt", "media_type", "start"),
    [("json", "application/json", '{"text"'), ("text", "text/plain", "Hello there."), ("srt", "application/x-subrip", "1\n00:00:00,000"),
     ("vtt", "text/vtt", "WEBVTT\n"), ("verbose_json", "application/json", '{"task"')],
)  # fmt: skip
def test_response_formats(
    client: TestClient, sentence_wav: Path, fmt: str, media_type: str, start: str
) -> None:
    response = post(client, sentence_wav.read_bytes(), response_format=fmt)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.text.startswith(start)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"response_format": "docx"}, "`response_format` must be one of"),
        ({"temperature": "hot"}, "`temperature` must be a number"),
        ({"temperature": "1.5"}, "between 0 and 1"),
        ({"stream": "true"}, "Streamed transcription is not supported"),
        ({"timestamp_granularities[]": "sentence"}, "'segment' and/or 'word'"),
        ({"language": "de"}, "English-only"),
    ],
)
def test_bad_fields_are_400(
    client: TestClient, engine: StandInEngine, sentence_wav: Path, fields: dict, needle: str
) -> None:
    response = post(client, sentence_wav.read_bytes(), **fields)
    assert response.status_code == 400
    assert needle in error(response)["message"]
    assert engine.calls == []


def test_translation_refused_by_an_english_only_model(
    client: TestClient, engine: StandInEngine, sentence_wav: Path
) -> None:
    response = post(client, sentence_wav.read_bytes(), path="/v1/audio/translations")
    assert response.status_code == 400
    body = error(response)
    assert body["code"] == "speech_unsupported" and "cannot translate" in body["message"]
    assert body["type"] == "invalid_request_error"


def test_translation_by_a_multilingual_model(sentence_wav: Path) -> None:
    engine = StandInEngine(multilingual=True)
    client = TestClient(Worker(engine, KEY, name="m", max_seconds=10, max_bytes=2**21))  # type: ignore[arg-type]
    response = post(client, sentence_wav.read_bytes(), path="/v1/audio/translations", language="de")
    assert response.status_code == 200
    assert engine.calls[0][1].task == "translate" and engine.calls[0][1].language is None  # no language there


def test_missing_file_is_400(client: TestClient) -> None:
    response = client.post("/v1/audio/transcriptions", headers=AUTH, data={"model": "m"})
    assert response.status_code == 400 and "needs a `file`" in error(response)["message"]
    response = client.post("/v1/audio/transcriptions", headers=AUTH, json={"model": "m"})
    assert response.status_code == 400


def test_bad_audio_is_400_and_the_worker_goes_on(client: TestClient, sentence_wav: Path) -> None:
    response = post(client, b"not audio at all" * 100)
    assert response.status_code == 400
    body = error(response)
    assert body["code"] == "bad_audio" and "'clip.wav'" in body["message"]
    assert post(client, sentence_wav.read_bytes()).status_code == 200


def test_too_long_audio_is_400(client: TestClient, paragraph_wav: Path) -> None:
    response = post(client, paragraph_wav.read_bytes())  # ~13 s, the limit here is 10 s
    assert response.status_code == 400 and error(response)["code"] == "audio_too_long"


def test_too_large_upload_is_413(client: TestClient) -> None:
    response = post(client, b"\x00" * (3 * 2**20))
    assert response.status_code == 413 and error(response)["code"] == "upload_too_large"


def test_too_large_upload_without_content_length_is_413(client: TestClient) -> None:
    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield b"\x00" * 2**17

    response = client.post("/v1/audio/transcriptions", headers={**AUTH, "content-type": "multipart/form-data; boundary=b"},
                           content=chunks())  # fmt: skip
    assert response.status_code == 413 and error(response)["code"] == "upload_too_large"


def test_engine_failure_is_500_and_the_worker_goes_on(
    client: TestClient, engine: StandInEngine, sentence_wav: Path
) -> None:
    engine.fail = RuntimeError("CTranslate2 ran out of memory")
    response = post(client, sentence_wav.read_bytes())
    assert response.status_code == 500
    body = error(response)
    assert (
        body["code"] == "engine_error"
        and "ran out of memory" in body["message"]
        and body["type"] == "server_error"
    )
    engine.fail = None
    assert post(client, sentence_wav.read_bytes()).status_code == 200


def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENDESK_SPEECH_KEY", "from-env")
    assert parse_args(["--model", "/m", "--port", "1234"]).key == "from-env"
    monkeypatch.delenv("QWENDESK_SPEECH_KEY")
    with pytest.raises(SystemExit) as info:
        parse_args(["--model", "/m", "--port", "1234"])
    assert info.value.code == 2


def test_speech_unsupported_is_a_bad_request() -> None:
    assert SpeechUnsupported("x").code == "speech_unsupported"
