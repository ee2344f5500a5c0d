"""faster-whisper behind one call: a model folder loaded once, audio samples in, a Transcript out."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SpeechUnsupported
from .transcript import Segment, Transcript, Word

# OpenAI's rule for `temperature` 0 (the default): start greedy, retry hotter when a window's text fails the
# compression-ratio or log-probability checks. These are whisper's and faster-whisper's own fallback steps.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class Cancelled(Exception):
    """The request was abandoned (client gone, or the worker is stopping) between two segments."""


@dataclass(frozen=True)
class Options:
    """What one request asks for, already checked."""

    task: str = "transcribe"  # or "translate"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False


def default_threads() -> int:
    """The CPUs this process may use (CTranslate2 would take 4, too many on a 2-core machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


class SpeechEngine:
    """A faster-whisper model; `transcribe` may be called from any thread, one call runs at a time."""

    def __init__(self, folder: Path, *, device: str = "auto", threads: int = 0) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        self.device = device
        # int8 weights: a quarter of float32's memory and the fastest CPU kernels; on CUDA, the model's own type.
        self.compute_type = "int8" if device == "cpu" else "default"
        self.threads = threads or default_threads()
        self.folder = folder
        self.model = WhisperModel(
            str(folder),
            device=device,
            compute_type=self.compute_type,
            cpu_threads=self.threads,
            num_workers=1,
        )
        self.languages: list[str] = self.model.supported_languages
        self.multilingual = bool(self.model.model.is_multilingual)
        self._lock = threading.Lock()  # one transcription at a time: bounded memory, all cores for each
        self.active = False  # a transcription holds the lock

    def check(self, options: Options) -> None:
        """SpeechUnsupported when this model cannot do what `options` ask."""
        if options.task == "translate" and not self.multilingual:
            raise SpeechUnsupported(
                f"{self.folder.name} is an English-only Whisper model: it cannot translate. "
                "Use a multilingual Whisper model (one without `.en` in its name) for /v1/audio/translations."
            )
        if options.language is not None and options.language not in self.languages:
            if not self.multilingual:
                raise SpeechUnsupported(
                    f"{self.folder.name} is an English-only Whisper model; it cannot transcribe "
                    f"'{options.language}'. Send `language=en` (or none), or use a multilingual Whisper model."
                )
            raise SpeechUnsupported(
                f"'{options.language}' is not a language {self.folder.name} knows; give an ISO 639-1 code "
                f"such as {', '.join(self.languages[:8])}, or leave `language` out to have it detected."
            )

    def transcribe(
        self, samples: np.ndarray, options: Options, cancel: threading.Event | None = None
    ) -> Transcript:
        """Transcribe (or translate) 16 kHz mono float32 `samples`; Cancelled when `cancel` is set meanwhile."""
        self.check(options)
        cancel = cancel or threading.Event()
        with self._lock:
            self.active = True
            try:
                return self._run(samples, options, cancel)
            finally:
                self.active = False

    def _run(self, samples: np.ndarray, options: Options, cancel: threading.Event) -> Transcript:
        if cancel.is_set():
            raise Cancelled()
        segments, info = self.model.transcribe(
            samples,
            task=options.task,
            language=options.language,
            initial_prompt=options.prompt or None,
            temperature=FALLBACK_TEMPERATURES if options.temperature == 0 else options.temperature,
            word_timestamps=options.word_timestamps,
            vad_filter=False,  # OpenAI's API has no such switch; silence is transcribed as nothing
        )
        out: list[Segment] = []
        words: list[Word] = []
        for s in segments:  # a generator: segments come as each 30 s window is decoded
            if cancel.is_set():
                raise Cancelled()
            out.append(
                Segment(
                    id=len(out),
                    seek=int(s.seek),
                    start=float(s.start),
                    end=float(s.end),
                    text=s.text,
                    tokens=[int(t) for t in s.tokens],
                    temperature=float(s.temperature or 0.0),
                    avg_logprob=float(s.avg_logprob),
                    compression_ratio=float(s.compression_ratio),
                    no_speech_prob=float(s.no_speech_prob),
                )
            )
            words += [Word(word=w.word, start=float(w.start), end=float(w.end)) for w in s.words or ()]
        return Transcript(
            task=options.task,
            language=info.language,
            duration=float(info.duration),
            segments=out,
            words=words if options.word_timestamps else None,
        )
