"""Speech to text: faster-whisper driven directly vs through the qwendesk speech worker's HTTP endpoint.

    python -m bench.speech [--rounds 5] [--model DIR] [--threads 2] [--json PATH]

Same audio (espeak-ng speech: a 4.5 s sentence and a ~60 s passage, as WAV), same model folder, same
options (beam 5, temperature fallback, no VAD, int8 on CPU, same thread count). Rounds are interleaved and
alternate which side goes first. The real-time factor is audio seconds / wall seconds (higher is faster); the
headline is worker RTF / direct RTF per round (median), target >= 0.95. Direct includes faster-whisper's own
decoding of the file; the worker's includes the upload, PyAV decoding and the JSON answer. Also reported: the
worker's RSS idle (after load) and its peak while transcribing. Run it under `flock /tmp/qwendesk-heavy.lock`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from tests.daemon.speech.conftest import start_worker
from tests.daemon.speech.media import PASSAGE, SENTENCES, fetch_whisper_tiny_en, speak, wer

FALLBACK = (
    0.0,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
)  # the worker's temperature=0 schedule (engine.FALLBACK_TEMPERATURES)


class PeakRSS:
    """Samples a process's RSS every 20 ms while in use; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()

    def __enter__(self) -> PeakRSS:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def direct(model, wav: Path) -> tuple[float, str]:
    """(wall seconds, text) for faster-whisper on the file, as the worker calls it."""
    started = time.perf_counter()
    segments, _ = model.transcribe(str(wav), temperature=FALLBACK, vad_filter=False)
    text = "".join(s.text for s in segments).strip()
    return time.perf_counter() - started, text


def through_worker(client: httpx.Client, url: str, wav: Path) -> tuple[float, str]:
    """(wall seconds, text) for one POST /v1/audio/transcriptions, the file read and sent each time."""
    started = time.perf_counter()
    response = client.post(
        f"{url}/v1/audio/transcriptions",
        data={"model": "bench", "response_format": "json"},
        files={"file": (wav.name, wav.read_bytes(), "audio/wav")},
    )
    response.raise_for_status()
    return time.perf_counter() - started, response.json()["text"]


def audio_seconds(wav: Path) -> float:
    import wave

    with wave.open(str(wav), "rb") as w:
        return w.getnframes() / w.getframerate()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--model", type=Path, default=None, help="a faster-whisper folder (default: tiny.en)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    from faster_whisper import WhisperModel

    model_dir = args.model or fetch_whisper_tiny_en()
    work = Path(tempfile.mkdtemp(prefix="qwendesk-bench-speech-"))
    clips = {
        "sentence": speak(SENTENCES[0], work / "sentence.wav"),
        "passage": speak(PASSAGE, work / "passage.wav"),
    }
    references = {"sentence": SENTENCES[0], "passage": PASSAGE}
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=args.threads)
    worker = start_worker(model_dir, work / "worker.log", "--threads", str(args.threads), "--device", "cpu",
                          "--log-level", "warning")  # fmt: skip
    results: dict = {"model": str(model_dir), "threads": args.threads, "rounds": args.rounds, "clips": {}}
    try:
        idle_rss = psutil.Process(worker.proc.pid).memory_info().rss
        client = httpx.Client(headers=worker.headers(), timeout=600)
        with PeakRSS(worker.proc.pid) as peak:
            for name, wav in clips.items():
                seconds = audio_seconds(wav)
                direct(model, wav), through_worker(client, worker.url, wav)  # warm-up, not counted
                rows = []
                for r in range(args.rounds):
                    order = ("direct", "worker") if r % 2 == 0 else ("worker", "direct")
                    timing = {}
                    for side in order:
                        wall, text = (
                            direct(model, wav)
                            if side == "direct"
                            else through_worker(client, worker.url, wav)
                        )
                        timing[side] = (wall, text)
                    rows.append(timing)
                rtf_d = [seconds / t["direct"][0] for t in rows]
                rtf_w = [seconds / t["worker"][0] for t in rows]
                results["clips"][name] = {
                    "audio_seconds": round(seconds, 2),
                    "direct_rtf_median": round(statistics.median(rtf_d), 2),
                    "worker_rtf_median": round(statistics.median(rtf_w), 2),
                    "ratio_median_of_rounds": round(
                        statistics.median(w / d for w, d in zip(rtf_w, rtf_d, strict=True)), 3
                    ),
                    "direct_rtf": [round(x, 2) for x in rtf_d],
                    "worker_rtf": [round(x, 2) for x in rtf_w],
                    "same_text": all(t["direct"][1] == t["worker"][1] for t in rows),
                    "wer_worker": round(wer(references[name], rows[-1]["worker"][1]), 3),
                }
        results["worker_rss_idle_mib"] = round(idle_rss / 2**20, 1)
        results["worker_rss_peak_mib"] = round(peak.peak / 2**20, 1)
        results["bench_process_rss_mib"] = round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1)
        results["load_average_1m"] = round(os.getloadavg()[0], 2)
    finally:
        worker.stop()

    print("| clip | audio s | direct RTF | worker RTF | worker/direct | same text | WER |")
    print("|---|---|---|---|---|---|---|")
    for name, c in results["clips"].items():
        print(f"| {name} | {c['audio_seconds']} | {c['direct_rtf_median']}x | {c['worker_rtf_median']}x | "
              f"{c['ratio_median_of_rounds']:.3f} | {c['same_text']} | {c['wer_worker']} |")  # fmt: skip
    print(f"worker RSS: idle {results['worker_rss_idle_mib']} MiB, peak {results['worker_rss_peak_mib']} MiB; "
          f"load average {results['load_average_1m']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
