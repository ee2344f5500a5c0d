"""Speech to text: faster-whisper driven directly vs through the speech worker's HTTP API vs through the daemon.

    python -m bench.speech [--rounds 5] [--model DIR] [--threads 2] [--json PATH] [--no-daemon]

Same audio (espeak-ng speech: a 4.5 s sentence and a ~60 s passage, as WAV), same model folder, same
options (beam 5, temperature fallback, no VAD, int8 on CPU, same thread count). Three sides: `direct`
(faster-whisper in this process), `worker` (a speech worker started by hand, as before) and `daemon` (a real
`qwendesk serve` with the model in its models folder: /v1/audio/transcriptions, which forwards the upload to
the worker the daemon started on demand). Rounds are interleaved and rotate which side goes first. The
real-time factor is audio seconds / wall seconds (higher is faster); the headlines are worker RTF / direct RTF
and daemon RTF / direct RTF per round (median), target >= 0.95. Direct includes faster-whisper's own decoding
of the file; the others include the upload, PyAV decoding and the JSON answer, the daemon's one more hop.
Also reported: the worker's RSS idle (after load) and its peak while transcribing. Run it under
`flock /tmp/qwendesk-heavy.lock`.
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

from tests.conftest import DaemonProcess, free_port
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


def through_http(client: httpx.Client, url: str, wav: Path, model: str = "bench") -> tuple[float, str]:
    """(wall seconds, text) for one POST /v1/audio/transcriptions, the file read and sent each time."""
    started = time.perf_counter()
    response = client.post(
        f"{url}/v1/audio/transcriptions",
        data={"model": model, "response_format": "json"},
        files={"file": (wav.name, wav.read_bytes(), "audio/wav")},
    )
    response.raise_for_status()
    return time.perf_counter() - started, response.json()["text"]


def audio_seconds(wav: Path) -> float:
    import wave

    with wave.open(str(wav), "rb") as w:
        return w.getnframes() / w.getframerate()


def start_daemon(model_dir: Path, work: Path, threads: int) -> tuple[DaemonProcess, str]:
    """A real daemon with the model folder (hard links) in its models folder; returns it and the model name."""
    daemon = DaemonProcess(
        work / "daemon-home",
        free_port(),
        {"QWENDESK_KEEP_ALIVE": "0", "QWENDESK_N_THREADS": str(threads), "QWENDESK_LOG_LEVEL": "warning"},
    )
    target = daemon.models_dir / model_dir.name
    target.mkdir(parents=True)
    for f in model_dir.iterdir():
        os.link(f, target / f.name)
    daemon.start()
    name = next(m["name"] for m in daemon.client.models() if m.get("kind") == "speech")
    return daemon, name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--model", type=Path, default=None, help="a faster-whisper folder (default: tiny.en)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--no-daemon", action="store_true", help="leave out the side through the daemon")
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
    daemon = None
    try:
        idle_rss = psutil.Process(worker.proc.pid).memory_info().rss
        client = httpx.Client(headers=worker.headers(), timeout=600)
        sides = {
            "direct": lambda wav: direct(model, wav),
            "worker": lambda wav: through_http(client, worker.url, wav),
        }
        if not args.no_daemon:
            daemon, name_in_daemon = start_daemon(model_dir, work, args.threads)
            to_daemon = httpx.Client(timeout=600)
            sides["daemon"] = lambda wav: through_http(to_daemon, daemon.url, wav, name_in_daemon)
        with PeakRSS(worker.proc.pid) as peak:
            for name, wav in clips.items():
                seconds = audio_seconds(wav)
                for run in sides.values():  # warm-up (the daemon's starts its worker), not counted
                    run(wav)
                rows = []
                for r in range(args.rounds):
                    order = list(sides)[r % len(sides) :] + list(sides)[: r % len(sides)]
                    rows.append({side: sides[side](wav) for side in order})
                rtf = {side: [seconds / row[side][0] for row in rows] for side in sides}
                clip: dict = {"audio_seconds": round(seconds, 2)}
                for side in sides:
                    clip[f"{side}_rtf_median"] = round(statistics.median(rtf[side]), 2)
                    clip[f"{side}_rtf"] = [round(x, 2) for x in rtf[side]]
                for side in sides:
                    if side != "direct":
                        ratios = (w / d for w, d in zip(rtf[side], rtf["direct"], strict=True))
                        clip[f"{side}_vs_direct_median_of_rounds"] = round(statistics.median(ratios), 3)
                        clip[f"{side}_same_text"] = all(row["direct"][1] == row[side][1] for row in rows)
                        clip[f"wer_{side}"] = round(wer(references[name], rows[-1][side][1]), 3)
                results["clips"][name] = clip
        results["worker_rss_idle_mib"] = round(idle_rss / 2**20, 1)
        results["worker_rss_peak_mib"] = round(peak.peak / 2**20, 1)
        results["bench_process_rss_mib"] = round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1)
        results["load_average_1m"] = round(os.getloadavg()[0], 2)
    finally:
        worker.stop()
        if daemon is not None:
            daemon.stop()

    others = [s for s in ("worker", "daemon") if f"{s}_rtf_median" in next(iter(results["clips"].values()))]
    print(
        "| clip | audio s | direct RTF | "
        + " | ".join(f"{s} RTF | {s}/direct | same text | WER" for s in others)
        + " |"
    )
    print("|---|---|---|" + "---|---|---|---|" * len(others))
    for name, c in results["clips"].items():
        cells = [f"{c[f'{s}_rtf_median']}x | {c[f'{s}_vs_direct_median_of_rounds']:.3f} | {c[f'{s}_same_text']} | "
                 f"{c[f'wer_{s}']}" for s in others]  # fmt: skip
        print(f"| {name} | {c['audio_seconds']} | {c['direct_rtf_median']}x | " + " | ".join(cells) + " |")
    print(f"worker RSS: idle {results['worker_rss_idle_mib']} MiB, peak {results['worker_rss_peak_mib']} MiB; "
          f"load average {results['load_average_1m']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
