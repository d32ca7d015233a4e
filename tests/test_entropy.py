"""fastroute.entropy / entropy_from_logits against the reference, the rules, the errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st
from numpy.exceptions import AxisError
from reference import assert_close, entropy_from_logits_ref, entropy_ref
from strategies import ALL_DTYPES, arrays_and_axis

import fastroute as fr

BASES = [None, 2, 10, math.e, 0.5, np.float32(3.0)]


# --------------------------------------------------------------------------- helpers


def snapshot(x):
    x = np.asarray(x)
    base = x.base if isinstance(x.base, np.ndarray) else None
    return (
        x.dtype,
        x.shape,
        np.array(x, copy=True).tobytes(),
        None if base is None else np.array(base, copy=True).tobytes(),
    )


def out_dtype(dtype):
    native = np.dtype(dtype).newbyteorder("=")
    return np.float32 if native in (np.float16, np.float32) else np.float64


def first_negative_slice(p, axis):
    """Index (in the shape without ``axis``) of the first slice holding a
    negative entry, C order; None if there is none."""
    a = np.moveaxis(np.asarray(p).astype(np.float64), axis, -1)
    for pos in np.ndindex(*a.shape[:-1]):
        if (a[pos] < 0).any():
            return pos
    return None


def slice_pattern(pos):
    """Regex naming slice ``pos``: ``slice 3`` / ``slice (3,)`` / ``slice (1, 2)``."""
    if len(pos) == 0:
        return r"slice (0|\(\)|\(0,\))"
    if len(pos) == 1:
        return rf"slice (\(?{pos[0]},?\)?)\D"
    return re.escape(f"slice {tuple(int(i) for i in pos)}")


def terms_scale(p, axis):
    """sum |p log p| per slice: the size of the sum for normalize=False."""
    a = np.asarray(p).astype(np.float64)
    with np.errstate(all="ignore"):
        t = np.abs(scipy.special.xlogy(a, a))
    return np.nansum(np.where(np.isinf(t), 0.0, t), axis=axis)


def check_entropy(p, axis=-1, base=None, normalize=True):
    before = snapshot(p)
    bad = first_negative_slice(p, axis)
    if bad is not None:
        with pytest.raises(ValueError, match="negative") as info:
            fr.entropy(p, axis=axis, base=base, normalize=normalize)
        assert re.search(slice_pattern(bad), str(info.value) + " "), str(info.value)
        assert snapshot(p) == before
        return None
    got = fr.entropy(p, axis=axis, base=base, normalize=normalize)
    assert snapshot(p) == before, "input was modified"
    a = np.asarray(p)
    assert isinstance(got, (np.ndarray, np.floating))
    assert got.dtype == out_dtype(a.dtype)
    assert got.shape == a.shape[: axis % a.ndim] + a.shape[axis % a.ndim + 1 :]
    ref = entropy_ref(a, axis=axis, base=base, normalize=normalize)
    scale = None
    if not normalize:
        scale = terms_scale(a, axis) / (math.log(base) if base else 1.0)
        scale = np.maximum(np.abs(scale), np.abs(ref))
    assert_close(got, ref, scale)
    return got


def check_logits(z, axis=-1, base=None):
    before = snapshot(z)
    got = fr.entropy_from_logits(z, axis=axis, base=base)
    assert snapshot(z) == before, "input was modified"
    a = np.asarray(z)
    assert isinstance(got, (np.ndarray, np.floating))
    assert got.dtype == out_dtype(a.dtype)
    assert got.shape == a.shape[: axis % a.ndim] + a.shape[axis % a.ndim + 1 :]
    assert_close(got, entropy_from_logits_ref(a, axis=axis, base=base))
    return got


# --------------------------------------------------------------------------- properties

CHEAP = ("C", "byteswapped")


@st.composite
def entropy_cases(draw, dtype, layouts=None, negative=False, last_axis_only=False):
    normalize = draw(st.booleans())
    nonfinite = draw(st.integers(0, 4)) == 0  # mostly finite rows
    p, axis = draw(
        arrays_and_axis(
            dtype,
            layouts=layouts,
            last_axis_only=last_axis_only,
            negative=negative,
            nan=nonfinite,
            posinf=nonfinite,
            neginf=negative,
            # -sum p log p of entries near the float64 maximum overflows
            max_magnitude=None if normalize else 1e300,
        )
    )
    base = draw(st.sampled_from(BASES))
    return p, axis, base, normalize


# Every dtype x memory layout is its own JIT compilation (seconds each), so
# the dtypes are covered on C rows and the layouts and axes on float64/float16.


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@given(data=st.data())
def test_entropy_matches_reference_every_dtype(dtype, data):
    p, axis, base, normalize = data.draw(entropy_cases(dtype, layouts=CHEAP, last_axis_only=True))
    check_entropy(p, axis, base, normalize)


@pytest.mark.parametrize("dtype", [np.float64, np.float16], ids=str)
@given(data=st.data())
def test_entropy_matches_reference_every_layout_and_axis(dtype, data):
    p, axis, base, normalize = data.draw(entropy_cases(dtype))
    check_entropy(p, axis, base, normalize)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16], ids=str)
@given(data=st.data())
def test_entropy_negative_entries_raise(dtype, data):
    p, axis, base, normalize = data.draw(
        entropy_cases(dtype, layouts=CHEAP, negative=True, last_axis_only=dtype != np.float64)
    )
    check_entropy(p, axis, base, normalize)


@st.composite
def logits_cases(draw, dtype, layouts=None, last_axis_only=False):
    nonfinite = draw(st.integers(0, 4)) == 0
    z, axis = draw(
        arrays_and_axis(
            dtype,
            layouts=layouts,
            last_axis_only=last_axis_only,
            nan=nonfinite,
            posinf=nonfinite,
            neginf=True,
        )
    )
    return z, axis, draw(st.sampled_from(BASES))


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@given(data=st.data())
def test_logits_matches_reference_every_dtype(dtype, data):
    z, axis, base = data.draw(logits_cases(dtype, layouts=CHEAP, last_axis_only=True))
    check_logits(z, axis, base)


@pytest.mark.parametrize("dtype", [np.float64, np.float16], ids=str)
@given(data=st.data())
def test_logits_matches_reference_every_layout_and_axis(dtype, data):
    z, axis, base = data.draw(logits_cases(dtype))
    check_logits(z, axis, base)


# --------------------------------------------------------------------------- entropy rules


def test_docstring_examples():
    h = check_entropy(np.array([[1, 1, 0, 0], [3, 1, 0, 0]]), base=2)
    np.testing.assert_allclose(h, [1.0, 0.8112781244591328], rtol=1e-15)
    h = check_logits(np.array([[0.0, 0.0], [1e30, -1e30]]))
    np.testing.assert_allclose(h, [math.log(2), 0.0], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.uint8])
def test_zeros_contribute_exactly_zero(dtype):
    p = np.array([3, 1, 2], dtype)
    padded = np.array([3, 1, 2, 0, 0, 0, 0], dtype)
    for normalize in (True, False):
        a = fr.entropy(p, normalize=normalize)
        b = fr.entropy(padded, normalize=normalize)
        assert a.tobytes() == b.tobytes()
        c = check_entropy(np.array([0, 3, 0, 1, 0, 2], dtype), normalize=normalize)
        np.testing.assert_allclose(c, a, rtol=1e-15 if a.dtype == np.float64 else 1e-7)
    assert fr.entropy(np.array([0, 1, 0], dtype)) == 0.0
    assert fr.entropy(np.array([1, 0], dtype), normalize=False) == 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_negative_zero_is_zero(dtype):
    assert fr.entropy(np.array([-0.0, 1.0], dtype)) == 0.0
    assert fr.entropy(np.array([-0.0, 1.0], dtype), normalize=False) == 0.0
    np.testing.assert_allclose(
        fr.entropy(np.array([-0.0, 2.0, 2.0], dtype)), math.log(2), rtol=1e-7
    )
    assert np.isnan(fr.entropy(np.array([-0.0, -0.0], dtype)))
    assert fr.entropy(np.array([-0.0, -0.0], dtype), normalize=False) == 0.0


def test_normalize_is_scipy_entropy():
    rng = np.random.default_rng(0)
    p = rng.random((5, 33)) * rng.integers(1, 1000, (5, 1))
    for base in (None, 2, 10):
        h = check_entropy(p, base=base)
        np.testing.assert_allclose(h, scipy.stats.entropy(p, base=base, axis=-1), rtol=1e-13)
        h0 = check_entropy(p, axis=0, base=base)
        np.testing.assert_allclose(h0, scipy.stats.entropy(p, base=base, axis=0), rtol=1e-13)
    counts = np.array([[3, 1, 0, 0]])
    np.testing.assert_allclose(fr.entropy(counts), scipy.stats.entropy(counts, axis=-1), rtol=1e-15)


def test_normalize_false_uses_entries_as_given():
    p = np.array([0.25, 0.25, 0.5])
    h = check_entropy(p, normalize=False)
    np.testing.assert_allclose(h, 1.5 * math.log(2), rtol=1e-15)
    h = check_entropy(np.array([2.0, 3.0]), normalize=False)  # counts: negative result
    np.testing.assert_allclose(h, -(2 * math.log(2) + 3 * math.log(3)), rtol=1e-15)
    h = check_entropy(np.array([0.5, 0.5]) * 2.0**-1000, normalize=False)  # rescaled path
    np.testing.assert_allclose(h, 2.0**-1000 * 1001 * math.log(2), rtol=1e-14)
    h = check_entropy(np.array([1e305, 1e300]), normalize=False)
    assert h < 0 and np.isfinite(h)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int32, np.bool_])
def test_all_zero_and_empty_slices(dtype):
    z = np.zeros((2, 4), dtype)
    assert np.isnan(check_entropy(z)).all()
    np.testing.assert_array_equal(check_entropy(z, normalize=False), [0.0, 0.0])
    e = np.zeros((3, 0), dtype)
    assert np.isnan(check_entropy(e)).all() and check_entropy(e).shape == (3,)
    np.testing.assert_array_equal(check_entropy(e, normalize=False), np.zeros(3))
    assert check_entropy(np.zeros((0, 5), dtype)).shape == (0,)
    assert check_entropy(np.zeros((2, 0, 3), dtype), axis=1).shape == (2, 3)
    assert check_entropy(np.zeros((2, 0, 3), dtype), axis=2).shape == (2, 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("normalize", [True, False])
def test_nan_and_inf_give_nan(dtype, normalize):
    p = np.array(
        [
            [0.5, np.nan, 0.5],
            [0.5, -np.nan, 0.5],  # sign-bit NaN is a NaN, not a negative number
            [0.5, np.inf, 0.5],
            [np.inf, np.inf, 0.0],
            [0.5, 0.25, 0.25],
        ],
        dtype,
    )
    h = check_entropy(p, normalize=normalize)
    assert np.isnan(h[:4]).all() and np.isfinite(h[4])


def test_negative_nan_alone_is_not_a_negative():
    for dtype in (np.float64, np.float32, np.float16):
        assert np.isnan(fr.entropy(np.array([-np.nan], dtype)))
        assert np.isnan(fr.entropy(np.array([-np.nan, -0.0, 1.0], dtype), normalize=False))


@pytest.mark.parametrize(
    ("shape", "axis", "where", "expected"),
    [
        ((5,), -1, (2,), "slice 0"),
        ((4, 6), -1, (2, 1), "slice 2 "),
        ((4, 6), 0, (3, 5), "slice 5 "),
        ((2, 5, 3), 1, (1, 4, 2), "slice (1, 2) "),
        ((2, 5, 3), -1, (1, 4, 2), "slice (1, 4) "),
    ],
)
def test_negative_entry_names_the_slice(shape, axis, where, expected):
    p = np.ones(shape)
    p[where] = -1e-300
    with pytest.raises(ValueError, match="negative entry") as info:
        fr.entropy(p, axis=axis)
    assert expected in str(info.value) + " ", str(info.value)
    with pytest.raises(ValueError, match=re.escape(expected.strip())):
        fr.entropy(p, axis=axis, normalize=False)


def test_negative_entry_names_the_first_slice():
    p = np.ones((6, 4))
    p[4, 0] = -1.0
    p[1, 3] = -np.inf
    p[0, 2] = np.nan  # a NaN slice before them is not an error
    with pytest.raises(ValueError, match=r"slice 1 \(along axis 1\) has a negative entry"):
        fr.entropy(p)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.int64])
def test_negative_entry_every_signed_dtype(dtype):
    p = np.array([[1, 2], [3, -1]], dtype)
    with pytest.raises(ValueError, match=r"entropy: slice 1 .*negative entry"):
        fr.entropy(p)


def test_negative_inf_is_negative():
    with pytest.raises(ValueError, match="negative entry"):
        fr.entropy(np.array([1.0, -np.inf]))


def test_negative_with_nan_in_same_slice_is_an_error():
    with pytest.raises(ValueError, match="negative entry"):
        fr.entropy(np.array([np.nan, -1.0, 1.0]))


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_output_dtype(dtype):
    p = np.ones((2, 3), dtype)
    assert fr.entropy(p).dtype == out_dtype(dtype)
    assert fr.entropy(p, normalize=False).dtype == out_dtype(dtype)
    assert fr.entropy_from_logits(p).dtype == out_dtype(dtype)
    np.testing.assert_allclose(fr.entropy(p), math.log(3), rtol=1e-7)
    np.testing.assert_allclose(fr.entropy_from_logits(p), math.log(3), rtol=1e-7)


def test_1d_input_gives_0d_result():
    assert np.shape(fr.entropy(np.array([]))) == () and np.isnan(fr.entropy(np.array([])))
    assert fr.entropy(np.array([]), normalize=False) == 0.0
    assert np.isnan(fr.entropy_from_logits(np.array([])))
    h = fr.entropy(np.array([1.0, 1.0]))
    assert np.shape(h) == () and float(h) == pytest.approx(math.log(2), rel=1e-15)
    h = fr.entropy_from_logits(np.array([0.0, 0.0]))
    assert np.shape(h) == () and float(h) == pytest.approx(math.log(2), rel=1e-15)


def test_base_changes_the_unit():
    p = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 3.0, 0.0, 0.0]])
    nats = fr.entropy(p)
    np.testing.assert_allclose(fr.entropy(p, base=2), nats / math.log(2), rtol=1e-15)
    np.testing.assert_allclose(fr.entropy(p, base=2)[0], 2.0, rtol=1e-15)
    np.testing.assert_allclose(fr.entropy(p, base=10), nats / math.log(10), rtol=1e-15)
    np.testing.assert_allclose(fr.entropy(p, base=np.int64(4))[0], 1.0, rtol=1e-15)
    z = np.log(p[:1])
    np.testing.assert_allclose(fr.entropy_from_logits(z, base=2), [2.0], rtol=1e-15)


def test_unnormalized_sums_beyond_float64_in_nats_finite_in_base():
    """``-sum p log p`` of entries near 1e308 overflows in nats but is finite
    in a base with ``|log(base)| > 1``; it was ``-inf`` (``base=1e300``).
    Now the exact value rounded, dense and sparse, rows and columns; ``+-inf``
    only beyond float64 in that base."""
    import scipy.sparse as sp

    p = np.array([[1e308, 0.0, 1e307], [1e308, 1.7e308, 0.0], [2.0, 0.0, 1.0]])
    for base in (1e300, 1e-300, 10.0, 2.0):
        ref = entropy_ref(p, -1, base, False)
        assert_close(fr.entropy(p, normalize=False, base=base), ref)
        assert_close(fr.entropy(p.T, axis=0, normalize=False, base=base), ref)
        assert_close(fr.entropy(sp.csr_array(p), normalize=False, base=base), ref)
        assert_close(fr.entropy(sp.csr_array(p.T), axis=0, normalize=False, base=base), ref)
        assert_close(fr.entropy(p[0], normalize=False, base=base), ref[0])
    assert fr.entropy(p[0], normalize=False, base=1e300) == pytest.approx(-1.129e308, rel=1e-15)
    assert fr.entropy(p[1], normalize=False, base=2.0) == -np.inf  # beyond float64 in bits


@pytest.mark.parametrize("func", [fr.entropy, fr.entropy_from_logits])
@pytest.mark.parametrize("base", [1, 1.0, 0, 0.0, -2.0, math.inf, math.nan])
def test_bad_base_is_value_error(func, base):
    with pytest.raises(ValueError, match="base must be positive, finite and not 1"):
        func(np.ones(3), base=base)


@pytest.mark.parametrize("func", [fr.entropy, fr.entropy_from_logits])
@pytest.mark.parametrize("base", ["2", True, [2], 2j])
def test_non_numeric_base_is_type_error(func, base):
    with pytest.raises(TypeError, match="base must be a real number or None"):
        func(np.ones(3), base=base)


def test_axis_handling():
    rng = np.random.default_rng(5)
    p = rng.random((3, 4, 5))
    for axis in (0, 1, 2, -1, -2, -3):
        h = check_entropy(p, axis=axis)
        np.testing.assert_array_equal(h, fr.entropy(np.moveaxis(p, axis, -1)))
        g = check_logits(p, axis=axis)
        np.testing.assert_array_equal(g, fr.entropy_from_logits(np.moveaxis(p, axis, -1)))


@pytest.mark.parametrize(
    "layout", ["F", "transposed", "strided", "strided0", "reversed", "readonly", "byteswapped"]
)
def test_layouts_explicit(layout):
    from strategies import apply_layout

    rng = np.random.default_rng(4)
    p = apply_layout(rng.random((6, 300)) * (rng.random((6, 300)) < 0.7), layout)
    for axis in (0, 1):
        check_entropy(p, axis=axis)
        check_entropy(p, axis=axis, normalize=False)
        check_logits(p * 50, axis=axis)
        check_logits(p, axis=axis)


def test_long_rows_cross_block_boundaries():
    rng = np.random.default_rng(6)
    for n in (255, 256, 257, 511, 512, 513, 1000):
        p = rng.random((2, n)) ** 8
        p[0, rng.integers(0, n, n // 3)] = 0.0
        check_entropy(p)
        check_entropy(p, normalize=False)
        check_entropy(p.astype(np.float32))
        z = rng.normal(0, 20, (2, n))
        z[1, rng.integers(0, n, n // 3)] = -np.inf
        check_logits(z)
        check_logits(z.astype(np.float32))


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    t = torch.tensor([[0.5, 0.25, 0.25, 0.0], [1.0, 2.0, 3.0, 4.0]])
    before = t.clone()
    cases = [(t, 0), (t, -1), (t.T, 0), (t.to(torch.float64), 0), (t.to(torch.float16), 0)]
    cases.append(((t * 4).to(torch.int64), -1))
    for tensor, axis in cases:
        h = fr.entropy(tensor, axis=axis)
        np.testing.assert_array_equal(h, fr.entropy(tensor.numpy(), axis=axis))
        g = fr.entropy_from_logits(tensor, axis=axis)
        np.testing.assert_array_equal(g, fr.entropy_from_logits(tensor.numpy(), axis=axis))
    assert fr.entropy(t).dtype == np.float32
    assert torch.equal(t, before)
    g = torch.tensor([0.0, 1.0], requires_grad=True)
    np.testing.assert_allclose(
        fr.entropy_from_logits(g), fr.entropy_from_logits(np.array([0.0, 1.0])), rtol=1e-7
    )


# --------------------------------------------------------------------------- logits rules


def test_logits_no_overflow_for_any_finite_logits():
    big = np.finfo(np.float64).max
    assert check_logits(np.array([1e30, 0.0, -1e30])) == 0.0
    assert check_logits(np.array([big, -big])) == 0.0
    np.testing.assert_allclose(check_logits(np.array([big, big, -big])), math.log(2), rtol=1e-15)
    np.testing.assert_allclose(check_logits(np.array([-big, -big])), math.log(2), rtol=1e-15)
    assert check_logits(np.array([3e38, -3e38], np.float32)) == 0.0


def test_logits_shift_invariance():
    rng = np.random.default_rng(7)
    z = rng.normal(0, 3, (4, 50))
    h = check_logits(z)
    np.testing.assert_allclose(check_logits(z + 1e6), h, rtol=1e-9)
    np.testing.assert_allclose(check_logits(z - 1e6), h, rtol=1e-9)
    np.testing.assert_allclose(
        h, scipy.stats.entropy(scipy.special.softmax(z, axis=-1), axis=-1), rtol=1e-13
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_logits_neg_inf_is_probability_zero(dtype):
    z = np.array([[-np.inf, 0.0, 0.0], [-np.inf, 5.0, -np.inf], [0.0, 0.0, 0.0]], dtype)
    h = check_logits(z)
    np.testing.assert_allclose(h, [math.log(2), 0.0, math.log(3)], rtol=1e-7)
    assert h[1] == 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_logits_nan_cases(dtype):
    z = np.array(
        [
            [-np.inf, -np.inf, -np.inf],
            [0.0, np.nan, 1.0],
            [0.0, -np.nan, 1.0],
            [0.0, np.inf, 1.0],
            [-np.inf, np.inf, -np.inf],
            [np.inf, np.inf, np.inf],
        ],
        dtype,
    )
    assert np.isnan(check_logits(z)).all()
    assert np.isnan(check_logits(np.zeros((3, 0), dtype))).all()
    assert check_logits(np.zeros((0, 3), dtype)).shape == (0,)


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint64, np.bool_])
def test_logits_integer_extremes(dtype):
    if dtype is np.bool_:
        z = np.array([[True, False], [False, False]])
    else:
        info = np.iinfo(dtype)
        z = np.array([[info.max, info.min], [info.max, info.max - 1], [info.min, info.min]], dtype)
    check_logits(z)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("func", [fr.entropy, fr.entropy_from_logits])
@pytest.mark.parametrize(
    "x",
    [
        np.array([1, 2], dtype=object),
        np.array(["a"]),
        np.array([1j]),
        np.array([1], "datetime64[s]"),
    ],
    ids=lambda a: str(a.dtype),
)
def test_unsupported_dtype_is_type_error(func, x):
    with pytest.raises(TypeError, match=rf"{func.__name__}: unsupported dtype"):
        func(x)


@pytest.mark.parametrize("func", [fr.entropy, fr.entropy_from_logits])
def test_scalar_is_value_error(func):
    with pytest.raises(ValueError, match="at least one dimension"):
        func(np.float64(1.0))


@pytest.mark.parametrize("func", [fr.entropy, fr.entropy_from_logits])
@pytest.mark.parametrize(("shape", "axis"), [((3,), 1), ((2, 3), -3), ((2, 3, 4), 3)])
def test_bad_axis_is_axis_error(func, shape, axis):
    with pytest.raises(
        AxisError, match=rf"axis {axis} is out of bounds for array of dimension {len(shape)}"
    ):
        func(np.ones(shape), axis=axis)


@pytest.mark.parametrize("func", [fr.entropy, fr.entropy_from_logits])
@pytest.mark.parametrize("axis", [0.0, "1", None, False])
def test_non_integer_axis_is_type_error(func, axis):
    with pytest.raises(TypeError, match="axis must be an integer"):
        func(np.ones((2, 3)), axis=axis)


@pytest.mark.parametrize("n", [1, 3, 8, 16, 17, 64])
def test_entropy_bits_independent_of_layout_and_path(n):
    """Short C-contiguous rows take the many-rows-at-once kernel, other layouts
    the per-row kernel; near-deterministic rows fall back from the one-pass to
    the two-pass formula. Each row's bits must not depend on any of that."""
    rng = np.random.default_rng(n)
    p = rng.random((300, n))
    p[::3, 0] = 1e9  # near-deterministic rows: the exact two-pass fallback
    p[1::7] = 0.0
    p[2::11, -1] = np.nan
    c = fr.entropy(p)
    f = fr.entropy(np.asfortranarray(p))
    rows = np.array([fr.entropy(row) for row in p])
    strided = fr.entropy(np.repeat(p, 2, axis=1)[:, ::2])
    assert np.array_equal(c, f, equal_nan=True)
    assert np.array_equal(c, rows, equal_nan=True)
    assert np.array_equal(c, strided, equal_nan=True)
    ok = np.isfinite(c)
    want = entropy_ref(p[ok])
    np.testing.assert_allclose(c[ok], want, rtol=1e-12, atol=2e-15)
