"""The command line: ``python -m fastroute analyze`` end to end, and its errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import entr

from fastroute.app.cli import main
from fastroute.app.corpus import load_corpus
from fastroute.pipeline import tokenize


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def counts_ref(ids: np.ndarray, vocab: int, window: int) -> sp.csr_array:
    """Symmetric co-occurrence counts via SciPy (independent of fastroute)."""
    rows = [ids[:-d] for d in range(1, window + 1)]
    cols = [ids[d:] for d in range(1, window + 1)]
    i, j = np.concatenate(rows + cols), np.concatenate(cols + rows)
    return sp.csr_array(sp.coo_array((np.ones(i.size), (i, j)), shape=(vocab, vocab)))


def entropy_bits_ref(C: sp.csr_array) -> np.ndarray:
    sums = np.asarray(C.sum(axis=1)).ravel()
    h = np.full(C.shape[0], np.nan)
    for r in range(C.shape[0]):
        row = C.data[C.indptr[r] : C.indptr[r + 1]]
        if row.size:
            h[r] = entr(row / sums[r]).sum() / np.log(2)
    return h


def pmi_ref(
    C: sp.csr_array, r: int, min_count: float, cds: float = 1.0, positive: bool = False
) -> dict[int, float]:
    """PMI of row r's pairs, the column sums raised to ``cds`` (1: plain PMI)."""
    rs = np.asarray(C.sum(axis=1)).ravel()
    cs = np.asarray(C.sum(axis=0)).ravel() ** cds
    n = cs.sum()
    out = {}
    for p in range(C.indptr[r], C.indptr[r + 1]):
        j, c = int(C.indices[p]), C.data[p]
        if c >= min_count and j != r:
            s = float(np.log(c * n / (rs[r] * cs[j])))
            if s > 0 or not positive:
                out[j] = s
    return out


def test_tokenize_lowercases_words_and_ranks_by_frequency():
    ids, vocab, freq = tokenize("Don't STOP, don't!  the_end 42 Élan élan")
    assert vocab == ["don't", "élan", "end", "stop", "the"]
    assert freq.tolist() == [2, 2, 1, 1, 1]
    assert ids.tolist() == [0, 3, 0, 4, 2, 1, 1]


def test_analyze_embedded_corpus_matches_a_scipy_reference(capsys):
    code, out, err = run(capsys, "analyze", "-k", "5", "--related", "3", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["source"]["title"] == "Pride and Prejudice"
    ids, vocab, freq = tokenize(load_corpus())
    assert res["tokens"] == ids.size and res["vocabulary_size"] == len(vocab)
    C = counts_ref(ids, len(vocab), 2)
    assert res["stored_pairs"] == C.nnz
    h = entropy_bits_ref(C)
    expect = np.argsort(-np.nan_to_num(h, nan=-1.0), kind="stable")[:5]
    assert [row["id"] for row in res["top"]] == expect.tolist()
    for row in res["top"]:
        i = row["id"]
        assert row["token"] == vocab[i] and row["frequency"] == freq[i]
        assert row["entropy_bits"] == pytest.approx(h[i], rel=1e-12)
        # the default: positive PMI with context-distribution smoothing 0.75
        ref = pmi_ref(C, i, 3, cds=0.75, positive=True)
        best = sorted(ref, key=lambda j, ref=ref: (-ref[j], j))[:3]
        assert [r["score"] for r in row["related"]] == pytest.approx(
            [ref[j] for j in best], rel=1e-12
        )
        assert [r["id"] for r in row["related"]] == best
        for r in row["related"]:
            assert r["score"] == pytest.approx(ref[r["id"]], rel=1e-12)
            assert r["token"] == vocab[r["id"]]
    assert set(res["timings_s"]) >= {"tokenize", "cooccurrence", "top_entropy", "related"}
    assert res["params"]["measure"] == "ppmi" and res["params"]["cds"] == 0.75
    assert res["params"]["frequency"] == "occurrences"
    code, out, err = run(capsys, "analyze", "-k", "2", "--related", "2")
    assert "related by positive PMI with context-distribution smoothing 0.75" in out
    assert "   count  related" in out and "count: occurrences in the text" in out


def kl_bits_ref(C: sp.csr_array) -> np.ndarray:
    """D(P(. | i) || P(.)) in bits, P(.) the column sums: scipy.stats.entropy."""
    from scipy.stats import entropy

    dense = C.toarray().astype(np.float64)
    ctx = dense.sum(axis=0)
    return np.array([entropy(row, ctx, base=2) if row.any() else np.nan for row in dense])


def test_analyze_by_kl_matches_a_scipy_reference(capsys):
    code, out, err = run(capsys, "analyze", "--by", "kl", "-k", "6", "--related", "2", "--json")
    assert code == 0, err
    res = json.loads(out)
    ids, vocab, freq = tokenize(load_corpus())
    C = counts_ref(ids, len(vocab), 2)
    d = kl_bits_ref(C)
    d[freq < 20] = np.nan  # the default --min-frequency of --by kl
    expect = np.argsort(-np.nan_to_num(d, nan=-1.0), kind="stable")[:6]
    assert [row["id"] for row in res["top"]] == expect.tolist()
    for row in res["top"]:
        assert row["kl_bits"] == pytest.approx(d[row["id"]], rel=1e-12)
        assert row["frequency"] >= 20
    assert res["params"]["by"] == "kl" and res["params"]["min_frequency"] == 20
    assert "top_kl" in res["timings_s"]
    # a frequency threshold of 1: the words seen once come first
    code, out, err = run(capsys, "analyze", "--by", "kl", "-k", "3", "--min-frequency", "1")
    assert code == 0, err
    assert "most specific tokens" in out and "D bits" in out
    d1 = kl_bits_ref(C)
    first = vocab[int(np.argsort(-np.nan_to_num(d1, nan=-1.0), kind="stable")[0])]
    assert re.search(rf"^ +1  {first} ", out, re.M)
    code, out, err = run(capsys, "analyze", "--min-frequency", "-1")
    assert code == 2 and "--min-frequency must be >= 0" in err
    from fastroute.pipeline import analyze_counts

    with pytest.raises(ValueError, match="by must be 'entropy' or 'kl'"):
        analyze_counts(C, None, by="pmi")


def test_analyze_text_file_plain_and_json(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("The cat sat on the mat. The cat ran; the dog sat.\n", encoding="utf-8")
    code, out, err = run(capsys, "analyze", str(f), "-k", "2", "--related", "2",
                         "--measure", "conditional", "--min-count", "1")  # fmt: skip
    assert code == 0, err
    assert "rank" in out and "time:" in out and "the" in out
    code, out, _ = run(capsys, "analyze", str(f), "-k", "2", "--related", "2", "--json",
                       "--measure", "conditional", "--min-count", "1", "--window", "1")  # fmt: skip
    res = json.loads(out)
    ids, vocab, _ = tokenize(f.read_text())
    C = counts_ref(ids, len(vocab), 1)
    h = entropy_bits_ref(C)
    top = res["top"]
    assert [t["id"] for t in top] == np.argsort(-h, kind="stable")[:2].tolist()
    # the 4 "the" have 7 neighbours at distance 1: cat x2, on, mat x2, ran, dog;
    # P(cat | the) = P(mat | the) = 2/7, cat first (equal scores: lower id)
    the = next(t for t in top if t["token"] == "the")
    assert vocab.index("cat") < vocab.index("mat")
    assert the["related"] == [
        {"token": "cat", "id": vocab.index("cat"), "score": 2 / 7},
        {"token": "mat", "id": vocab.index("mat"), "score": 2 / 7},
    ]
    assert res["params"]["window"] == 1


def test_analyze_npz_with_vocabulary(tmp_path, capsys):
    C = sp.csr_array(np.array([[0, 4, 1], [4, 0, 2], [1, 2, 0]], dtype=np.int64))
    sp.save_npz(tmp_path / "c.npz", C)
    (tmp_path / "v.txt").write_text("alpha\nbeta\ngamma\n", encoding="utf-8")
    code, out, err = run(capsys, "analyze", str(tmp_path / "c.npz"), "--vocab",
                         str(tmp_path / "v.txt"), "-k", "3", "--measure", "conditional",
                         "--min-count", "1", "--json")  # fmt: skip
    assert code == 0, err
    res = json.loads(out)
    h = entropy_bits_ref(C)
    assert [t["token"] for t in res["top"]] == [
        ["alpha", "beta", "gamma"][i] for i in np.argsort(-h, kind="stable")
    ]
    gamma = next(t for t in res["top"] if t["token"] == "gamma")
    assert gamma["frequency"] == 3
    assert res["params"]["frequency"] == "row sum"  # not token counts: say so
    code, out, err = run(capsys, "analyze", str(tmp_path / "c.npz"), "-k", "2")
    assert "  row sum  related" in out and "row sum: row sums of the count matrix" in out
    assert [r["token"] for r in gamma["related"]] == ["beta", "alpha"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-file.txt"], "no such file"),
        (["-k", "0"], "-k must be >= 1"),
        (["--window", "0"], "--window must be >= 1"),
        (["--min-count", "0"], "--min-count must be > 0"),
        (["--vocab", "v.txt"], "--vocab applies to .npz input only"),
        # issue 27 item 8: every option, before any work (each ran or crashed before)
        ([""], "an empty FILE name"),
        (["x.npz", "--vocab", ""], "--vocab needs a file name"),
        (["--min-count", "inf"], "--min-count must be > 0 and finite"),
        (["--min-count", "nan"], "--min-count must be > 0 and finite"),
        (["--min-frequency", "inf"], "--min-frequency must be >= 0 and finite"),
        (["--related", "-1"], "--related must be >= 0"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--workers", "-5"], "--workers must be >= 1"),
        (["--workers", "x"], "invalid int value"),
        (["--scheduler", "bogus-address"], "is not host:port"),
        (["--scheduler", ""], "--scheduler needs the address of a Dask scheduler"),
        (["--scheduler", "  "], "--scheduler needs the address of a Dask scheduler"),
        (["--scheduler", "tcp://"], "is not host:port"),
        (["--scheduler", "tcp://:8786"], "is not host:port"),
        (["--scheduler", "tcp://host:0"], "the port must be a number from 1 to 65535"),
        (["--scheduler", "tcp://host:65536"], "the port must be a number from 1 to 65535"),
        (["--scheduler", "tcp://host:http"], "the port must be a number from 1 to 65535"),
        (["--scheduler", "htp://host:8786"], "unknown protocol 'htp'"),
        (["--workers", "2", "--scheduler", "tcp://h:1"], "not allowed with argument"),
    ],
)
def test_analyze_errors_are_one_line(capsys, args, message):
    code, out, err = run(capsys, "analyze", *args)
    assert code == 2
    assert out == ""
    assert message in err and err.count("\n") == 1


def test_analyze_bad_files(tmp_path, capsys):
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_text("not a matrix")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00 abc")
    one = tmp_path / "one.txt"
    one.write_text("word")
    C = sp.csr_array(np.eye(3))
    sp.save_npz(tmp_path / "c.npz", C)
    (tmp_path / "short.txt").write_text("a\nb\n")
    neg = sp.csr_array(np.array([[0.0, -1.0], [1.0, 0.0]]))
    sp.save_npz(tmp_path / "neg.npz", neg)
    cases = [
        ([str(bad_npz)], "cannot read a sparse matrix"),
        ([str(binary)], "is not UTF-8 text"),
        ([str(one)], "need at least 2"),
        ([str(tmp_path)], "is a directory"),
        ([str(tmp_path / "c.npz"), "--vocab", str(tmp_path / "short.txt")], "names 2 tokens"),
        ([str(tmp_path / "neg.npz")], "must be finite and >= 0"),
    ]
    for args, message in cases:
        code, out, err = run(capsys, "analyze", *args)
        assert code == 2, (args, err)
        assert message in err and err.count("\n") == 1, (args, err)


def test_analyze_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "fastroute", "analyze", "-k", "2", "--related", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert len(res["top"]) == 2 and len(res["top"][0]["related"]) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "fastroute", "analyze", "no-such-file"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_analyze_says_when_it_clamps(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("the cat sat on the mat\n", encoding="utf-8")
    code, out, err = run(capsys, "analyze", str(f), "-k", str(10**12), "--related", "2",
                         "--window", str(10**12), "--min-count", "1", "--json")  # fmt: skip
    assert code == 0, err
    res = json.loads(out)  # stdout stays clean JSON
    assert res["params"]["k"] == 5 and res["params"]["window"] == 5
    assert f"note: -k {10**12} is more than the 5 token types; using 5" in err
    assert f"note: --window {10**12} is more than the text's 6 words allow; using 5" in err
    ids, vocab, _ = tokenize(f.read_text())
    C = counts_ref(ids, len(vocab), 5)
    assert res["stored_pairs"] == C.nnz


def test_analyze_vocabulary_must_match(tmp_path, capsys):
    sp.save_npz(tmp_path / "c.npz", sp.csr_array(np.eye(3)))
    (tmp_path / "long.txt").write_text("a\nb\nc\nd\n")
    code, out, err = run(capsys, "analyze", str(tmp_path / "c.npz"), "--vocab",
                         str(tmp_path / "long.txt"))  # fmt: skip
    assert code == 2 and out == ""
    assert "names 4 tokens but the matrix is 3 x 3" in err and "exactly one line" in err


def test_bench_list_and_unknown_cases(capsys):
    code, out, _ = run(capsys, "bench", "--list", "--cases", "route_stats")
    assert code == 0 and "route_stats 65536x8 k=2 bfloat16" in out
    code, _, err = run(capsys, "bench", "--cases", "no-such-case")
    assert code == 2 and "no case" in err


def test_bench_threading_layer_runs_in_a_child(monkeypatch, capsys):
    """--threading-layer never changes this process's layer: the run happens
    in a child process with NUMBA_THREADING_LAYER set."""
    import fastroute.app.cli as cli

    seen = {}

    def fake_run(cmd, env):
        seen.update(cmd=cmd, layer=env["NUMBA_THREADING_LAYER"])
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.delenv("_FASTROUTE_BENCH_CHILD", raising=False)
    argv = ["bench", "--quick", "--cases", "top_k 1x8", "--threading-layer", "workqueue"]
    assert cli.main(argv) == 0
    assert seen["layer"] == "workqueue"
    assert seen["cmd"][1:] == ["-m", "fastroute", *argv]


def test_bench_in_a_chosen_layer_end_to_end():
    cmd = [sys.executable, "-m", "fastroute", "bench", "--quick", "--json", "--budget", "0.01",
           "--cases", "entropy 1x8", "--threading-layer", "workqueue"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["environment"]["threading_layer"] == "workqueue"
    roles = {r["role"] for r in out["results"]}
    assert {"fastroute", "read_floor", "compute_floor"} <= roles
    fr_rec = next(r for r in out["results"] if r["role"] == "fastroute")
    assert fr_rec["ratio_stat"] == "median" and fr_rec["compute_floor_ratio"] > 0


def test_a_bug_shows_its_traceback(monkeypatch, capsys):
    """User errors are one line; an unexpected exception keeps its traceback."""
    import fastroute.pipeline as A

    def broken(*args, **kwargs):
        raise ZeroDivisionError("an internal slip")

    monkeypatch.setattr(A, "analyze_tokens", broken)
    code, _, err = run(capsys, "analyze")
    assert code == 1
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err
    assert "internal error" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--measure", "conditional", "--cds", "0.75"], "--cds applies to --measure pmi or ppmi"),
        (["--measure", "npmi", "--cds", "0.5"], "--cds applies"),
        (["--cds", "0"], r"--cds must be in \(0, 1\]"),
        (["--measure", "pmi", "--cds", "1.5"], r"--cds must be in \(0, 1\]"),
    ],
)
def test_analyze_cds_errors(capsys, args, message):
    code, _, err = run(capsys, "analyze", *args)
    assert code == 2 and re.search(message, err), err


def test_analyze_reports_compile_time_apart():
    """A stage's time excludes what Numba spent compiling during it, which is
    reported as "compile" (a fresh function compiles inside the stage)."""
    import time

    import numba

    from fastroute.pipeline import stage

    @numba.njit
    def slow_to_compile(x):
        return x + 1

    timings: dict[str, float] = {}
    t = time.perf_counter()
    with stage("work", timings):
        slow_to_compile(1)
    wall = time.perf_counter() - t
    assert timings["compile"] > 0
    assert timings["work"] >= 0 and timings["work"] + timings["compile"] == pytest.approx(
        wall, abs=0.05
    )
    with stage("again", timings):  # compiled already: nothing more is compiling
        slow_to_compile(2)
    assert timings["again"] < timings["compile"]


def test_analyze_runs_without_dask():
    # the default path never imports Dask; --workers says what to install
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['dask'] = sys.modules['distributed'] = None\n"
        "from fastroute.app.cli import main\n"
        "assert main(['analyze', '-k', '3', '--json']) == 0\n"
        "assert 'dask' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
        "assert main(['analyze', '-k', '3', '--workers', '2']) == 2\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "need Dask and Distributed, not installed: pip install 'fastroute[dask]'" in out.stderr


# --------------------------------------------------------------------------- issue 27


def one_line_error(code: int, out: str, err: str) -> None:
    assert code == 2, err
    assert out == "" and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err


def test_workers_are_bounded_by_the_usable_cores(monkeypatch, capsys):
    """--workers 10**6 starts at most one worker process per usable core,
    with a note on stderr, before anything starts (item 8)."""
    import fastroute.app.cli as cli

    seen = {}

    def fake_dask(args, paths, opts, timings):
        seen["workers"] = args.workers
        raise cli.CLIError("stopped by the test before starting a cluster")

    monkeypatch.setattr(cli, "_analyze_dask", fake_dask)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    code, out, err = run(capsys, "analyze", "--workers", str(10**6))
    assert code == 2 and "stopped by the test" in err
    assert seen["workers"] == cores
    assert f"note: --workers {10**6} is more than the {cores} usable core" in err
    assert f"using {cores}" in err
    code, out, err = run(capsys, "analyze", "--workers", "1")
    assert seen["workers"] == 1 and "note:" not in err


def test_scheduler_address_is_checked_before_dask_is_imported():
    """A malformed --scheduler address is a one-line error, exit 2, and
    Dask is never imported for it (item 8: it was Distributed's traceback)."""
    code = (
        "import sys\n"
        "from fastroute.app.cli import main\n"
        "for a in ('bogus-address', '', 'tcp://nohost'):\n"
        "    assert main(['analyze', '--scheduler', a]) == 2, a\n"
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 3 and all(
        x.startswith("fastroute analyze: error: --scheduler") for x in lines
    )


def test_analyze_without_scipy_says_what_to_install(monkeypatch, capsys):
    """A plain install has no SciPy: analyze says what to install, in one
    line, before reading anything (item 13: it was an "internal error")."""
    for name in ("scipy", "scipy.sparse"):
        monkeypatch.setitem(sys.modules, name, None)
    one_line_error(*run(capsys, "analyze", "-k", "2"))
    code, out, err = run(capsys, "analyze", "-k", "2")
    assert "analyze needs SciPy, which is not installed: pip install scipy" in err
    code, out, err = run(capsys, "analyze", "--workers", "1")
    one_line_error(code, out, err)
    assert "need SciPy" in err and "pip install 'fastroute[dask]'" in err


def test_analyze_huge_declared_matrix_is_an_error(tmp_path, capsys):
    """A .npz may declare any shape: a 2**40 x 2**40 matrix with one entry is
    refused before allocating (it was a MemoryError, "internal error")."""
    A = sp.coo_array((np.array([1.0]), (np.array([0]), np.array([1]))), shape=(2**40, 2**40))
    sp.save_npz(tmp_path / "huge.npz", A)
    code, out, err = run(capsys, "analyze", str(tmp_path / "huge.npz"))
    one_line_error(code, out, err)
    assert "huge.npz" in err and "GiB, more than this machine's" in err


def squash(text: str) -> str:
    return " ".join(text.split())  # argparse wraps --help at the terminal's width


def test_analyze_says_what_it_counts(tmp_path, capsys):
    """The counts of a text are symmetric (neighbours on both sides within the
    window): the header, --help and --json say P(neighbour | token), window ±W,
    not P(next | token); a count matrix is P(column | row) (item 12)."""
    code, out, _ = run(capsys, "analyze", "--help")
    assert code == 0
    help_text = squash(out)
    assert "P(next" not in help_text
    assert "P(neighbour | token), window ±W" in help_text
    assert "the W tokens before and the W after each token" in help_text
    f = tmp_path / "t.txt"
    f.write_text("the cat sat on the mat the cat ran\n", encoding="utf-8")
    base = ["analyze", str(f), "-k", "2", "--related", "1", "--min-count", "1"]
    code, out, err = run(capsys, *base, "--window", "3")
    assert code == 0, err
    assert "highest-entropy tokens of P(neighbour | token) (window ±3, entropy in bits)" in out
    assert "P(next" not in out
    code, out, err = run(capsys, *base, "--by", "kl", "--min-frequency", "1")
    assert "D(P(neighbour | token) || P(neighbour)) (window ±2, bits" in out
    code, out, err = run(capsys, *base, "--json")
    res = json.loads(out)
    assert res["distribution"] == "P(neighbour | token), window ±2"
    assert res["score"] == "H(P(neighbour | token)) in bits"
    assert res["params"]["window"] == 2
    # truthful: "sat" is counted as a neighbour of "cat" and "cat" of "sat"
    ids, vocab, _ = tokenize(f.read_text())
    C = counts_ref(ids, len(vocab), 2)
    cat, sat = vocab.index("cat"), vocab.index("sat")
    assert C[cat, sat] == C[sat, cat] > 0
    sp.save_npz(tmp_path / "c.npz", sp.csr_array(np.array([[0, 2], [1, 0]])))
    code, out, err = run(capsys, "analyze", str(tmp_path / "c.npz"), "--json", "--by", "kl",
                         "--min-frequency", "0")  # fmt: skip
    res = json.loads(out)
    assert res["distribution"] == "P(column | row)"
    assert res["score"] == "D(P(column | row) || P(column)) in bits"
    code, out, err = run(capsys, "analyze", str(tmp_path / "c.npz"))
    assert "highest-entropy tokens of P(column | row) (entropy in bits)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "inf"], "--budget must be a positive, finite number"),
        (["--budget", "nan"], "--budget must be a positive, finite number"),
        (["--budget", "0"], "--budget must be a positive, finite number"),
        (["--budget", "-1"], "--budget must be a positive, finite number"),
        (["--cases", ""], "--cases needs a pattern"),
        (["--cases", " , "], "--cases needs a pattern"),
        (["--threads", "0"], "--threads must be between 1 and"),
        (["--threads", str(10**6)], "--threads must be between 1 and"),
        (["--stat", "mean"], "invalid choice"),
        (["--threading-layer", "bogus"], "invalid choice"),
    ],
)
def test_bench_option_errors_are_one_line(capsys, args, message):
    # --list: an option that was accepted would only list the cases
    code, out, err = run(capsys, "bench", "--list", *args)
    one_line_error(code, out, err)
    assert message in err


def tiny(case):
    """A benchmark case at a shape the test suite runs in milliseconds."""
    import dataclasses

    return dataclasses.replace(case, shape=(min(case.shape[0], 300), case.shape[1]))


def test_bench_skips_a_case_whose_dtype_library_is_missing(monkeypatch):
    """Without ml_dtypes the bfloat16 cases are skipped with a note; the
    cases before and after them keep their results (item 13: a crash at case
    27 of 29 threw away 26 results)."""
    from fastroute import _bench as B

    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    picked = [c for c in B.CASES if c.op == "route_select" and c.shape[1] == 8 and c.k == 2]
    assert {c.dtype for c in picked} == {"float32", "bfloat16"}
    cases = [tiny(c) for c in sorted(picked, key=lambda c: c.dtype)]  # bfloat16 first
    cases.append(tiny(next(c for c in B.CASES if c.op == "top_k" and c.shape == (1, 8))))
    results, notes = B.run_cases(cases, budget=0.001)
    timed = {(r["op"], r["dtype"]) for r in results if r["role"] == "fastroute" and "min_s" in r}
    assert timed == {("route_select", "float32"), ("top_k", "float32")}
    assert not any(r.get("error") for r in results)
    assert any(n.startswith("ml_dtypes not installed: skipped 1 case (route_select")
               and n.endswith("pip install ml_dtypes") for n in notes), notes  # fmt: skip


def test_bench_skips_a_case_whose_import_fails(monkeypatch):
    """A module that is installed but fails to import (or one a case forgot to
    declare) is a skipped case too, never a crash of the run."""
    from fastroute import _bench as B
    from fastroute._bench import measure

    real = measure.make_input

    def make_input(case, seed=0):
        if case.op == "entropy":
            raise ModuleNotFoundError("No module named 'somelib'", name="somelib")
        return real(case, seed)

    monkeypatch.setattr(measure, "make_input", make_input)
    cases = [tiny(c) for c in B.CASES if c.shape == (1, 8) and c.op in ("entropy", "top_k")]
    results, notes = B.run_cases(cases, budget=0.001)
    assert {r["op"] for r in results if r["role"] == "fastroute"} == {"top_k"}
    assert any(n.startswith("somelib not installed: skipped 1 case (entropy 1x8)") for n in notes)


def test_bench_without_the_needed_library_says_so_before_starting(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    code, out, err = run(capsys, "bench", "--cases", "route_select 65536x8 k=2 bfloat16")
    one_line_error(code, out, err)
    assert "need ml_dtypes, not installed: pip install ml_dtypes" in err
    code, out, err = run(capsys, "bench", "--list", "--cases", "route_select 65536x8 k=2")
    assert "route_select 65536x8 k=2 bfloat16  [needs ml_dtypes]" in out


def test_bench_interrupted_shows_what_it_measured(monkeypatch, capsys):
    """Ctrl-C during the run prints the results measured so far (exit 130)."""
    from fastroute._bench import measure

    real = measure.make_input

    def make_input(case, seed=0):
        if case.op == "entropy":  # the second case: Ctrl-C while building its input
            raise KeyboardInterrupt
        return real(case, seed)

    monkeypatch.setattr(measure, "make_input", make_input)
    monkeypatch.setitem(sys.modules, "torch", None)  # no peers: a cheap run
    monkeypatch.setitem(sys.modules, "jax", None)
    code, out, err = run(capsys, "bench", "--json", "--budget", "0.001", "--cases",
                         "top_k 1x8,entropy 1x8")  # fmt: skip
    assert code == 130 and err.endswith("fastroute bench: interrupted\n"), err
    res = json.loads(out)
    assert any(r["op"] == "top_k" and r["role"] == "fastroute" and r["min_s"] > 0
               for r in res["results"])  # fmt: skip
    assert not any(r["op"] == "entropy" for r in res["results"])
    assert any(n.startswith("interrupted during case 2 of 3 (entropy 1x8)") for n in res["notes"])


def test_plain_install_without_optional_libraries():
    """Both commands as after `pip install .` (no SciPy, ml_dtypes, PyTorch,
    JAX or matplotlib): analyze says what to install; bench measures what it
    can, names what it skipped, and exits 0 (item 13)."""
    code = (
        "import sys\n"
        "for m in ('scipy', 'ml_dtypes', 'torch', 'jax', 'matplotlib'):\n"
        "    sys.modules[m] = None\n"
        "from fastroute.app.cli import main\n"
        "assert main(['analyze']) == 2\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    argv = ["bench", "--json", "--budget", "0.001", "--cases",
            "route_select 65536x8 k=2,entropy 1x8*"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "analyze needs SciPy, which is not installed: pip install scipy" in proc.stderr
    res = json.loads(proc.stdout)
    timed = {(r["op"], r["dtype"]) for r in res["results"] if r["role"] == "fastroute"}
    assert timed == {("route_select", "float32"), ("entropy", "float32")}
    notes = "\n".join(res["notes"])
    assert "ml_dtypes not installed: skipped 1 case (route_select 65536x8 k=2 bfloat16)" in notes
    assert "scipy not installed: skipped" in notes and "torch not installed: skipped" in notes


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_analyze_refuses_what_is_not_a_regular_file(tmp_path):
    """A FIFO or a device as FILE, .npz or --vocab is a one-line error before
    it is opened (reading a FIFO waited forever; /dev/null was "no such file")."""
    os.mkfifo(tmp_path / "fifo")
    os.mkfifo(tmp_path / "fifo.npz")
    sp.save_npz(tmp_path / "c.npz", sp.csr_array(np.eye(2)))
    code = (
        "import sys\n"
        "from fastroute.app.cli import main\n"
        "d = sys.argv[1]\n"
        "for argv in ([d + '/fifo'], ['/dev/null'], [d + '/fifo.npz'],\n"
        "             [d + '/c.npz', '--vocab', d + '/fifo']):\n"
        "    assert main(['analyze', *argv]) == 2, argv\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 4 and all("is not a regular file; need " in x for x in lines), lines


def test_output_the_terminal_cannot_encode_is_escaped(tmp_path):
    """An ASCII-only stdout gets escapes for "±" and non-ASCII words instead
    of a UnicodeEncodeError ("internal error")."""
    f = tmp_path / "t.txt"
    f.write_text("élan vital élan vital élan\n", encoding="utf-8")
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    cmd = [sys.executable, "-m", "fastroute", "analyze", str(f), "-k", "1", "--min-count", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(window \\xb12, entropy in bits)" in proc.stdout and "\\xe9lan" in proc.stdout
    proc = subprocess.run([*cmd[:4], "--help"], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "window \\xb1W" in proc.stdout, proc.stderr[-3000:]
