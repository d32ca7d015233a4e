"""fastroute.top_k against the reference, the documented rules and every error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.exceptions import AxisError
from reference import same_values, top_k_ref
from strategies import ALL_DTYPES, arrays_and_axis

import fastroute as fr
from fastroute.kernels._fast import KEYS_MAX_K, KEYS_MAX_N
from fastroute.kernels.select import INSERTION_MAX_K

# --------------------------------------------------------------------------- helpers


def snapshot(x: np.ndarray):
    """Everything a call could modify: the logical bytes and the whole base buffer."""
    base = x.base if isinstance(x.base, np.ndarray) else None
    return (
        x.dtype,
        x.shape,
        x.strides,
        np.array(x, copy=True).tobytes(),
        None if base is None else np.array(base, copy=True).tobytes(),
    )


def sort_pairs_by_index(v, i, axis):
    order = np.argsort(i, axis=axis, kind="stable")
    return np.take_along_axis(v, order, axis), np.take_along_axis(i, order, axis)


def check_top_k(x, k, axis=-1, mode="largest", sorted=True):
    """Call fr.top_k and check it against the reference and every output rule."""
    before = snapshot(x)
    res = fr.top_k(x, k, axis=axis, mode=mode, sorted=sorted)
    assert snapshot(x) == before, "input was modified"
    assert isinstance(res, fr.TopK)
    values, indices = res
    assert res.values is values and res.indices is indices

    a = np.asarray(x)
    native = a.dtype.newbyteorder("=")
    ax = axis % a.ndim
    shape = a.shape[:ax] + (k,) + a.shape[ax + 1 :]
    assert values.shape == shape and indices.shape == shape
    assert values.dtype == native and values.dtype.isnative
    assert indices.dtype == np.intp
    assert values.flags.c_contiguous and indices.flags.c_contiguous

    if k and a.size:
        assert indices.min() >= 0 and indices.max() < a.shape[ax]
        # the values are exactly the entries at the returned indices
        picked = np.take_along_axis(a, indices, ax).astype(native)
        assert same_values(values, picked)

    ref_v, ref_i = top_k_ref(a.astype(native), k, axis=ax, mode=mode)
    if sorted:
        np.testing.assert_array_equal(indices, ref_i)
        assert same_values(values, ref_v)
    else:  # the same set of (value, index) pairs, in any order
        got_v, got_i = sort_pairs_by_index(values, indices, ax)
        exp_v, exp_i = sort_pairs_by_index(ref_v, ref_i, ax)
        np.testing.assert_array_equal(got_i, exp_i)
        assert same_values(got_v, exp_v)
    return res


@st.composite
def top_k_cases(draw, dtype, layouts=None, last_axis_only=False):
    x, axis = draw(arrays_and_axis(dtype, layouts=layouts, last_axis_only=last_axis_only))
    n = x.shape[axis]
    k = draw(st.one_of(st.just(0), st.just(min(1, n)), st.just(n), st.integers(0, n)))
    mode = draw(st.sampled_from(["largest", "smallest"]))
    srt = draw(st.booleans())
    return x, k, axis, mode, srt


# --------------------------------------------------------------------------- properties


# Every dtype x memory layout is its own JIT compilation (seconds each), so
# the dtypes are covered on C rows and the layouts and axes on the floats.


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@given(data=st.data())
def test_matches_reference_every_dtype(dtype, data):
    x, k, axis, mode, srt = data.draw(
        top_k_cases(dtype, layouts=("C", "byteswapped"), last_axis_only=True)
    )
    check_top_k(x, k, axis, mode, srt)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=str)
@given(data=st.data())
def test_matches_reference_every_layout_and_axis(dtype, data):
    x, k, axis, mode, srt = data.draw(top_k_cases(dtype))
    check_top_k(x, k, axis, mode, srt)


# --------------------------------------------------------------------------- the rules


def test_docstring_example():
    x = np.array([[3.0, 1.0, 3.0, np.nan], [0.5, 2.0, -1.0, 2.0]])
    v, i = check_top_k(x, 2)
    np.testing.assert_array_equal(v, [[3.0, 3.0], [2.0, 2.0]])
    np.testing.assert_array_equal(i, [[0, 2], [1, 3]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.uint8])
def test_ties_go_to_the_lower_index(dtype):
    x = np.array([2, 5, 2, 5, 1, 5, 1], dtype)
    v, i = check_top_k(x, 4)
    np.testing.assert_array_equal(i, [1, 3, 5, 0])
    v, i = check_top_k(x, 4, mode="smallest")
    np.testing.assert_array_equal(i, [4, 6, 0, 2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("mode", ["largest", "smallest"])
def test_nan_ranks_after_every_number(dtype, mode):
    x = np.array([np.nan, 1.0, -np.nan, 2.0, -np.inf], dtype)
    order = [3, 1, 4] if mode == "largest" else [4, 1, 3]
    v, i = check_top_k(x, 3, mode=mode)
    np.testing.assert_array_equal(i, order)
    assert not np.isnan(v).any()
    # NaN only to fill k, NaNs by index (-nan is a NaN like any other)
    v, i = check_top_k(x, 5, mode=mode)
    np.testing.assert_array_equal(i, order + [0, 2])
    assert np.isnan(v[3:]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_all_nan_rows(dtype):
    x = np.full((3, 40), np.nan, dtype)
    x[1, ::3] = -np.nan
    for k in (1, 17, 25, 40):
        v, i = check_top_k(x, k)
        assert np.isnan(v).all()
        np.testing.assert_array_equal(i, np.broadcast_to(np.arange(k), (3, k)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("mode", ["largest", "smallest"])
def test_signed_zeros_tie(dtype, mode):
    x = np.array([0.0, -0.0, 0.0, -0.0], dtype)
    v, i = check_top_k(x, 4, mode=mode)
    np.testing.assert_array_equal(i, [0, 1, 2, 3])
    np.testing.assert_array_equal(np.signbit(v), [False, True, False, True])
    y = np.array([-0.0, 1.0, 0.0, -1.0], dtype)
    _, i = check_top_k(y, 3, mode=mode)
    np.testing.assert_array_equal(i, [1, 0, 2] if mode == "largest" else [3, 0, 2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_infinities_are_ordinary_values(dtype):
    x = np.array([1.0, -np.inf, np.nan, np.inf, -np.inf, np.inf], dtype)
    _, i = check_top_k(x, 6)
    np.testing.assert_array_equal(i, [3, 5, 0, 1, 4, 2])
    _, i = check_top_k(x, 6, mode="smallest")
    np.testing.assert_array_equal(i, [1, 4, 0, 3, 5, 2])


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_integer_extremes(dtype):
    info = np.iinfo(dtype)
    x = np.array([0, info.max, info.min, info.max - 1, info.min + 1, info.max, 1], dtype)
    _, i = check_top_k(x, 7)
    np.testing.assert_array_equal(i, [1, 5, 3, 6, 0, 4, 2] if info.min else [1, 5, 3, 4, 6, 0, 2])
    check_top_k(x, 7, mode="smallest")


def test_bool():
    x = np.array([[True, False, True], [False, False, True]])
    v, i = check_top_k(x, 2)
    np.testing.assert_array_equal(v, [[True, True], [True, False]])
    np.testing.assert_array_equal(i, [[0, 2], [2, 0]])
    v, i = check_top_k(x, 2, mode="smallest")
    np.testing.assert_array_equal(i, [[1, 0], [0, 1]])


def _tie_heavy(rng, shape, dtype):
    x = rng.integers(-3, 4, size=shape).astype(dtype)
    if np.dtype(dtype).kind == "f":
        x[rng.random(shape) < 0.05] = np.nan
        x[rng.random(shape) < 0.05] = -np.nan
        x[rng.random(shape) < 0.05] = -0.0
        x[rng.random(shape) < 0.02] = np.inf
        x[rng.random(shape) < 0.02] = -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("n", [KEYS_MAX_N, KEYS_MAX_N + 1])
def test_around_kernel_thresholds(dtype, n):
    """Both sides of the short-row/small-k key kernel and of the insertion/heap switch."""
    rng = np.random.default_rng(n)
    x = _tie_heavy(rng, (3, n), dtype)
    for k in sorted(
        {1, KEYS_MAX_K, KEYS_MAX_K + 1, INSERTION_MAX_K, INSERTION_MAX_K + 1, n // 2, n}
    ):
        for mode in ("largest", "smallest"):
            for srt in (True, False):
                check_top_k(x, k, mode=mode, sorted=srt)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unsorted_is_the_same_set_for_large_k(dtype):
    rng = np.random.default_rng(1)
    x = _tie_heavy(rng, (4, 300), dtype)
    for k in (INSERTION_MAX_K + 1, 100, 299, 300):
        _, si = fr.top_k(x, k, sorted=True)
        _, ui = check_top_k(x, k, sorted=False)
        for r in range(x.shape[0]):
            assert set(ui[r].tolist()) == set(si[r].tolist())


def test_axis_and_output_layout():
    rng = np.random.default_rng(2)
    x = _tie_heavy(rng, (3, 5, 7), np.float64)
    for axis in (0, 1, 2, -1, -2, -3):
        v, i = check_top_k(x, 2, axis=axis)
        ax = axis % 3
        assert v.shape == tuple(2 if d == ax else s for d, s in enumerate(x.shape))
        # same as moving the axis last and selecting there
        v2, i2 = fr.top_k(np.moveaxis(x, ax, -1), 2)
        np.testing.assert_array_equal(np.moveaxis(i, ax, -1), i2)


@pytest.mark.parametrize("layout", ["F", "transposed", "strided", "reversed", "readonly"])
def test_layouts_explicit(layout):
    from strategies import apply_layout

    rng = np.random.default_rng(3)
    base = _tie_heavy(rng, (6, 9), np.float64)
    x = apply_layout(base, layout)
    for axis in (0, 1):
        for k in (0, 3, x.shape[axis]):
            check_top_k(x, k, axis=axis)


def test_broadcast_zero_strides():
    rng = np.random.default_rng(8)
    x = np.broadcast_to(_tie_heavy(rng, (1, 4, 9), np.float64), (3, 4, 9))  # read-only
    for axis in (0, 1, 2):
        check_top_k(x, 2, axis=axis)
        check_top_k(x, x.shape[axis], axis=axis, mode="smallest", sorted=False)


def test_non_native_byte_order():
    x = np.array([3.0, -1.0, 7.0, np.nan, 7.0], dtype=">f8")
    v, i = check_top_k(x, 3)
    np.testing.assert_array_equal(i, [2, 4, 0])
    assert v.dtype == np.float64 and v.dtype.isnative


@pytest.mark.parametrize(
    ("shape", "k", "axis"),
    [((0,), 0, -1), ((0, 5), 2, -1), ((3, 0), 0, -1), ((2, 0, 3), 0, 1), ((2, 0, 3), 2, 0)],
)
def test_empty_inputs(shape, k, axis):
    v, i = check_top_k(np.empty(shape), k, axis=axis)
    assert v.size == 0 and i.size == 0


def test_k_zero_on_nonempty():
    v, i = check_top_k(np.arange(12.0).reshape(3, 4), 0)
    assert v.shape == (3, 0) and i.shape == (3, 0)


def test_accepts_lists_and_numpy_integer_k():
    v, i = fr.top_k([3, 1, 2], np.int64(2))
    np.testing.assert_array_equal(v, [3, 2])
    np.testing.assert_array_equal(i, [0, 2])
    assert i.dtype == np.intp


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    t = torch.tensor([[3.0, 1.0, 3.0, float("nan")], [0.5, 2.0, -1.0, 2.0]])
    before = t.clone()
    for tensor in (t, t.T, t.to(torch.float16), t.to(torch.float64), t[:, ::2]):
        v, i = fr.top_k(tensor, 2, axis=0)
        ev, ei = fr.top_k(tensor.numpy(), 2, axis=0)
        np.testing.assert_array_equal(i, ei)
        assert same_values(v, ev)
    i64 = torch.tensor([5, -2, 7, 7])
    np.testing.assert_array_equal(fr.top_k(i64, 2).indices, [2, 3])
    b = torch.tensor([False, True, True])
    np.testing.assert_array_equal(fr.top_k(b, 1).indices, [1])
    assert np.array_equal(t.numpy(), before.numpy(), equal_nan=True), "tensor was modified"


def test_torch_tensor_requiring_grad():
    """The wrappers detach torch tensors (no autograd): a tensor with
    ``requires_grad=True`` is a torch CPU tensor like any other."""
    torch = pytest.importorskip("torch")
    t = torch.tensor([0.5, 2.0, -1.0, 2.0], requires_grad=True)
    v, i = fr.top_k(t, 2)
    np.testing.assert_array_equal(i, [1, 3])
    assert v.dtype == np.float32


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "x",
    [
        np.array([1, 2], dtype=object),
        np.array(["a", "b"]),
        np.array([b"a", b"b"]),
        np.array([1 + 2j, 3j]),
        np.array([1, 2], dtype=np.complex64),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
        np.array([1], dtype="timedelta64[s]"),
    ],
    ids=lambda a: str(a.dtype),
)
def test_unsupported_dtype_is_type_error(x):
    with pytest.raises(TypeError, match=r"top_k: unsupported dtype"):
        fr.top_k(x, 1)


@pytest.mark.skipif(np.dtype(np.longdouble) == np.float64, reason="longdouble is float64 here")
def test_longdouble_is_type_error():
    with pytest.raises(TypeError, match="unsupported dtype"):
        fr.top_k(np.ones(3, np.longdouble), 1)


def test_scalar_is_value_error():
    with pytest.raises(ValueError, match="at least one dimension"):
        fr.top_k(np.float64(3.0), 0)
    with pytest.raises(ValueError, match="at least one dimension"):
        fr.top_k(3.0, 0)


@pytest.mark.parametrize("k", [1.0, 2.5, "1", None, [1], np.float64(1.0)])
def test_non_integer_k_is_type_error(k):
    with pytest.raises(TypeError, match="k must be an integer"):
        fr.top_k(np.arange(3.0), k)


@pytest.mark.parametrize("k", [True, False, np.True_])
def test_bool_k_is_type_error(k):
    with pytest.raises(TypeError, match="k must be an integer, got a bool"):
        fr.top_k(np.arange(3.0), k)


@pytest.mark.parametrize(("n", "k"), [(3, -1), (3, 4), (0, 1), (5, 2**40)])
def test_k_out_of_range_is_value_error(n, k):
    with pytest.raises(ValueError, match=rf"k={k} is out of range; need 0 <= k <= {n}"):
        fr.top_k(np.zeros(n), k)


def test_k_out_of_range_along_axis():
    with pytest.raises(ValueError, match=r"0 <= k <= 2"):
        fr.top_k(np.zeros((2, 5)), 3, axis=0)


@pytest.mark.parametrize(("shape", "axis"), [((3,), 1), ((3,), -2), ((2, 3), 2), ((2, 3), -3)])
def test_bad_axis_is_axis_error(shape, axis):
    with pytest.raises(
        AxisError, match=rf"axis {axis} is out of bounds for array of dimension {len(shape)}"
    ):
        fr.top_k(np.zeros(shape), 1, axis=axis)


@pytest.mark.parametrize("axis", [1.0, "0", None, True])
def test_non_integer_axis_is_type_error(axis):
    with pytest.raises(TypeError, match="axis must be an integer"):
        fr.top_k(np.zeros((2, 3)), 1, axis=axis)


@pytest.mark.parametrize("mode", ["max", "LARGEST", "", None, 1])
def test_bad_mode_is_value_error(mode):
    with pytest.raises(ValueError, match=r"mode must be 'largest' or 'smallest'"):
        fr.top_k(np.zeros(3), 1, mode=mode)


def test_positional_and_keyword_only_signature():
    x = np.arange(4.0)
    with pytest.raises(TypeError):
        fr.top_k(x, 1, -1)  # axis is keyword-only
    with pytest.raises(TypeError):
        fr.top_k(x=x, k=1)  # x and k are positional-only
