"""The op table: the plain xp ops against straightforward NumPy, stability at +-1000, dtypes kept."""

import numpy as np
import pytest

from nn_gpu.ops import REFERENCE_OPS as ops


def naive_softmax(Z):
    """softmax per column in float64 from the definition (valid for moderate Z only)."""
    E = np.exp(Z.astype(np.float64))
    return E / E.sum(axis=0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_relu_adds_bias_per_unit_then_clips_at_zero(rng, dtype):
    Z = rng.standard_normal((5, 7)).astype(dtype)
    b = rng.standard_normal((5, 1)).astype(dtype)
    expected = np.maximum(Z + b, 0)
    A = ops.bias_relu(Z.copy(), b)
    assert A.dtype == dtype
    np.testing.assert_array_equal(A, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_passes_gradient_only_where_unit_was_active(rng, dtype):
    dA = rng.standard_normal((4, 6)).astype(dtype)
    A = np.maximum(rng.standard_normal((4, 6)), 0).astype(dtype)
    db = np.full((4, 1), np.nan, dtype)
    dZ = ops.relu_backward(dA.copy(), A, 1, db)
    assert dZ.dtype == db.dtype == dtype  # ReLU' in the input's dtype, never bool or int
    np.testing.assert_array_equal(dZ, np.where(A > 0, dA, 0))
    np.testing.assert_allclose(db, dZ.sum(axis=1, keepdims=True), rtol=1e-6)  # db: one sum per unit
    dZ = ops.relu_backward(dA.copy(), A, dtype(2), db)  # dropout's s = 1 / (1 - p), here p = 0.5
    np.testing.assert_array_equal(dZ, np.where(A > 0, 2 * dA, 0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_matches_definition_and_sums_to_one(rng, dtype):
    Z = (3 * rng.standard_normal((10, 50))).astype(dtype)
    A = ops.softmax(Z)
    assert A.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(A, naive_softmax(Z), rtol=rtol)
    np.testing.assert_allclose(A.sum(axis=0), 1, rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_against_definition(rng, dtype):
    Z = (3 * rng.standard_normal((10, 40))).astype(dtype)
    y = rng.integers(0, 10, size=40)
    A = naive_softmax(Z)
    onehot = np.eye(10)[:, y]
    dZ, loss, correct = ops.softmax_cross_entropy(Z.copy(), y)
    assert dZ.dtype == loss.dtype == correct.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dZ, A - onehot, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(loss, -np.log(A[y, np.arange(40)]), rtol=rtol)
    np.testing.assert_array_equal(correct, (Z.argmax(axis=0) == y).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_loss_are_exact_for_logits_of_plus_minus_1000(dtype):
    # Column 0: one huge logit; column 1: one hugely negative; column 2: two tied at +1000.
    Z = np.zeros((10, 3), dtype=dtype)
    Z[3, 0] = 1000
    Z[5, 1] = -1000
    Z[[2, 7], 2] = 1000
    y = np.array([3, 5, 7])
    A = ops.softmax(Z)
    assert np.isfinite(A).all()
    np.testing.assert_array_equal(A[:, 0], np.eye(10, dtype=dtype)[3])
    assert A[5, 1] == 0 and A[0, 1] == pytest.approx(1 / 9)
    assert A[2, 2] == A[7, 2] == 0.5
    dZ, loss, correct = ops.softmax_cross_entropy(Z.copy(), y)
    assert np.isfinite(dZ).all() and np.isfinite(loss).all()
    assert loss[0] == 0  # certain and right
    assert loss[1] == pytest.approx(1000 + np.log(9), rel=1e-6)  # -log softmax = 1000 + log 9, not inf
    assert loss[2] == pytest.approx(np.log(2), rel=1e-6)
    np.testing.assert_array_equal(correct, [1, 0, 0])  # a tie goes to the first index, as argmax does
    np.testing.assert_allclose(dZ[:, 0], 0, atol=0)
    assert dZ[5, 1] == -1
