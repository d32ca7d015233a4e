"""Run by ``test_robustness.test_workers_after_a_parallel_call``: parallel
calls in this process, then pools of every start method mapping fastroute
calls. Prints whether a Numba threading layer was started, then "ok"."""

import multiprocessing as mp

import numba
import numpy as np

import fastroute as fr
from fastroute import _execute


def work(seed):
    x = np.random.default_rng(seed).standard_normal((20000, 16)).astype(np.float32)
    r = fr.route(x, 2)
    return (
        fr.top_k(x, 2).indices.tolist(),
        fr.entropy_from_logits(x).tolist(),
        r.order.tolist(),
        fr.combine(fr.dispatch(x, r).rows, r).tobytes(),  # parallel in the parent
    )


def main():
    calls = []
    real = _execute._launch

    def spy(kernel, jobs):
        calls.append(kernel)
        return real(kernel, jobs)

    _execute._launch = spy
    want = [work(s) for s in range(3)]  # parallel, in this process
    assert calls, "the parent did not take the parallel path"
    try:
        print("threading-layer", numba.threading_layer(), flush=True)
    except ValueError:  # never started: no prange in fastroute
        print("no-threading-layer", flush=True)
    for method in ("fork", "forkserver", "spawn"):
        with mp.get_context(method).Pool(2) as pool:
            got = pool.map_async(work, range(3)).get(timeout=300)
        assert got == want, f"{method}: different results"
        print(method, "ok", flush=True)
    n = len(calls)
    work(0)
    assert len(calls) > n, "the parent lost its parallel path"
    print("ok")


if __name__ == "__main__":
    main()
