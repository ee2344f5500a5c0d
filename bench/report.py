"""The markdown table (ratios against raw llama.cpp first), and the throughput-versus-concurrency chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import metrics

COLUMNS = ("a", "a-http", "b", "c", "d", "d0")
SHORT = {
    "a": "a: raw xllamacpp",
    "a-http": "a-http: its llama-server",
    "b": "b: llama-cpp-python",
    "c": "c: Xinference",
    "d": "d: qwendesk",
    "d0": "d0: qwendesk, Xinference as shipped",
}
MiB = 2**20


def add_summaries(result: dict[str, Any]) -> None:
    """Per model: each system's figures, the ratios against (a), and qwendesk's target verdicts."""
    life = result.get("lifecycle") or {}
    idle = life.get("idle_after_rss") or (max(life["idle_fresh_rss"]) if life.get("idle_fresh_rss") else None)
    idle_mib = idle / MiB if idle else None
    for m in result["models"].values():
        m["summary"] = {k: metrics.summarize_system(v) for k, v in m["raw"].items()}
        m["vs_a"] = metrics.compare(m["summary"])
        m["targets"] = metrics.verdicts(m["vs_a"].get("d", {}), idle_mib)
    result["run_targets"] = metrics.run_verdicts(cold_over_load(result), _mib_of(xinference_idle(result)))


def cold_over_load(result: dict[str, Any]) -> float | None:
    """The cold path's first token minus raw llama.cpp's load of the same (first) model in this run."""
    cold = (result.get("lifecycle") or {}).get("cold_first_token_s")
    first = next(iter(result["models"].values()), None)
    load = first["summary"].get("a", {}).get("load_s") if first else None
    return None if cold is None or load is None else cold - load


def xinference_idle(result: dict[str, Any]) -> int | None:
    """PSS of qwendesk's embedded Xinference with no model (every process but the daemon), bytes."""
    return (result.get("startup") or {}).get("d", {}).get("xinference_idle_pss")


def _mib_of(x: float | None) -> float | None:
    return None if not x else x / MiB


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def _cell(value: float | None, ratio: float | None, fmt: str = "{:.1f}", rfmt: str = " ({:.2f}×)") -> str:
    if value is None:
        return "–"
    return fmt.format(value) + ("" if ratio is None else rfmt.format(ratio))


def _verdict(v: dict[str, Any], fmt: str) -> str:
    if v["value"] is None:
        return "not measured"
    mark = "✅" if v["met"] else "❌"
    return f"{mark} {fmt.format(v['value'])}"


def model_table(key: str, m: dict[str, Any], labels: dict[str, str]) -> str:
    cols = [c for c in COLUMNS if c in m["summary"]]
    s, r, t = m["summary"], m["vs_a"], m["targets"]
    lines = [
        f"### {m['label']}  (`{Path(m['file']).name}`, {m['size_bytes'] / MiB:.0f} MiB)",
        "",
        "| metric | " + " | ".join(SHORT.get(c, c) for c in cols) + " | qwendesk target |",
        "|---|" + "---|" * len(cols) + "---|",
    ]

    def row(name: str, cells: list[str], target: str = "") -> None:
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {target} |")

    row("decode tok/s, client (×a)", [_cell(s[c]["decode_tps"], r[c]["decode_ratio"]) for c in cols],
        _verdict(t["decode_ratio"], "{:.2f}× (≥ 0.97×)"))  # fmt: skip
    row("decode tok/s, client, best round (×a)",
        [_cell(s[c]["decode_tps_best"], r[c]["decode_ratio_best"]) for c in cols])  # fmt: skip
    row("decode tok/s, engine timings (×a)",
        [_cell(s[c]["decode_tps_engine"], r[c]["decode_ratio_engine"]) for c in cols])  # fmt: skip
    row(f"prompt tok/s, client, {_f(s['a']['prompt_tokens'], '{:.0f}')}-token prompt (×a)",
        [_cell(s[c]["prefill_tps"], r[c]["prefill_ratio"]) for c in cols],
        _verdict(t["prefill_ratio"], "{:.2f}× (≥ 0.97×)"))  # fmt: skip
    row("prompt tok/s, client, best round (×a)",
        [_cell(s[c]["prefill_tps_best"], r[c]["prefill_ratio_best"]) for c in cols])  # fmt: skip
    row("prompt tok/s, engine timings (×a)",
        [_cell(s[c]["prefill_tps_engine"], r[c]["prefill_ratio_engine"]) for c in cols])  # fmt: skip
    row("TTFT p50 ms (+ms over a)",
        [_cell(s[c]["ttft_p50_ms"], r[c]["ttft_overhead_ms"], "{:.0f}", " (+{:.0f})") for c in cols],
        _verdict(t["ttft_overhead_ms"], "+{:.0f} ms (≤ +20 ms)"))  # fmt: skip
    row(
        "TTFT p95 ms (+ms over a)",
        [_cell(s[c]["ttft_p95_ms"], r[c]["ttft_p95_overhead_ms"], "{:.0f}", " (+{:.0f})") for c in cols],
    )
    levels = sorted({int(lvl) for c in cols for lvl in s[c]["aggregate_tps"]})
    for lvl in levels:
        target = _verdict(t["scaling_4"], "{:.2f}× of 1 client (≥ 2×)") if lvl == 4 else ""
        row(f"aggregate tok/s, {lvl} client{'s' if lvl > 1 else ''} (×a)",
            [_cell(s[c]["aggregate_tps"].get(str(lvl)), r[c]["aggregate_ratio"].get(str(lvl))) for c in cols],
            target)  # fmt: skip
    row("launch → first token, s (a: load only)",
        [_f(s[c]["load_s"] if c == "a" else s[c]["launch_s"], "{:.2f}") for c in cols],
        _verdict(t["launch_over_load_s"], "load + {:.2f} s (≤ + 2 s)"))  # fmt: skip
    row("RSS loaded, after the workload, MiB (×a)",
        [_cell(s[c]["rss_after_mib"], r[c]["rss_ratio"], "{:.0f}") for c in cols])  # fmt: skip
    row("PSS loaded, after the workload, MiB (+MiB over a's RSS)",
        [_cell(s[c].get("pss_after_mib"), r[c].get("pss_over_a_mib"), "{:.0f}", " ({:+.0f})") for c in cols],
        _verdict(t["tree_over_raw_mib"], "raw + {:.0f} MiB (≤ + 400)"))  # fmt: skip
    return "\n".join(lines)


def lifecycle_table(result: dict[str, Any]) -> str:
    life = result.get("lifecycle") or {}
    start = result.get("startup") or {}
    lines = [
        "### Start-up and footprint",
        "",
        "| | qwendesk (d) | Xinference alone (c) | target |",
        "|---|---|---|---|",
    ]
    health = metrics.median(life.get("health_s", []))
    c = start.get("c", {})
    d = start.get("d", {})
    mib = lambda x: None if not x else x / MiB  # noqa: E731
    idle_after = mib(life.get("idle_after_rss"))
    run = result.get("run_targets") or {}
    colds = life.get("cold_first_token_s_all") or []
    spread = f" (range {min(colds):.1f}–{max(colds):.1f}, n={len(colds)})" if len(colds) > 1 else ""
    d0 = start.get("d0", {})
    stock = lambda key: f"; Xinference as shipped (d0): {_f(mib(d0.get(key)), '{:.0f}')}" if d0 else ""  # noqa: E731
    lines += [
        f"| daemon start → `/health` answers, s (median of {len(life.get('health_s', []))}) | {_f(health, '{:.2f}')} | – | |",
        f"| start → Xinference ready, s | {_f(d.get('startup_s'), '{:.1f}')} (eager) | {_f(c.get('startup_s'), '{:.1f}')} | |",
        f"| RSS idle, fresh (no Xinference yet), MiB | {_f(mib(max(life.get('idle_fresh_rss') or [0])), '{:.0f}')} | – | ≤ 80 |",
        f"| RSS with Xinference up, no model, MiB | {_f(mib(d.get('idle_rss')), '{:.0f}')} | {_f(mib(c.get('idle_rss')), '{:.0f}')} | |",
        f"| … PSS of the same tree, MiB | {_f(mib(d.get('idle_pss')), '{:.0f}')} | – | |",
        f"| embedded Xinference alone (no daemon), no model: RSS / PSS, MiB | {_f(mib(d.get('xinference_idle_rss')), '{:.0f}')} / {_f(mib(d.get('xinference_idle_pss')), '{:.0f}')}{stock('xinference_idle_pss')} | – | {_verdict(run['xinference_idle_pss_mib'], 'PSS {:.0f} (≤ 300)') if run else ''} |",
        f"| cold `/v1` request → first token (starts Xinference + model), s | {_f(life.get('cold_first_token_s'), '{:.1f}')}{spread} | – | |",
        f"| … minus raw llama.cpp's load of the same model (a), s | {_f(run.get('cold_over_load_s', {}).get('value'), '{:+.1f}')} | – | {_verdict(run['cold_over_load_s'], 'load + {:.1f} s (≤ + 6 s)') if run else ''} |",
        f"| RSS / PSS with the model loaded (cold start), MiB | {_f(mib(life.get('loaded_rss')), '{:.0f}')} / {_f(mib(life.get('loaded_pss')), '{:.0f}')} | – | |",
        f"| RSS after keep-alive stopped model + Xinference, MiB | {_f(idle_after, '{:.0f}')} | – | ≤ 80 |",
        f"| … of which the daemon process itself, MiB | {_f(mib(life.get('daemon_only_after_rss')), '{:.0f}')} | – | |",
    ]
    return "\n".join(lines)


def headline(result: dict[str, Any]) -> str:
    """One line per model: qwendesk against raw llama.cpp."""
    out = [
        "| model | decode ×a | prompt ×a | TTFT p50 +ms | 4-client scaling | launch − raw load, s | tree − raw, MiB (PSS) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in result["models"].values():
        t = m["targets"]
        out.append(
            f"| {m['label']} | {_verdict(t['decode_ratio'], '{:.2f}')} | {_verdict(t['prefill_ratio'], '{:.2f}')} | "
            f"{_verdict(t['ttft_overhead_ms'], '{:+.0f}')} | {_verdict(t['scaling_4'], '{:.2f}×')} | "
            f"{_verdict(t['launch_over_load_s'], '{:+.2f}')} | {_verdict(t['tree_over_raw_mib'], '{:+.0f}')} |"
        )
    return "\n".join(out)


def _load(result: dict[str, Any], key: str) -> str:
    value = result.get(key)
    return f"{value[0]:.2f}" if value else "–"


def _background(result: dict[str, Any]) -> str:
    """How busy the machine was just before the measured requests (other runnable tasks, median)."""
    values = [s.get("background_median") for m in result["models"].values() for s in m["summary"].values()]
    values = [v for v in values if v is not None]
    if not values:
        return ""
    return (
        f"other runnable tasks just before each measured request: median {metrics.median(values):.2f} "
        f"(shared machine; {result.get('waited_s') or 0:.0f} s spent waiting for quiet)."
    )


def markdown(result: dict[str, Any]) -> str:
    mach = result["machine"]
    cfg = result["config"]
    parts = [
        f"## qwendesk benchmark, {result['started']}{' (quick mode)' if cfg['quick'] else ''}",
        "",
        f"Machine: {mach['cpu']}, {mach['physical_cores']} physical / {mach['logical_cores']} logical cores, "
        f"{mach['ram_gib']} GiB, {mach['platform']}. Load average at start {_load(result, 'load_at_start')}, "
        f"at end {_load(result, 'load_at_end')}; {_background(result)} Versions: "
        + ", ".join(f"{k} {v}" for k, v in mach["versions"].items() if v)
        + ".",
        "",
        f"Same GGUF, {cfg['n_threads']} threads, {cfg['n_ctx']} context per slot, prompt cache {cfg['cache_ram_mib']} MiB, "
        f"greedy, fixed length (`ignore_eos`; b: end tokens banned by `logit_bias`), a random prefix per request. "
        f"Medians of {cfg['rounds']} interleaved rounds; decode {cfg['decode_tokens']} tokens; TTFT over "
        f"{cfg['ttft_requests']} requests; concurrency {cfg['conc_tokens']} tokens per client with n_parallel = "
        f"{max(cfg['levels'])}. Ratios (×) are against a, raw llama.cpp in-process: they carry across machines.",
        "",
        "**qwendesk against raw llama.cpp (targets):**",
        "",
        headline(result),
        "",
    ]
    if result.get("lifecycle") or result.get("startup"):
        parts += [lifecycle_table(result), ""]
    for key, m in result["models"].items():
        parts += [model_table(key, m, result.get("labels", {})), ""]
    parts += [NOTES, ""]
    return "\n".join(parts)


NOTES = """Notes. a-http is the llama-server inside a's own xllamacpp.Server: qwendesk's `/v1` proxies to exactly
this server, so d − a-http is the daemon's own cost and a-http − a the cost of HTTP/SSE in llama.cpp.
The engine-timings rows come from llama.cpp itself (no transport can change them): where they move between
columns as much as the client-side rows, the difference is the machine, not the system. b (llama-cpp-python)
streams no usage or timings; its prompt length is taken from a, and on random-weight files its client-side
decode rate is not meaningful (it holds back text that is not yet valid UTF-8 and releases it in a burst).
b serves one request at a time, so its concurrency rows show queueing. Where a target is missed or the
numbers disagree, bench/FINDINGS.md says by how much and why."""


def chart(result: dict[str, Any], path: Path) -> None:
    """Aggregate decode tokens/s against concurrent clients, one panel per model, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["models"].items())
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for ax, (_key, m) in zip(axes[0], models, strict=True):
        for c in COLUMNS:
            s = m["summary"].get(c)
            if not s:
                continue
            pts = sorted((int(lvl), v) for lvl, v in s["aggregate_tps"].items() if v)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=SHORT[c])
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent streaming clients")
        ax.set_ylabel("aggregate decode tokens/s")
        ax.set_title(m["label"], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Throughput vs concurrency ({result['machine']['physical_cores']} cores, {result['started']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge(paths: list[Path]) -> dict[str, Any]:
    """Several runs' results as one (models side by side; start-up figures from the first run that has them)."""
    import json

    runs = [json.loads(p.read_text()) for p in paths]
    out = dict(runs[0])
    out["models"] = {}
    out["merged_from"] = [r["started"] for r in runs]
    for r in runs:
        out["models"].update(r["models"])
        for key in ("lifecycle", "startup"):
            if not out.get(key) and r.get(key):
                out[key] = r[key]
        out["load_at_end"] = r.get("load_at_end", out.get("load_at_end"))
        out["labels"] = {**r.get("labels", {}), **out.get("labels", {})}
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report RUN.json… [-o PREFIX]`: rebuild (or merge) the table and chart."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("-o", "--out", default="latest", help="name in bench/results (default: latest)")
    a = p.parse_args(argv)
    result = merge(a.runs)
    add_summaries(result)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{a.out}.json").write_text(json.dumps(result, indent=1, default=str))
    table = markdown(result)
    (results / f"{a.out}.md").write_text(table)
    chart(result, results / f"{a.out}.png")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
