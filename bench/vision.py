"""Image cost at a pixel budget on this machine (a measurement, not a test; bench material):

    flock /tmp/qwendesk-heavy.lock .venv/bin/python -m bench.vision --tower 2b

For a 4032x3024 phone-sized photo (JPEG) it reports, per budget: qwendesk's own preparation time
(decode, downscale, re-encode), the image tokens, and llama.cpp's prompt time for the image minus the same
text without it (the vision encode; the tiny text model adds next to nothing). `--tower 2b` uses
Qwen2-VL-2B's real vision tower shape (random weights, 1.3 GB written to --folder once); `tiny` the
test fixture's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from qwendesk.daemon.vision.images import DEFAULT_MAX_PIXELS, ImageLimits, prepare_images
from tests.daemon.vision.imagefiles import chat, data_url, encode, image_part, pattern
from tests.fixtures.vision import QWEN2VL_2B_VISION, VISION, image_tokens, write_qwen2vl_pair


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tower", choices=["tiny", "2b"], default="tiny")
    ap.add_argument("--budgets", default=f"{64 * 784},{256 * 784},{DEFAULT_MAX_PIXELS}")
    ap.add_argument("--folder", default=str(Path.home() / ".cache" / "qwendesk-test" / "vision"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import xllamacpp

    folder = Path(args.folder) / args.tower
    stem = f"Qwen2-VL-{args.tower}-tower"
    model, mmproj = folder / f"{stem}-Q8_0.gguf", folder / f"mmproj-{stem}-f16.gguf"
    if not (model.exists() and mmproj.exists()):
        write_qwen2vl_pair(folder, stem=stem, vision=QWEN2VL_2B_VISION if args.tower == "2b" else VISION)
    p = xllamacpp.CommonParams()
    p.model.path, p.mmproj.path = str(model), str(mmproj)
    p.n_ctx, p.n_parallel, p.use_jinja, p.cache_ram_mib, p.n_gpu_layers = 4096, 1, True, 0, 0
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = args.threads
    started = time.perf_counter()
    srv = xllamacpp.Server(p)
    print(json.dumps({"tower": args.tower, "load_s": round(time.perf_counter() - started, 2)}), flush=True)

    def run(body: dict) -> dict:
        return srv.handle_chat_completions({**body, "max_tokens": 1, "temperature": 0})

    photo = data_url(encode(pattern(4032, 3024), "JPEG", quality=90), "image/jpeg")
    # one small image first: the first encode also pages the projector's weights in from disk
    run(prepare_images(chat(image_part(photo), text="warm up"), ImageLimits(max_pixels=8 * 784))[0])
    for n, budget in enumerate(int(b) for b in args.budgets.split(",")):
        text = run(chat(text=f"describe {n}"))  # a fresh prompt each time: no prompt-cache reuse
        t = time.perf_counter()
        body, (note,) = prepare_images(
            chat(image_part(photo), text=f"describe {n}"), ImageLimits(max_pixels=budget)
        )
        prepare_s = time.perf_counter() - t
        reply = run(body)
        added = reply["usage"]["prompt_tokens"] - text["usage"]["prompt_tokens"] - 2
        row = {
            "budget_px": budget,
            "sent_size": note.size,
            "image_tokens": added,
            "expected_tokens": image_tokens(*note.size),
            "prepare_ms": round(prepare_s * 1000),
            "encode_ms": round(reply["timings"]["prompt_ms"] - text["timings"]["prompt_ms"]),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
