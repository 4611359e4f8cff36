"""The GPU path against the NumPy reference. Every test here is marked gpu and skipped without one.

Kernels are checked on fresh random inputs including +-1000, in float32 and float64, with their
outputs poisoned (NaN) first so that an element a kernel fails to write cannot pass. Training is
checked end to end: the same seed on GPU and CPU gives the same parameters after 50 iterations.
"""

import json

import numpy as np
import pytest

from conftest import synthetic_digits, write_kaggle_csv
from nn_gpu.data import to_inputs
from nn_gpu.model import Architecture, Network, init_parameters
from nn_gpu.ops import REFERENCE_OPS
from nn_gpu.optim import SGD, learning_rate
from nn_gpu.training import Schedule, train

pytestmark = pytest.mark.gpu
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture
def cp():
    import cupy

    return cupy


def logits(rng, dtype, C=10, m=257):
    """C x m logits: moderate values, plus columns with +-1000 entries."""
    Z = 5 * rng.standard_normal((C, m))
    Z[rng.integers(0, C, 20), rng.integers(0, m, 20)] = 1000
    Z[rng.integers(0, C, 20), rng.integers(0, m, 20)] = -1000
    return Z.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("use_kernels", [True, False], ids=["kernels", "plain-cupy"])
def test_ops_match_numpy(gpu, cp, dtype, use_kernels):
    ops = gpu.ops if use_kernels else REFERENCE_OPS
    rng = np.random.default_rng(7)
    tol = TOLERANCE[dtype]
    Z = (100 * rng.standard_normal((33, 1001))).astype(dtype)
    b = rng.standard_normal((33, 1)).astype(dtype)
    np.testing.assert_array_equal(cp.asnumpy(ops.bias_relu(cp.asarray(Z), cp.asarray(b))), np.maximum(Z + b, 0))
    A = np.maximum(Z, 0)
    dA = rng.standard_normal(Z.shape).astype(dtype)
    dZ = ops.relu_backward(cp.asarray(dA), cp.asarray(A))
    assert dZ.dtype == dtype
    np.testing.assert_array_equal(cp.asnumpy(dZ), REFERENCE_OPS.relu_backward(dA.copy(), A))
    Z = logits(rng, dtype)
    y = rng.integers(0, 10, Z.shape[1])
    np.testing.assert_allclose(cp.asnumpy(ops.softmax(cp.asarray(Z))), REFERENCE_OPS.softmax(Z), rtol=tol, atol=tol)
    got = ops.softmax_cross_entropy(cp.asarray(Z), cp.asarray(y.astype(np.int32)))
    want = REFERENCE_OPS.softmax_cross_entropy(Z.copy(), y)
    for g, w in zip(got, want):
        assert g.dtype == dtype and np.isfinite(cp.asnumpy(g)).all()
        np.testing.assert_allclose(cp.asnumpy(g), w, rtol=tol, atol=tol * 1000)  # loss reaches ~2000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_kernels_write_every_output(cp, dtype):
    from nn_gpu import kernels

    rng = np.random.default_rng(8)
    Z = cp.asarray(logits(rng, dtype, m=1000))
    A = cp.full_like(Z, cp.nan)
    kernels._softmax(Z, 10, A, size=1000)
    np.testing.assert_allclose(
        cp.asnumpy(A), REFERENCE_OPS.softmax(cp.asnumpy(Z)), rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype]
    )
    y = cp.asarray(rng.integers(0, 10, 1000).astype(np.int32))
    loss = cp.full(1000, cp.nan, dtype=dtype)
    correct = cp.full(1000, cp.nan, dtype=dtype)
    kernels._softmax_cross_entropy(y, 10, Z, loss, correct)
    assert not cp.isnan(loss).any() and not cp.isnan(correct).any() and not cp.isnan(Z).any()


def train_on(device, dtype, batch_size, images, labels):
    arch = Architecture((32,), dtype)
    rng = np.random.default_rng(0)
    network = Network(arch, device, init_parameters(arch, "he", rng))
    optimizer = SGD(network, momentum=0.9, weight_decay=1e-3)
    X, y = to_inputs(images, device, dtype), device.to_device(labels.astype(np.int32))
    schedule = Schedule(alpha=0.05, iterations=50, batch_size=batch_size, log_interval=10, lr_schedule="cosine")
    result = train(network, optimizer, X, y, None, schedule, seed=0)
    return [device.to_host(p) for p in network.params], result


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("batch_size", [None, 128])
def test_training_on_gpu_equals_training_on_cpu(cpu, gpu, dtype, rtol, batch_size):
    images, labels = synthetic_digits(2000, seed=1)
    gpu_params, gpu_result = train_on(gpu, dtype, batch_size, images, labels)
    cpu_params, cpu_result = train_on(cpu, dtype, batch_size, images, labels)
    for g, c in zip(gpu_params, cpu_params):
        assert g.dtype == c.dtype == dtype
        np.testing.assert_allclose(g, c, rtol=rtol, atol=rtol * np.abs(c).max())
    assert gpu_result.final["train_accuracy"] == pytest.approx(
        cpu_result.final["train_accuracy"], abs=1 / 2000 if dtype == "float32" else 0
    )
    assert [h["train_accuracy"] for h in gpu_result.history] == pytest.approx(
        [h["train_accuracy"] for h in cpu_result.history], abs=2e-3
    )


def test_train_script_on_gpu_matches_the_cpu(tmp_path, capsys):
    from nn_gpu.cli import train_main

    images, labels = synthetic_digits(1500, seed=2)
    write_kaggle_csv(tmp_path / "train.csv", images, labels)
    args = ["--data", str(tmp_path / "train.csv"), "--dev-size", "300", "--quiet", "--iterations", "100"]
    finals = {}
    for device in ("gpu", "cpu"):
        assert train_main([*args, "--device", device, "--output-dir", str(tmp_path / device)]) == 0
        metrics = json.loads((tmp_path / device / "metrics.json").read_text())
        assert metrics["device"] == device
        finals[device] = metrics["final"]
    assert capsys.readouterr().out.startswith("device: gpu (")
    assert finals["gpu"]["dev_accuracy"] == pytest.approx(finals["cpu"]["dev_accuracy"], abs=2 / 300)
    assert finals["gpu"]["train_loss"] == pytest.approx(finals["cpu"]["train_loss"], rel=1e-4)


def test_out_of_memory_is_one_line_with_sizes_and_advice(tmp_path, cp, capsys):
    from nn_gpu.cli import train_main

    images, labels = synthetic_digits(3000, seed=3)
    write_kaggle_csv(tmp_path / "train.csv", images, labels)
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    pool.set_limit(size=4 * 1024 * 1024)  # 4 MiB: X alone needs 3000 x 784 x 4 bytes = 9.4 MB
    try:
        code = train_main(
            ["--device", "gpu", "--data", str(tmp_path / "train.csv"), "--output-dir", str(tmp_path / "out")]
        )
    finally:
        pool.set_limit(size=0)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: GPU out of memory: ") and "bytes" in err and "--batch-size" in err
    assert not (tmp_path / "out" / "model.npz").exists()


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("batch_size", [None, 100])
@pytest.mark.parametrize("use_graph", [True, False], ids=["graph", "launches"])
def test_fused_step_equals_the_plain_path(gpu, cp, dtype, rtol, batch_size, use_graph):
    from nn_gpu import fused

    images, labels = synthetic_digits(1000, seed=4)

    def network_and_optimizer():
        arch = Architecture((10,), dtype)
        network = Network(arch, gpu, init_parameters(arch, "he", np.random.default_rng(0)))
        return network, SGD(network, momentum=0.9, weight_decay=1e-3)

    plain, plain_sgd = network_and_optimizer()
    fast, fast_sgd = network_and_optimizer()
    assert fused.supports(fast)
    X, y = to_inputs(images, gpu, dtype), gpu.to_device(labels.astype(np.int32))
    step = fused.FusedStep(fast, fast_sgd, gpu.to_device(images), y, use_graph=use_graph)
    order = np.random.default_rng(1)
    loss_sum = correct_sum = 0.0
    for iteration in range(1, 51):
        lr = learning_rate("cosine", 0.05, iteration, 50)
        rows = None if batch_size is None else cp.asarray(order.permutation(1000)[:batch_size])
        X_batch, y_batch = (X, y) if rows is None else (X.T[rows].T, y[rows])
        loss, correct = plain.gradients(X_batch, y_batch)
        plain_sgd.step(lr)
        loss_sum, correct_sum = loss_sum + float(loss), correct_sum + float(correct)
        step.step(lr, rows)
    for p, q in zip(plain.params, fast.params):
        np.testing.assert_allclose(cp.asnumpy(q), cp.asnumpy(p), rtol=rtol, atol=rtol * float(abs(p).max()))
    fast_loss, fast_correct = step.take_sums()
    assert fast_loss == pytest.approx(loss_sum, rel=rtol)
    assert fast_correct == pytest.approx(correct_sum, abs=0 if dtype == "float64" else 3)
    assert step.take_sums() == (0.0, 0.0)


def test_fused_step_refuses_deeper_or_wider_networks(gpu):
    from nn_gpu import fused

    for hidden in ((64,), (16, 16)):
        arch = Architecture(hidden, "float32")
        network = Network(arch, gpu, init_parameters(arch, "he", np.random.default_rng(0)))
        assert not fused.supports(network)
        with pytest.raises(ValueError, match="one hidden layer of at most 32 units"):
            fused.FusedStep(network, SGD(network), np.zeros((4, 784), np.uint8), np.zeros(4, np.int32))
