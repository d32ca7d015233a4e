"""Memory hints for the memory-bound MoE kernels: software prefetch and
non-temporal (streaming) row stores.

Numba exposes neither, so they are LLVM intrinsics here:

* :func:`prefetch` asks for the cache line of one element (``llvm.prefetch``,
  a read into all cache levels). A hint: it never faults and changes no
  value.
* :func:`store_row` copies a row with 64-byte non-temporal stores for its
  64-byte aligned middle (``!nontemporal`` on an aligned vector store, e.g.
  ``vmovntps``) and plain stores for the ends. Streaming stores skip the
  read-for-ownership a plain store pays for a line not in cache, so a large
  output moves once instead of twice; they also evict, so they are only
  worth it for outputs that would not stay in cache anyway.
* :func:`store_fence` (``sfence``) orders the streaming stores before any
  later store. A kernel that streams calls it before it returns, so the
  thread that waits for it sees every element.

Values are never changed: a row stored with streaming stores has the same
bits as one copied element by element.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .._jit import jit

__all__ = ["prefetch", "prefetch_row", "store_row", "store_fence"]

_LINE = 64  # bytes per cache line and per streaming store


@intrinsic
def prefetch(typingctx, a, i):
    """Prefetch the cache line of ``a.ravel()[i]`` (C-contiguous ``a``)."""
    if not (isinstance(a, types.Array) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.bitcast(builder.gep(arr.data, [args[1]]), i8p)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return types.void(a, types.intp), codegen


@jit(nogil=True, inline="always")
def prefetch_row(a, r):
    """Prefetch every cache line of row ``r`` of a C-contiguous 2-D ``a``."""
    H = a.shape[1]
    for h in range(0, H, max(1, _LINE // a.itemsize)):
        prefetch(a, r * H + h)


@intrinsic
def _stream_line(typingctx, dst, di, src, si):
    # the 64 bytes at src.ravel()[si:] stored to dst.ravel()[di:] (64-byte
    # aligned there) with one non-temporal store; C-contiguous arrays
    def codegen(context, builder, signature, args):
        d = context.make_array(signature.args[0])(context, builder, args[0])
        s = context.make_array(signature.args[2])(context, builder, args[2])
        vec = ir.VectorType(ir.IntType(64), _LINE // 8)
        sp = builder.bitcast(builder.gep(s.data, [args[3]]), vec.as_pointer())
        dp = builder.bitcast(builder.gep(d.data, [args[1]]), vec.as_pointer())
        store = builder.store(builder.load(sp, align=1), dp, align=_LINE)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
        return context.get_dummy_value()

    return types.void(dst, types.intp, src, types.intp), codegen


@intrinsic
def _address(typingctx, a):
    # the address of a's first element
    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(arr.data, ir.IntType(64))

    return types.uint64(a), codegen


@intrinsic
def store_fence(typingctx):
    """``sfence``: the streaming stores before it are ordered before any
    store after it."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [])
        builder.call(builder.module.declare_intrinsic("llvm.x86.sse.sfence", (), fnty), [])
        return context.get_dummy_value()

    return types.void(), codegen


@jit(nogil=True, inline="always")
def store_row(out, t, row):
    """``out[t, :] = row`` (C-contiguous 2-D ``out``, ``row`` of its dtype)
    with streaming stores for the 64-byte aligned part; call
    :func:`store_fence` before returning to the caller's thread."""
    H = out.shape[1]
    size = out.itemsize
    per_line = _LINE // size
    base = t * H  # the row's first element in out's flat order
    # elements before the row's first 64-byte boundary
    head = (_LINE - (_address(out) + base * size) % _LINE) % _LINE // size
    if head > H:
        head = H
    for h in range(head):
        out[t, h] = row[h]
    mid = head
    while mid + per_line <= H:
        _stream_line(out, base + mid, row, mid)
        mid += per_line
    for h in range(mid, H):
        out[t, h] = row[h]


if numba.config.DISABLE_JIT:  # plain-Python stand-ins (NUMBA_DISABLE_JIT=1 runs)

    def prefetch(a, i):  # noqa: F811
        return None

    def prefetch_row(a, r):  # noqa: F811
        return None

    def store_fence():  # noqa: F811
        return None

    def store_row(out, t, row):  # noqa: F811
        out[t, :] = np.asarray(row)[: out.shape[1]]
