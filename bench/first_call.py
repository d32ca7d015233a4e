"""First-call time of each public function on one 65536 x 64 float32 input.

Each function runs in a fresh process, first with an empty ``NUMBA_CACHE_DIR``
(cold: everything the call uses is compiled) and then in a second fresh
process on the cache the first one wrote (warm: loaded from disk). The time
is that of the call alone, after ``import fastroute`` and the input are
ready; the import time is printed apart::

    python bench/first_call.py                 # every function
    python bench/first_call.py entropy top_k   # some
    python bench/first_call.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

#: name -> the statement timed (``x``, ``y``: 65536 x 64 float32; ``s``: a
#: sparse CSR matrix of 65536 x 4096 with 64 entries per row, float64;
#: ``t``: 1,000,000 token ids below 50,000)
CALLS = {
    "top_k": "fr.top_k(x, 8)",
    "entropy": "fr.entropy(p)",
    "entropy_from_logits": "fr.entropy_from_logits(x)",
    "relative_entropy": "fr.relative_entropy(p, q)",
    "cross_entropy": "fr.cross_entropy(p, q)",
    "kl_from_logits": "fr.kl_from_logits(x, y)",
    "route": "fr.route(x, 2)",
    "sparse entropy": "fr.entropy(s)",
    "sparse top_k": "fr.top_k(s, 8)",
    "cooccurrence": "fr.cooccurrence(t, 50_000)",
    "dispatch+combine": "fr.combine(fr.dispatch(h, r).rows, r)",
}

SETUP = """
import time
t0 = time.perf_counter()
import numpy as np, scipy.sparse as sp
import fastroute as fr
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
x = rng.standard_normal((65536, 64)).astype(np.float32)
y = rng.standard_normal((65536, 64)).astype(np.float32)
p = rng.random((65536, 64)).astype(np.float32)
q = rng.random((65536, 64)).astype(np.float32)
s = sp.random_array((65536, 4096), density=64 / 4096, format="csr", rng=rng)
t = rng.integers(0, 50_000, 1_000_000)
h = rng.standard_normal((4096, 1024)).astype(np.float32)
r = fr.route(x[:4096], 2) if {dispatch} else None
t0 = time.perf_counter()
{stmt}
t_call = time.perf_counter() - t0
print(t_import, t_call)
"""


def first_call(name: str, cache: str) -> tuple[float, float]:
    code = SETUP.format(stmt=CALLS[name], dispatch="dispatch" in name)
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    env.pop("FASTROUTE_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    t_import, t_call = map(float, out.stdout.split()[-2:])
    return t_import, t_call


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", default=list(CALLS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = {}
    print(f"{'function':22s} {'cold s':>8s} {'warm s':>8s} {'import s':>9s}")
    for name in args.names:
        with tempfile.TemporaryDirectory(prefix="fr-cache-") as cache:
            t_import, cold = first_call(name, cache)
            _, warm = first_call(name, cache)
        rows[name] = {"cold_s": cold, "warm_s": warm, "import_s": t_import}
        print(f"{name:22s} {cold:8.2f} {warm:8.3f} {t_import:9.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
