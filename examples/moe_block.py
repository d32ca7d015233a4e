"""A sparse MoE block on the CPU: route -> dispatch -> expert FFNs -> combine.

    python examples/moe_block.py [--tokens 2048] [--hidden 1024] [--ffn 512]
                                 [--experts 64] [--k 8] [--dtype bfloat16]

next to the eager block of Hugging Face transformers (softmax -> topk ->
renormalize -> a loop over experts with ``index_add_``), on random weights
with OLMoE-like proportions scaled to fit a small machine. The expert FFNs
(SwiGLU: ``down(silu(gate(x)) * up(x))``) are the same torch matmuls in
both; what differs is everything around them. Prints both blocks' outputs'
agreement and the time of each stage. ``moe_forward`` also runs with plain
NumPy matmuls (``matmul=np.matmul``), as the test does.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import fastroute as fr


def moe_forward(
    hidden: Any,
    router_w: Any,
    experts: list[tuple[Any, Any, Any]],
    k: int,
    *,
    ffn: Callable[[Any, tuple[Any, Any, Any], Any], Any],
    workspace: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> Any:
    """One MoE block with fastroute around the expert FFNs.

    ``hidden`` (T, H) and the router weight (H, E) in the model dtype;
    ``experts[e] = (gate, up, down)``; ``ffn(rows, expert, out)`` runs one
    expert on its rows into ``out`` (torch or NumPy). ``workspace`` (a dict,
    filled on the first call) keeps the grouped rows and the outputs between
    calls, as an inference engine does: fresh multi-megabyte buffers on every
    call cost page faults. Returns (T, H) in the model dtype.
    """
    t = timings if timings is not None else {}
    ws = workspace if workspace is not None else {}
    T, H = hidden.shape
    if ws.get("shape") != (T, H, k):  # buffers for T * k grouped rows
        ws.update(shape=(T, H, k), rows=_empty_like(hidden, (T * k, H)),
                  out_rows=_empty_like(hidden, (T * k, H)), y=_empty_like(hidden, (T, H)))  # fmt: skip
    clock = time.perf_counter()
    logits = hidden @ router_w  # the router GEMM, in the model dtype
    t["router GEMM"] = t.get("router GEMM", 0.0) + time.perf_counter() - clock
    clock = time.perf_counter()
    r = fr.route(logits, k, stats=False)  # softmax top-k, renormalized, grouped
    t["route"] = t.get("route", 0.0) + time.perf_counter() - clock
    clock = time.perf_counter()
    n = r.order.size
    d = fr.dispatch(hidden, r, out=ws["rows"][:n])
    t["dispatch"] = t.get("dispatch", 0.0) + time.perf_counter() - clock
    clock = time.perf_counter()
    out_rows = ws["out_rows"][:n]
    for e, (a, b) in enumerate(zip(d.offsets[:-1].tolist(), d.offsets[1:].tolist(), strict=True)):
        if b > a:
            ffn(d.rows[a:b], experts[e], out_rows[a:b])
    t["expert FFNs"] = t.get("expert FFNs", 0.0) + time.perf_counter() - clock
    clock = time.perf_counter()
    y = fr.combine(out_rows, r, out=ws["y"])
    t["combine"] = t.get("combine", 0.0) + time.perf_counter() - clock
    return y


def _empty_like(a: Any, shape: tuple[int, int]) -> Any:
    if hasattr(a, "detach"):
        import torch

        return torch.empty(shape, dtype=a.dtype)
    return np.empty(shape, a.dtype)


def numpy_ffn(
    x: np.ndarray, expert: tuple[np.ndarray, np.ndarray, np.ndarray], out: Any = None
) -> np.ndarray:
    """SwiGLU with NumPy matmuls (float32 math), into ``out`` when given."""
    gate, up, down = expert
    x32 = x.astype(np.float32)
    g = x32 @ gate.astype(np.float32)
    h = g / (1.0 + np.exp(-g)) * (x32 @ up.astype(np.float32))
    y = (h @ down.astype(np.float32)).astype(x.dtype)
    if out is None:
        return y
    out[...] = y
    return out


def torch_ffn(x: Any, expert: tuple[Any, Any, Any], out: Any = None) -> Any:
    """SwiGLU with torch matmuls in the model dtype (as HF runs it), the down
    projection written into ``out`` when given."""
    import torch

    gate, up, down = expert
    h = torch.nn.functional.silu(x @ gate) * (x @ up)
    return torch.mm(h, down) if out is None else torch.mm(h, down, out=out)


def hf_eager(hidden: Any, router_w: Any, experts: list, k: int, timings: dict[str, float]) -> Any:
    """The eager block of HF transformers (OLMoE/Qwen-MoE): float32 softmax,
    topk, renormalize, then per expert: the tokens that chose it, their FFN
    times the routing weight, ``index_add_`` into the output (in the model
    dtype)."""
    import torch

    clock = time.perf_counter()
    logits = hidden @ router_w
    timings["router GEMM"] = timings.get("router GEMM", 0.0) + time.perf_counter() - clock
    clock = time.perf_counter()
    p = torch.softmax(logits, dim=-1, dtype=torch.float32)
    w, sel = torch.topk(p, k, dim=-1)
    w = (w / w.sum(-1, keepdim=True)).to(hidden.dtype)
    mask = torch.nn.functional.one_hot(sel, num_classes=len(experts)).permute(2, 1, 0)
    timings["route"] = timings.get("route", 0.0) + time.perf_counter() - clock
    out = torch.zeros_like(hidden)
    ffn_time = gather = 0.0
    for e in range(len(experts)):
        clock = time.perf_counter()
        slot, tok = torch.where(mask[e])
        x = hidden[tok]
        gather += time.perf_counter() - clock
        if tok.numel() == 0:
            continue
        clock = time.perf_counter()
        y = torch_ffn(x, experts[e])
        ffn_time += time.perf_counter() - clock
        clock = time.perf_counter()
        out.index_add_(0, tok, y * w[tok, slot, None])
        gather += time.perf_counter() - clock
    timings["expert FFNs"] = timings.get("expert FFNs", 0.0) + ffn_time
    timings["dispatch + combine"] = timings.get("dispatch + combine", 0.0) + gather
    return out


def make_weights(H: int, F: int, E: int, dtype: Any, seed: int = 0):
    """Random router and SwiGLU expert weights (NumPy float32, scaled)."""
    rng = np.random.default_rng(seed)
    router = rng.standard_normal((H, E), dtype=np.float32) / np.sqrt(H)
    experts = [
        tuple(
            rng.standard_normal(s, dtype=np.float32) / np.sqrt(s[0])
            for s in ((H, F), (H, F), (F, H))
        )
        for _ in range(E)
    ]
    return router, experts


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    dt = getattr(torch, a.dtype)
    router, experts = make_weights(a.hidden, a.ffn, a.experts, dt)
    tr = torch.from_numpy(router).to(dt)
    te = [tuple(torch.from_numpy(m).to(dt) for m in ex) for ex in experts]
    x = torch.randn(a.tokens, a.hidden, generator=torch.Generator().manual_seed(1)).to(dt)
    ws: dict[str, Any] = {}
    for name, block in (
        (
            "fastroute",
            lambda tm: moe_forward(x, tr, te, a.k, ffn=torch_ffn, workspace=ws, timings=tm),
        ),
        ("HF eager", lambda tm: hf_eager(x, tr, te, a.k, tm)),
    ):
        block({})  # warm-up (compiles fastroute's kernels on a first run)
        runs = []
        for _ in range(a.repeats):
            tm: dict[str, float] = {}
            clock = time.perf_counter()
            y = block(tm)
            runs.append((time.perf_counter() - clock, tm, y))
        total, tm, y = min(runs, key=lambda r: r[0])
        stages = ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in tm.items())
        print(f"{name:9s} {1e3 * total:8.2f} ms  ({stages})")
        if name == "fastroute":
            ours = (total, y.clone())  # the workspace is reused
    # compare where both chose the same experts: with bfloat16 logits some
    # tokens tie, and torch.topk breaks ties its own way (fastroute: lower id)
    logits = x @ tr
    ours_e = np.sort(fr.route(logits, a.k, stats=False).experts, axis=1)
    theirs = np.sort(torch.topk(torch.softmax(logits, -1, dtype=torch.float32), a.k)[1].numpy(), 1)
    same = torch.from_numpy((ours_e == theirs).all(axis=1))
    diff = (ours[1].float() - y.float())[same].abs().max().item()
    scale = y.float().abs().max().item()
    print(
        f"speed-up {total / ours[0]:.2f}x; {same.float().mean().item():.1%} of tokens chose the "
        f"same experts; on those, max |difference| {diff:.3g} (outputs up to {scale:.3g})"
    )


if __name__ == "__main__":
    main()
