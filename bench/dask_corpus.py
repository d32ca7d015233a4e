"""Corpus-scale counting on Dask against the single-machine function.

    python bench/dask_corpus.py [--tokens 1e8] [--vocab 100000] [--chunk 1e7]
                                [--json bench/results/DATE-dask.json]

A synthetic Zipf corpus (exponent 1.07 over ``--vocab`` ranks, int32 ids)
is written once to ``$TMPDIR/fastroute-zipf-N-V.npy``. Then, each in a fresh
process or a fresh cluster, with the kernels loaded from Numba's cache
before the clock starts:

* ``fastroute.cooccurrence`` on the memory-mapped file, with 1 and with 2
  Numba threads, and the pipeline after it (normalize_rows, entropy,
  top_entropy, related);
* ``fastroute.dask`` on ``LocalCluster``s of 1 and of 2 worker processes,
  one Dask thread and one Numba thread each: the count (wall time, and the
  task time of the per-chunk counts and of the row-block sums), then each
  stage of the pipeline on the row blocks.

Peak memory is each process's maximum resident set (``ru_maxrss``), so it
includes the interpreter, NumPy, SciPy and Numba (about 0.2 GB). The counts
of every run are checked against each other (nnz and checksums).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

WINDOW = 2
RELATED_ROWS = 100  # the most uncertain tokens, and their 10 most related


def corpus(n: int, vocab: int) -> str:
    path = os.path.join(tempfile.gettempdir(), f"fastroute-zipf-{n}-{vocab}.npy")
    if os.path.exists(path):
        return path
    rng = np.random.default_rng(2026)
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1) ** 1.07)
    cdf /= cdf[-1]
    out = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype=np.int32, shape=(n,))
    step = 10_000_000
    for s in range(0, n, step):
        e = min(s + step, n)
        out[s:e] = np.searchsorted(cdf, rng.random(e - s))
    out.flush()
    del out
    os.replace(path + ".tmp", path)
    return path


def _peak_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def _checksum(C) -> list[int]:
    return [int(C.nnz), int(C.data.sum()), int((C.indices.astype(np.int64) * C.data).sum())]


def single(path: str, vocab: int) -> dict:
    """One process: the single-machine pipeline (run in a subprocess)."""
    import fastroute as fr

    ids = np.load(path, mmap_mode="r")
    fr.related(fr.cooccurrence(np.asarray(ids[:100_000]), vocab), [0], 1)  # kernels loaded
    fr.top_entropy(fr.normalize_rows(fr.cooccurrence(np.asarray(ids[:200_000]), vocab)), 5)
    t = {}
    t0 = time.perf_counter()
    C = fr.cooccurrence(ids, vocab, window=WINDOW)
    t["count"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    P = fr.normalize_rows(C)
    t["normalize_rows"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    h = fr.entropy(P, axis=1)
    t["entropy"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    best = fr.top_k(h, RELATED_ROWS)
    t["top_entropy"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fr.related(C, best.indices, 10, measure="ppmi", cds=0.75)
    t["related"] = time.perf_counter() - t0
    return {"times_s": t, "peak_gb": _peak_gb(), "checksum": _checksum(C),
            "top": best.indices.tolist()}  # fmt: skip


def _warm(path: str, vocab: int) -> None:
    # the pipeline on a small slice, in this worker, with its thread count
    import dask

    import fastroute.dask as frd
    from fastroute.dask._base import _Limited

    def run():
        with dask.config.set(scheduler="synchronous"):
            ids = frd.read_ids(path, chunks=50_000)[:200_000]
            C = frd.cooccurrence(ids, vocab, row_blocks=3).persist()
            dask.compute(frd.top_entropy(frd.normalize_rows(C), 5),
                         frd.related(C, [0], 1, measure="ppmi", cds=0.75))  # fmt: skip

    _Limited(run)()


def on_dask(path: str, vocab: int, workers: int, chunk: int) -> dict:
    import dask
    import dask.array as da
    from dask.utils import key_split
    from distributed import Client, get_task_stream

    import fastroute.dask as frd

    with (
        frd.local_cluster(workers, numba_threads=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        # load the kernels in every worker before the clock starts (each
        # worker runs the whole pipeline once, then the cluster does)
        client.run(_warm, path, vocab)
        warm = frd.read_ids(path, chunks=50_000)[:200_000]
        C0 = frd.cooccurrence(warm, vocab).persist()
        dask.compute(
            frd.top_entropy(frd.normalize_rows(C0), 5),
            frd.related(C0, [0], 1, measure="ppmi", cds=0.75),
        )
        t = {}
        ids = frd.read_ids(path, chunks=chunk)
        t0 = time.perf_counter()
        freq = da.bincount(ids, minlength=vocab).compute()  # balances the row blocks
        t["frequency"] = time.perf_counter() - t0
        with get_task_stream() as ts:
            t0 = time.perf_counter()
            C = frd.cooccurrence(ids, vocab, window=WINDOW, row_weights=freq).persist()
            t["count"] = time.perf_counter() - t0
        busy: dict[str, float] = {}
        for task in ts.data:
            prefix = key_split(task["key"])
            span = sum(
                s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute"
            )
            busy[prefix] = busy.get(prefix, 0.0) + span
        t0 = time.perf_counter()
        P = frd.normalize_rows(C).persist()
        t["normalize_rows"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        h = frd.row_entropy(P).persist()
        from distributed import wait

        wait(h)
        t["entropy"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        (best,) = dask.compute(frd.top_entropy(P, RELATED_ROWS))
        t["top_entropy"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dask.compute(frd.related(C, best.indices, 10, measure="ppmi", cds=0.75))
        t["related"] = time.perf_counter() - t0
        whole = C.compute()
        peaks = client.run(_peak_gb)
    return {"times_s": t, "task_s": busy, "peak_gb_per_worker": sorted(peaks.values()),
            "checksum": _checksum(whole), "top": best.indices.tolist()}  # fmt: skip


def _subprocess(args: list[str], env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=float, default=1e8)
    ap.add_argument("--vocab", type=int, default=100_000)
    ap.add_argument("--chunk", type=float, default=1e7)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--_single", help=argparse.SUPPRESS)
    ap.add_argument("--_dask", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    n, chunk = int(a.tokens), int(a.chunk)
    if a._single:
        print(json.dumps(single(a._single, a.vocab)))
        return
    if a._dask:
        print(json.dumps(on_dask(corpus(n, a.vocab), a.vocab, a._dask, chunk)))
        return
    t0 = time.perf_counter()
    path = corpus(n, a.vocab)
    print(f"corpus: {n:,} tokens, vocabulary {a.vocab:,}, {path} "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)  # fmt: skip
    runs = {}
    for threads in (1, 2):
        env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
        runs[f"single, {threads} thread{'s' * (threads > 1)}"] = _subprocess(
            ["--_single", path, "--vocab", str(a.vocab)], env
        )
        print(f"single machine, {threads} threads: done", file=sys.stderr)
    for workers in (1, 2):
        runs[f"dask, {workers} worker{'s' * (workers > 1)}"] = _subprocess(
            ["--_dask", str(workers), "--tokens", str(n), "--vocab", str(a.vocab),
             "--chunk", str(chunk)], dict(os.environ),
        )  # fmt: skip
        print(f"dask, {workers} workers: done", file=sys.stderr)
    sums = {json.dumps(r["checksum"]) for r in runs.values()}
    tops = {json.dumps(r["top"]) for r in runs.values()}
    assert len(sums) == 1 and len(tops) == 1, "the runs disagree"
    import fastroute

    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "fastroute": fastroute.__version__},
        "tokens": n, "vocab": a.vocab, "chunk": chunk, "window": WINDOW,
        "date": time.strftime("%Y-%m-%d"), "runs": runs,
    }  # fmt: skip
    print(render(result))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


def render(r: dict) -> str:
    runs = r["runs"]
    n = r["tokens"]
    lines = [
        f"{n:,} Zipf tokens, vocabulary {r['vocab']:,}, window {r['window']}, "
        f"chunks of {r['chunk']:,} tokens; {r['runs']['single, 1 thread']['checksum'][0]:,} "
        "stored pairs",
        "",
        "| run | count | tokens/s | normalize_rows | entropy | top_entropy | related | peak memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, x in runs.items():
        t = x["times_s"]
        peak = x.get("peak_gb_per_worker") or [x["peak_gb"]]
        mem = (
            " / ".join(f"{p:.2f}" for p in peak)
            + " GiB"
            + (" per worker" if "dask" in name else "")
        )
        lines.append(
            f"| {name} | {t['count']:.2f} s | {n / t['count'] / 1e6:.1f} M | "
            f"{t['normalize_rows']:.2f} s | {t['entropy']:.2f} s | {t['top_entropy']:.2f} s | "
            f"{t['related']:.2f} s | {mem} |"
        )
    one, two = runs["dask, 1 worker"], runs["dask, 2 workers"]
    s1 = runs["single, 1 thread"]["times_s"]["count"]
    lines += [
        "",
        f"count: 2 workers / 1 worker = {one['times_s']['count'] / two['times_s']['count']:.2f}x "
        f"faster; Dask 1 worker / single machine 1 thread = {one['times_s']['count'] / s1:.2f}x "
        f"(the token frequencies that balance the row blocks: {one['times_s']['frequency']:.2f} s "
        f"with 1 worker, {two['times_s']['frequency']:.2f} s with 2, not included)",
    ]
    for name in ("dask, 1 worker", "dask, 2 workers"):
        busy = runs[name]["task_s"]
        top = sorted(busy.items(), key=lambda kv: -kv[1])[:4]
        lines.append(f"{name}: task time " + ", ".join(f"{k} {v:.2f} s" for k, v in top))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
