"""From raw records to the numbers in the table: medians, percentiles, ratios against raw llama.cpp (a)."""

from __future__ import annotations

import statistics
from typing import Any

MiB = 2**20

# The targets for qwendesk (d), checked against system (a) of the same run.
TARGETS = {
    "decode_ratio": 0.97,  # decode tokens/s >= 0.97 x raw
    "prefill_ratio": 0.97,  # prompt tokens/s >= 0.97 x raw
    "ttft_overhead_ms": 20.0,  # p50 time to first token - raw p50 <= 20 ms
    "launch_over_load_s": 2.0,  # launch to first token <= raw load + 2 s
    "idle_rss_mib": 80.0,  # whole tree, no model loaded
    "scaling_4": 2.0,  # 4 clients aggregate >= 2 x 1 client
    "tree_over_raw_mib": 400.0,  # whole tree (PSS) with one model loaded - raw llama.cpp's RSS <= 400 MiB
}
# Targets of the run as a whole (lifecycle), checked against system (a) of the first model.
RUN_TARGETS = {
    "cold_over_load_s": 6.0,  # cold /v1 request (Xinference stopped) to first token <= raw load + 6 s
    "xinference_idle_pss_mib": 300.0,  # embedded Xinference, no model (supervisor, worker, fork server)
}


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def best(values: list[float | None]) -> float | None:
    """The fastest round: background load on a shared machine only ever slows a run down."""
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def percentile(values: list[float | None], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    pos = (len(vals) - 1) * q / 100.0
    lo, hi = int(pos), min(int(pos) + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def ratio(x: float | None, base: float | None) -> float | None:
    return None if x is None or not base else x / base


def summarize_system(raw: dict[str, Any]) -> dict[str, Any]:
    """One system's measurements on one model -> the figures the table shows."""
    dec, pre, ttft = raw["decode"], raw["prefill"], raw["ttft"]
    s: dict[str, Any] = {
        "decode_tps": median([r["decode_tps"] for r in dec]),
        "decode_tps_best": best([r["decode_tps"] for r in dec]),
        "decode_tps_engine": median([r["timings"].get("predicted_per_second") for r in dec]),
        "decode_tokens": median([r["tokens"] for r in dec]),
        "prefill_tps": median([r["prompt_tps"] for r in pre]),
        "prefill_tps_best": best([r["prompt_tps"] for r in pre]),
        "prefill_tps_engine": median([r["timings"].get("prompt_per_second") for r in pre]),
        "prompt_tokens": median([r["prompt_tokens"] for r in pre]),
        "ttft_p50_ms": _ms(percentile([r["ttft"] for r in ttft], 50)),
        "ttft_p95_ms": _ms(percentile([r["ttft"] for r in ttft], 95)),
        "ttft_n": sum(1 for r in ttft if r["ttft"] is not None),
        "errors": sum(1 for r in dec + pre + ttft if r["error"]),
        "background_median": median([r.get("bg") for r in dec + pre + ttft]),
        "aggregate_tps": {
            str(level): median([b["aggregate_tps"] for b in batches])
            for level, batches in raw["concurrency"].items()
        },
        "launch_s": median([x.get("launch_s") for x in raw["launch"]]),
        "load_s": median([x.get("load_s") for x in raw["launch"]]),
        "rss_loaded_mib": _mib(max(raw["rss"].get("loaded", [0]) or [0])),
        "rss_after_mib": _mib(max(raw["rss"].get("after", [0]) or [0])),
        "pss_loaded_mib": _mib(max(raw.get("pss", {}).get("loaded", [0]) or [0])),
        "pss_after_mib": _mib(max(raw.get("pss", {}).get("after", [0]) or [0])),
    }
    return s


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000.0


def _mib(x: int | None) -> float | None:
    return None if not x else x / MiB


def compare(summary: dict[str, dict[str, Any]], base: str = "a") -> dict[str, dict[str, Any]]:
    """Ratios and overheads of every system against `base`."""
    a = summary.get(base)
    out: dict[str, dict[str, Any]] = {}
    if not a:
        return out
    for key, s in summary.items():
        agg1 = s["aggregate_tps"].get("1")
        out[key] = {
            "decode_ratio": ratio(s["decode_tps"], a["decode_tps"]),
            "decode_ratio_engine": ratio(s["decode_tps_engine"], a["decode_tps_engine"]),
            "decode_ratio_best": ratio(s["decode_tps_best"], a["decode_tps_best"]),
            "prefill_ratio_best": ratio(s["prefill_tps_best"], a["prefill_tps_best"]),
            "prefill_ratio": ratio(s["prefill_tps"], a["prefill_tps"]),
            "prefill_ratio_engine": ratio(s["prefill_tps_engine"], a["prefill_tps_engine"]),
            "ttft_overhead_ms": _diff(s["ttft_p50_ms"], a["ttft_p50_ms"]),
            "ttft_p95_overhead_ms": _diff(s["ttft_p95_ms"], a["ttft_p95_ms"]),
            "launch_over_load_s": _diff(s["launch_s"], a["load_s"]),
            "aggregate_ratio": {
                lvl: ratio(v, a["aggregate_tps"].get(lvl)) for lvl, v in s["aggregate_tps"].items()
            },
            "scaling_4": ratio(s["aggregate_tps"].get("4"), agg1),
            "rss_ratio": ratio(s["rss_after_mib"], a["rss_after_mib"]),
            "rss_over_a_mib": _diff(s["rss_after_mib"], a["rss_after_mib"]),
            "pss_over_a_mib": _diff(s["pss_after_mib"], a["rss_after_mib"]),
        }
    return out


def _diff(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else x - y


def verdicts(cmp_d: dict[str, Any], idle_rss_mib: float | None) -> dict[str, dict[str, Any]]:
    """Each target for qwendesk: the measured value, the target, and whether it is met."""
    values = {
        "decode_ratio": cmp_d.get("decode_ratio"),
        "prefill_ratio": cmp_d.get("prefill_ratio"),
        "ttft_overhead_ms": cmp_d.get("ttft_overhead_ms"),
        "launch_over_load_s": cmp_d.get("launch_over_load_s"),
        "idle_rss_mib": idle_rss_mib,
        "scaling_4": cmp_d.get("scaling_4"),
        "tree_over_raw_mib": cmp_d.get("pss_over_a_mib"),
    }
    higher_is_better = {"decode_ratio", "prefill_ratio", "scaling_4"}
    out = {}
    for name, value in values.items():
        target = TARGETS[name]
        met = None if value is None else (value >= target if name in higher_is_better else value <= target)
        out[name] = {"value": value, "target": target, "met": met}
    return out


def run_verdicts(cold_over_load_s: float | None, xinference_idle_pss_mib: float | None) -> dict[str, Any]:
    """The lifecycle targets (lower is better for both)."""
    values = {"cold_over_load_s": cold_over_load_s, "xinference_idle_pss_mib": xinference_idle_pss_mib}
    return {
        name: {"value": v, "target": RUN_TARGETS[name], "met": None if v is None else v <= RUN_TARGETS[name]}
        for name, v in values.items()
    }
