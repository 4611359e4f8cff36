"""The GPU path against the NumPy reference. Every test here is marked gpu and skipped without one.

Kernels are checked on fresh random inputs including +-1000, in float32 and float64, with their
outputs poisoned (NaN) first so that an element a kernel fails to write cannot pass; dropout masks
drawn on the card are the CPU's, element by element. Training is checked end to end: the same seed on
GPU and CPU gives the same parameters after 50 iterations, and a run replayed as CUDA graphs is the
run launched step by step, bit for bit, however CuPy's memory pool is used between capture and replay.
The fused step adds its sums in another order than the plain path: it is held to the plain path
within rounding, its correct-prediction counts to the plain path's except where a sample's two
largest logits are too close for the rounding to decide, and to itself bit for bit (it has no
float atomics).

scripts/gpu_check.sh runs these tests in stages, by name: keep the names it lists.
"""

import json

import numpy as np
import pytest
from helpers import run_script, synthetic_csv, synthetic_digits

import nn_gpu
from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.data import rows_to_device
from nn_gpu.device import WholeBatches
from nn_gpu.fused_source import FUSED_BUILDS
from nn_gpu.model import Network
from nn_gpu.ops import REFERENCE_OPS
from nn_gpu.optim import SGD, Adam, learning_rate
from nn_gpu.training import TrainingPlan, train

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
    for scale in (1, dtype(1.25)):
        db, want_db = cp.full((33, 1), cp.nan, dtype=dtype), np.empty((33, 1), dtype)
        dZ = ops.relu_backward(cp.asarray(dA), cp.asarray(A), scale, db)
        assert dZ.dtype == db.dtype == dtype
        want = REFERENCE_OPS.relu_backward(dA.copy(), A, scale, want_db)
        np.testing.assert_array_equal(cp.asnumpy(dZ), want)
        np.testing.assert_allclose(cp.asnumpy(db), want_db, rtol=tol, atol=tol * 1001)  # sums in another order
    Z = logits(rng, dtype)
    y = rng.integers(0, 10, Z.shape[1])
    np.testing.assert_allclose(cp.asnumpy(ops.softmax(cp.asarray(Z))), REFERENCE_OPS.softmax(Z), rtol=tol, atol=tol)
    got = ops.softmax_cross_entropy(cp.asarray(Z), cp.asarray(y.astype(np.int32)))
    want = REFERENCE_OPS.softmax_cross_entropy(Z.copy(), y)
    for g in got:
        assert g.dtype == dtype and np.isfinite(cp.asnumpy(g)).all()
    (dZ, loss, correct), (want_dZ, want_loss, want_correct) = got, want
    np.testing.assert_allclose(cp.asnumpy(dZ), want_dZ, rtol=tol, atol=tol)  # dZ lies in [-1, 1]
    np.testing.assert_allclose(cp.asnumpy(loss), want_loss, rtol=tol, atol=tol * 1000)  # the loss reaches ~2000
    np.testing.assert_array_equal(cp.asnumpy(correct), want_correct)
    for eps in (0.0, 0.1):  # the output layer: bias, softmax, cross-entropy, smoothing, db and the sums
        WA, b2 = logits(rng, dtype), rng.standard_normal((10, 1)).astype(dtype)
        db, sums = cp.full((10, 1), cp.nan, dtype=dtype), cp.asarray([1.0, 2.0])
        want_db, want_sums = np.empty((10, 1), dtype), np.array([1.0, 2.0])
        dZ = ops.output_layer(cp.asarray(WA), cp.asarray(b2), cp.asarray(y.astype(np.int32)), eps, db, sums)
        want_dZ = REFERENCE_OPS.output_layer(WA.copy(), b2, y, eps, want_db, want_sums)
        np.testing.assert_allclose(cp.asnumpy(dZ), want_dZ, rtol=tol, atol=tol)
        np.testing.assert_allclose(cp.asnumpy(db), want_db, rtol=tol, atol=tol * 257)
        np.testing.assert_allclose(cp.asnumpy(sums), want_sums, rtol=tol * 100)


def draw_of(done, p, layer, width, dtype, xp):
    from nn_gpu import dropout

    scale = np.asarray(1, dtype) / np.asarray(1 - p, dtype)
    return dropout.Draw(dropout.key(11, layer), dropout.threshold(p), scale, xp.asarray([done]), 0, width)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_masks_on_the_card_are_the_cpus_element_by_element(gpu, cp, dtype):
    rng = np.random.default_rng(8)
    for (rows, width), p, layer, done in [((33, 1001), 0.5, 1, 0), ((7, 13), 0.2, 2, 41), ((1024, 128), 0.9, 3, 10**6)]:
        Z, b = rng.standard_normal((rows, width)).astype(dtype), rng.standard_normal((rows, 1)).astype(dtype)
        on_card = gpu.ops.bias_relu(cp.asarray(Z), cp.asarray(b), draw_of(done, p, layer, width, dtype, cp))
        on_host = REFERENCE_OPS.bias_relu(Z.copy(), b, draw_of(done, p, layer, width, dtype, np))
        np.testing.assert_array_equal(cp.asnumpy(on_card), on_host)  # the mask and the values, bit for bit
    samples = rng.random((300, 784)).astype(dtype)  # the inputs: A0 is their 784 x 300 transpose
    draw = (draw_of(5, 0.2, 0, 300, dtype, xp) for xp in (cp, np))
    on_card = gpu.ops.dropout(cp.asarray(samples).T, next(draw))
    assert on_card.flags.f_contiguous  # A0's layout, which the first product takes without a copy
    np.testing.assert_array_equal(cp.asnumpy(on_card), REFERENCE_OPS.dropout(samples.T, next(draw)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_gather_and_update_kernels_are_the_op_table_on_the_card(gpu, cp, dtype):
    from nn_gpu import kernels

    rng = np.random.default_rng(9)
    m, n0, size = 300, 784, 128  # batches of 128, 128, 44
    samples, y = rng.random((m, n0)).astype(dtype), rng.integers(0, 10, m).astype(np.int32)
    order = rng.permutation(m)
    for first, done in [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (2, 2), (2, 4), (1, 6)]:
        count = min(size, m - (done - first) % 3 * size)
        X_card, y_card = gpu.ops.gather(cp.asarray(samples).T, cp.asarray(y), cp.asarray(order), cp.asarray([done]),
                                        first, 3, size, count)  # fmt: skip
        X_host, y_host = REFERENCE_OPS.gather(samples.T, y, order, np.array([done]), first, 3, size, count)
        np.testing.assert_array_equal(cp.asnumpy(X_card), X_host)
        np.testing.assert_array_equal(cp.asnumpy(y_card), y_host)
    rtol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]  # the card fuses multiply-adds
    for update, rows, constants in [
        ("sgd_update", np.array([[0.1], [0.05], [0.02]], dtype), (0.9, 1e-3)),
        ("adam_update", np.array([[1e-2, 0.3, 0.99], [5e-3, 0.4, 1.0]], dtype), (0.9, 0.999, 1e-8, 0.01)),
    ]:
        moments = 1 if update == "sgd_update" else 2
        host = [rng.standard_normal(5000).astype(dtype), *[np.zeros(5000, dtype) for _ in range(moments)]]
        card = [cp.asarray(a) for a in host]
        done_host, done_card = np.array([0]), cp.asarray([0])
        for count in (1, 128, 37, 41000):
            g = rng.standard_normal(5000).astype(dtype) * count
            g_card = cp.asarray(g)
            getattr(gpu.ops, update)(card[0], g_card, *card[1:], cp.asarray(rows), done_card, count, *constants)
            getattr(REFERENCE_OPS, update)(host[0], g, *host[1:], rows, done_host, count, *constants)
            np.testing.assert_array_equal(cp.asnumpy(g_card), g)  # the mean gradient, left in g
            for found, expected in zip(card, host):
                np.testing.assert_allclose(cp.asnumpy(found), expected, rtol=rtol, atol=rtol * np.abs(expected).max())
        assert int(done_card[0]) == 4
    assert int(kernels._card(0)[1][0]) == 0  # every kernel's last block reset the arrival count


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_cublas_products_are_numpys_in_every_layout(cp, dtype):
    from nn_gpu import cublas

    rng = np.random.default_rng(10)
    for n, k, m in [(10, 784, 41000), (1024, 1024, 128), (7, 1, 3), (1, 5, 1)]:
        A, B = rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, m)).astype(dtype)
        want = A.astype(np.float64) @ B.astype(np.float64)
        tol = {np.float32: 1e-4, np.float64: 1e-12}[dtype] * np.sqrt(k)
        for A_card in (cp.asarray(A), cp.asfortranarray(cp.asarray(A))):
            for B_card in (cp.asarray(B), cp.asfortranarray(cp.asarray(B))):
                found = cublas.product(A_card, B_card)
                assert found.flags.c_contiguous and found.dtype == dtype
                np.testing.assert_allclose(cp.asnumpy(found), want, rtol=tol, atol=tol * np.abs(want).max())
        out = cp.full((n, m), cp.nan, dtype=dtype)
        assert cublas.product(cp.asarray(A), cp.asarray(B), out=out) is out
        np.testing.assert_allclose(cp.asnumpy(out), want, rtol=tol, atol=tol * np.abs(want).max())


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


def train_on(device, dtype, batch_size, images, labels, dropout=None, graphs=True):
    arch = Architecture((32,), dtype)
    rng = np.random.default_rng(0)
    network = Network(arch, device, init_parameters(arch, "he", rng))
    optimizer = SGD(network, momentum=0.9, weight_decay=1e-3)
    X, y = rows_to_device(images, device, dtype), device.to_device(labels.astype(np.int32))
    plan = TrainingPlan(
        learning_rate=0.05, iterations=50, batch_size=batch_size, log_interval=10, lr_schedule="cosine", dropout=dropout
    )
    result = train(network, optimizer, X, y, None, plan, seed=0, graphs=graphs)
    return [device.to_host(p) for p in network.params], result


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("batch_size", [None, 128])
def test_training_on_gpu_equals_training_on_cpu(cpu, gpu, dtype, rtol, batch_size):
    assert isinstance(gpu.runner(), WholeBatches)  # the GPU runs a batch whole: no host threads, no blocks
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
    from nn_gpu.commands.train import train_main

    synthetic_csv(tmp_path / "train.csv", 1500, seed=2)
    args = ["--data", str(tmp_path / "train.csv"), "--dev-size", "300", "--quiet", "--iterations", "100"]
    finals = {}
    for device in ("gpu", "cpu"):
        assert train_main([*args, "--device", device, "--output-dir", str(tmp_path / device)]) == 0
        metrics = json.loads((tmp_path / device / "metrics.json").read_text())
        assert metrics["device"] == device
        finals[device] = metrics["final"]
    assert capsys.readouterr().out.startswith("device: gpu:0 (")
    assert finals["gpu"]["dev_accuracy"] == pytest.approx(finals["cpu"]["dev_accuracy"], abs=2 / 300)
    assert finals["gpu"]["train_loss"] == pytest.approx(finals["cpu"]["train_loss"], rel=1e-4)


def test_out_of_memory_is_one_line_with_sizes_and_advice(tmp_path, cp, capsys):
    from nn_gpu.commands.train import train_main

    synthetic_csv(tmp_path / "train.csv", 3000, seed=3)
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


def near_ties(Z, rtol) -> int:
    """Samples (columns of Z, 10 x m) whose two largest logits are within rtol of each other: where
    rounding differences may decide the prediction either way."""
    top = np.sort(Z, axis=0)[-2:]
    return int(np.sum(top[1] - top[0] <= rtol * np.maximum(1, np.abs(top[1]))))


def fused_pair(
    gpu, dtype, images, labels, use_graph=True, hidden=10, adam=None, schedule=("constant", 0.05, None), variant=""
):
    """Two identical 784-H-10 networks with SGD (momentum, weight decay), or Adam (adam=False) or AdamW
    (adam=True): one for the plain path, one stepped by a FusedStep (its build `variant`) at the
    rates of `schedule`; and the data as the plain path takes it."""
    from nn_gpu import fused

    def network_and_optimizer():
        arch = Architecture((hidden,), dtype)
        network = Network(arch, gpu, init_parameters(arch, "he", np.random.default_rng(0)))
        if adam is None:
            return network, SGD(network, momentum=0.9, weight_decay=1e-3)
        return network, Adam(network, weight_decay=1e-2, decoupled=adam)

    plain, plain_optimizer = network_and_optimizer()
    fast, fast_optimizer = network_and_optimizer()
    assert fused.supports(fast)
    X, y = rows_to_device(images, gpu, dtype), gpu.to_device(labels.astype(np.int32))
    kind, alpha, total = schedule
    step = fused.FusedStep(fast, fast_optimizer, gpu.to_device(images), y, kind, alpha, total, use_graph, variant)
    return plain, plain_optimizer, fast, step, X, y


@pytest.mark.parametrize("batch_size", [None, 100, 1000], ids=["all", "100", "all-permuted"])
@pytest.mark.parametrize(("dtype", "hidden", "variant"), list(FUSED_BUILDS))
def test_fused_step_equals_gradients_then_sgd_from_the_same_parameters(gpu, cp, batch_size, dtype, hidden, variant):
    rtol = {"float64": 1e-10, "float32": 1e-4}[dtype]
    images, labels = synthetic_digits(1000, seed=4)
    plain, plain_sgd, fast, step, X, y = fused_pair(gpu, dtype, images, labels, hidden=hidden, variant=variant)
    fast.gradients(X, y)  # leaves a gradient in flat_grad: the fused step must not add to it
    rows = None if batch_size is None else cp.asarray(np.random.default_rng(1).permutation(1000)[:batch_size])
    X_batch, y_batch = (X, y) if rows is None else (X.T[rows].T, y[rows])
    Z = plain.forward(X_batch, keep=True)["Z2"]
    ties = near_ties(cp.asnumpy(Z), rtol)
    loss, correct = plain.gradients(X_batch, y_batch)
    plain_sgd.step(0.05)
    step.step(rows)
    scale = float(abs(plain.flat_grad).max())
    np.testing.assert_allclose(cp.asnumpy(fast.flat_grad), cp.asnumpy(plain.flat_grad), rtol=rtol, atol=rtol * scale)
    for p, q in zip(plain.params, fast.params):
        np.testing.assert_allclose(cp.asnumpy(q), cp.asnumpy(p), rtol=rtol, atol=rtol * float(abs(p).max()))
    fast_loss, fast_correct = step.take_sums()
    assert fast_loss == pytest.approx(float(loss), rel=rtol)
    assert abs(fast_correct - float(correct)) <= ties
    assert step.take_sums() == (0.0, 0.0)
    assert int(step.done[0]) == 1 and int(step.arrived[0]) == 0


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("batch_size", [None, 100])
@pytest.mark.parametrize("use_graph", [True, False], ids=["graph", "launches"])
@pytest.mark.parametrize("adam", [None, False, True], ids=["sgd", "adam", "adamw"])
def test_fused_training_follows_the_plain_path(gpu, cp, dtype, rtol, batch_size, use_graph, adam):
    if adam is not None and dtype == "float32":
        pytest.skip(
            "Adam's step is about lr for any gradient well above eps: float32 rounding of small gradients moves it"
        )
    images, labels = synthetic_digits(1000, seed=4)
    alpha = 0.05 if adam is None else 1e-3
    schedule = ("cosine", alpha, 50)  # a new rate each step: the graph reads it from the schedule table
    plain, plain_optimizer, fast, step, X, y = fused_pair(gpu, dtype, images, labels, use_graph, adam=adam,
                                                          schedule=schedule)  # fmt: skip
    order = np.random.default_rng(1)
    loss_sum = correct_sum = 0.0
    ties = 0
    for iteration in range(1, 51):
        rows = None if batch_size is None else cp.asarray(order.permutation(1000)[:batch_size])
        X_batch, y_batch = (X, y) if rows is None else (X.T[rows].T, y[rows])
        ties += near_ties(
            cp.asnumpy(plain.forward(X_batch, keep=True)["Z2"]), 10 * rtol
        )  # the paths drift apart within rtol
        loss, correct = plain.gradients(X_batch, y_batch)
        plain_optimizer.step(learning_rate("cosine", alpha, iteration, 50))
        loss_sum, correct_sum = loss_sum + float(loss), correct_sum + float(correct)
        step.step(rows)
    if use_graph:  # the first step of a batch size launches; the second captures; the rest replay
        assert all(buffers["graph"] is not None for buffers in step._buffers.values())
    for p, q in zip(plain.params, fast.params):
        np.testing.assert_allclose(cp.asnumpy(q), cp.asnumpy(p), rtol=10 * rtol, atol=10 * rtol * float(abs(p).max()))
    fast_loss, fast_correct = step.take_sums()
    assert fast_loss == pytest.approx(loss_sum, rel=10 * rtol)
    assert abs(fast_correct - correct_sum) <= ties
    assert int(step.done[0]) == 50


@pytest.mark.parametrize(("dtype", "variant"), [("float64", ""), ("float32", ""), ("float32", "ahead")])
def test_fused_graph_replays_what_the_launches_compute(gpu, cp, dtype, variant):
    # No float atomics: the same steps give the same bits, replayed or launched, run after run.
    images, labels = synthetic_digits(1000, seed=6)
    runs = []
    for use_graph in (True, False, True):
        _, _, fast, step, _, _ = fused_pair(gpu, dtype, images, labels, use_graph, variant=variant)
        rows = cp.asarray(np.arange(128, dtype=np.int64))
        for _ in range(10):
            step.step(rows)
            step.step()
        runs.append((cp.asnumpy(fast.flat), cp.asnumpy(fast.flat_grad), step.take_sums()))
    for run in runs[1:]:
        np.testing.assert_array_equal(run[0], runs[0][0])
        np.testing.assert_array_equal(run[1], runs[0][1])
        assert run[2] == runs[0][2]


def test_fused_step_refuses_what_it_was_not_built_for(gpu):
    from nn_gpu import fused

    for arch in (
        Architecture((64,)),
        Architecture((12,)),
        Architecture((32,), "float64"),
        Architecture((16, 16)),
        Architecture((16,), n_inputs=64),
        Architecture((16,), n_classes=3),
        Architecture((16,), batch_norm=True),
    ):
        network = Network(arch, gpu, init_parameters(arch, "he", np.random.default_rng(0)))
        assert not fused.supports(network)
        with pytest.raises(ValueError, match=r"784 inputs, one hidden layer of 10, 16, 32 units \(10, 16 in float64\)"):
            fused.FusedStep(network, SGD(network), np.zeros((4, 784), np.uint8), np.zeros(4, np.int32))


def test_cupy_builds_only_the_kernel_sources_ci_compiles(gpu, cp):
    # Every path that calls the kernels, in both dtypes: full-batch and mini-batch training (forward,
    # backward, update), evaluation, and the prediction of one sample (predict.py --image). Then each
    # source CuPy generated, as nn_gpu.cuda_compile writes it for CI, must be one CI compiles.
    from nn_gpu import cuda_compile, kernels

    images, labels = synthetic_digits(600, seed=7)
    for dtype in ("float32", "float64"):
        for batch_size in (None, 128):
            train_on(gpu, dtype, batch_size, images, labels)
            train_on(gpu, dtype, batch_size, images, labels, dropout=(0.2, 0.5))
        arch = Architecture((16, 12), dtype)
        network = Network(arch, gpu, init_parameters(arch, "he", np.random.default_rng(0)))
        X, y = rows_to_device(images, gpu, dtype), gpu.to_device(labels.astype(np.int32))
        network.evaluate(X, y, batch_size=256)
        network.predict_proba(rows_to_device(images[:1], gpu, dtype))
    built = {
        kernel.name: {
            cuda_compile.elementwise_code(kernel, infos, types) for _, infos, types in kernel._elementwise_kernel_memo
        }
        for kernel in kernels.ELEMENTWISE_KERNELS
    }
    assert all(built.values()), built.keys()
    compiled_in_ci = {source.code for source in cuda_compile.elementwise_sources()}
    for name, codes in built.items():
        assert codes <= compiled_in_ci, f"{name}: CuPy built a layout that KERNEL_LAYOUTS does not list"


def test_train_and_predict_scripts_on_a_chosen_card(tmp_path, cp):
    synthetic_csv(tmp_path / "train.csv", 1200, seed=5)
    name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    out = tmp_path / "run"
    result = run_script(
        "train.py", "--device", "gpu:0", "--data", tmp_path / "train.csv", "--iterations", 50, "--output-dir", out
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"device: gpu:0 ({name})"
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["device"], metrics["device_index"], metrics["device_name"]) == ("gpu", 0, name)
    result = run_script(
        "predict.py", "--device", "gpu", "--model", out / "model.npz", "--data", tmp_path / "train.csv",
        "--out", tmp_path / "submission.csv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"(device: gpu:0 ({name}))" in result.stdout and "accuracy: " in result.stdout
    count = cp.cuda.runtime.getDeviceCount()
    result = run_script("train.py", "--device", f"gpu:{count}", "--output-dir", tmp_path / "none")
    assert result.returncode == 2 and result.stderr.startswith(f"error: --device gpu:{count}: no such card: ")
    assert not (tmp_path / "none").exists()


def test_best_model_early_stopping_and_resume_on_the_gpu(tmp_path, cp):
    from nn_gpu.checkpoint import load_model
    from nn_gpu.commands.train import train_main

    csv = synthetic_csv(tmp_path / "train.csv", 700, seed=4)
    common = ["--device", "gpu", "--data", str(csv), "--dev-size", "100", "--hidden", "16", "--quiet"]
    flags = [*common, "--batch-size", "8", "--alpha", "0.5", "--log-interval", "5", "--early-stopping", "4"]
    assert train_main([*flags, "--iterations", "3000", "--output-dir", str(tmp_path / "stop")]) == 0
    metrics = json.loads((tmp_path / "stop" / "metrics.json").read_text())
    assert metrics["stopped_early"] and metrics["best"]["dev_accuracy"] == max(
        h["dev_accuracy"] for h in metrics["history"]
    )
    arch, params = load_model(tmp_path / "stop" / "best_model.npz")
    net = nn_gpu.Network(arch, nn_gpu.resolve_device("cpu"), params)
    dev = nn_gpu.load_dataset(str(csv)).split(100, seed=0)[1]
    assert abs(net.evaluate(dev.X, dev.y)[1] - metrics["best"]["dev_accuracy"]) <= 1 / 100  # the GPU's best, on the CPU
    by_epochs = [*common, "--output-dir", str(tmp_path / "short")]
    assert train_main([*by_epochs, "--epochs", "2"]) == 0
    assert train_main(["--device", "gpu", "--quiet", "--resume", str(tmp_path / "short"), "--epochs", "4"]) == 0
    assert train_main([*common, "--epochs", "4", "--output-dir", str(tmp_path / "long")]) == 0
    for a, b in zip(load_model(tmp_path / "short" / "model.npz")[1], load_model(tmp_path / "long" / "model.npz")[1]):
        np.testing.assert_array_equal(a, b)  # extended = one run of 4 epochs, bit for bit on one card


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 1e-4)])
def test_the_python_api_runs_on_the_gpu_as_on_the_cpu(cp, dtype, rtol):
    images, labels = synthetic_digits(300, seed=2)
    X, y = images.T, labels  # host arrays: the API moves them to the device
    nets = {name: nn_gpu.Network.create(hidden=(10, 8), device=name, seed=0, dtype=dtype) for name in ("cpu", "gpu")}
    caches = {name: net.forward(X, keep=True) for name, net in nets.items()}
    grads = {name: nets[name].backward(cache, y) for name, cache in caches.items()}
    for arrays in (caches, grads):
        assert list(arrays["gpu"]) == list(arrays["cpu"])
        for name, expected in arrays["cpu"].items():
            found = arrays["gpu"][name]
            assert isinstance(found, cp.ndarray) and found.dtype == expected.dtype, name
            scale = float(np.abs(expected).max())
            np.testing.assert_allclose(cp.asnumpy(found), expected, rtol=rtol, atol=rtol * scale, err_msg=name)
    nets["gpu"].step(grads["gpu"], alpha=0.1)
    fast = nn_gpu.Network.create(hidden=(10, 8), device="gpu", seed=0, dtype=dtype)
    nn_gpu.train(fast, X, y, iterations=1, log=None)  # the same kernels as forward, backward and step
    np.testing.assert_allclose(
        cp.asnumpy(fast.flat), cp.asnumpy(nets["gpu"].flat), rtol=1e-12 if dtype == "float64" else 1e-6
    )
    table = nn_gpu.gradcheck(nets["gpu"], X[:, :16], y[:16], entries=30)
    assert table["passed"].all(), table.to_string()
    assert nets["gpu"].predict(X).shape == (300,)


@pytest.mark.parametrize(("dtype", "atol"), [("float64", 1e-12), ("float32", 1e-5)])
def test_augmentation_is_the_same_on_both_devices(cp, dtype, atol):
    from nn_gpu.augment import AUGMENTATIONS, batch_rng, distort

    images = synthetic_digits(200, seed=4)[0]
    for name, distortion in AUGMENTATIONS.items():
        on_card = distort(cp.asarray(images), distortion, batch_rng(0, 7), dtype)
        on_host = distort(images, distortion, batch_rng(0, 7), dtype)
        assert isinstance(on_card, cp.ndarray) and on_card.dtype == dtype and on_card.shape == (200, 784)
        np.testing.assert_allclose(cp.asnumpy(on_card), on_host, atol=atol, err_msg=name)


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 1e-3)])
def test_the_ladders_recipe_on_the_gpu_follows_the_cpu(cpu, gpu, dtype, rtol):
    """AdamW, dropout and distorted batches: the masks are Philox's on both devices, and the distortions are
    drawn on the host, so both devices take the same steps."""
    from nn_gpu.optim import make_optimizer

    images, labels = synthetic_digits(1000, seed=1)
    params = []
    for device in (gpu, cpu):
        arch = Architecture((32, 16), dtype)
        network = Network(arch, device, init_parameters(arch, "he", np.random.default_rng(0)))
        optimizer = make_optimizer("adamw", network, weight_decay=0.01)
        X, y = rows_to_device(images, device, dtype), device.to_device(labels.astype(np.int32))
        plan = TrainingPlan(learning_rate=1e-3, epochs=2, batch_size=100, dropout=(0.2, 0.5), augment="affine+elastic")
        train(network, optimizer, X, y, None, plan, seed=0)
        params.append([device.to_host(p) for p in network.params])
    for g, c in zip(*params):
        np.testing.assert_allclose(g, c, rtol=rtol, atol=rtol * np.abs(c).max())


GRAPH_RECIPES = {  # hidden, batch, optimizer, settings, dropout, label smoothing
    "full batch, sgd": ((16,), None, "sgd", {}, None, 0.0),
    "mini-batch, momentum": ((64,), 128, "sgd", {"momentum": 0.9, "weight_decay": 1e-3}, None, 0.0),
    "adamw, dropout, smoothing": ((64, 32), 100, "adamw", {"weight_decay": 0.01}, (0.2, 0.5), 0.1),
    "adam, three layers": ((32, 24, 16), 64, "adam", {"weight_decay": 1e-4}, (0.1, 0.3), 0.0),
}


def churn(cp, rounds=20):
    """Use CuPy's pool as other code would: arrays of many sizes made, filled with NaN, freed, again."""
    rng = np.random.default_rng(12)
    for _ in range(rounds):
        held = [cp.full(int(n), cp.nan, dtype=cp.float32) for n in rng.integers(1, 2**18, 16)]
        del held


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("recipe", list(GRAPH_RECIPES))
def test_a_graphed_run_is_the_eager_run_bit_for_bit(gpu, cp, monkeypatch, recipe, dtype):
    """The same steps replayed as CUDA graphs and launched one by one from the same start give the same
    parameters, optimiser state, sums and step count, bit for bit, with CuPy's pool churned between
    capture and replay; the run crosses epochs, a short last batch and schedule windows."""
    from nn_gpu import step as step_module
    from nn_gpu.optim import make_optimizer

    monkeypatch.setattr(step_module, "SCHEDULE_WINDOW", 7)
    hidden, batch, name, settings, rates, eps = GRAPH_RECIPES[recipe]
    images, labels = synthetic_digits(300, seed=11)
    finals = {}
    for graphed in (True, False):
        arch = Architecture(hidden, dtype)
        network = Network(arch, gpu, init_parameters(arch, "he", np.random.default_rng(0)))
        optimizer = make_optimizer(name, network, **settings)
        plan = TrainingPlan(learning_rate=0.01, iterations=50, batch_size=batch, dropout=rates, label_smoothing=eps,
                            lr_schedule="cosine")  # fmt: skip
        X, y = rows_to_device(images, gpu, dtype), gpu.to_device(labels.astype(np.int32))
        step = step_module.TrainingStep(network, optimizer, X, y, plan, seed=5, done=0, graphs=graphed)
        for first in range(1, 51, 7):
            step.run(first, min(50, first + 6))
            churn(cp)  # between capture and replay, and between replays
        assert bool(step.graphs) == graphed
        finals[graphed] = [cp.asnumpy(a) for a in (network.flat, *optimizer.state, step.sums, step.done)]
    for graphed, eager in zip(finals[True], finals[False]):
        np.testing.assert_array_equal(graphed, eager)
    assert finals[True][-1][0] == 50


def test_a_step_graph_holds_the_kernels_of_a_step(gpu, cp):
    """The captured step is the op table's calls: a kernel node for each (cuBLAS may use more than one
    for a product), no memory copy to or from the host."""
    from nn_gpu import step as step_module
    from nn_gpu.bench.perf import graph_nodes
    from nn_gpu.optim import make_optimizer

    images, labels = synthetic_digits(1000, seed=2)
    arch = Architecture((128,), "float32")
    network = Network(arch, gpu, init_parameters(arch, "he", np.random.default_rng(0)))
    plan = TrainingPlan(iterations=10, batch_size=128)
    X, y = rows_to_device(images, gpu, "float32"), gpu.to_device(labels.astype(np.int32))
    step = step_module.TrainingStep(network, make_optimizer("sgd", network), X, y, plan, seed=0, done=0)
    step.run(1, 2)
    nodes = graph_nodes(step.graphs[128, 1])
    print(f"one mini-batch step of 784-128-10: {dict(nodes)} (10 op calls)")
    assert 10 <= nodes["kernel"] <= 14 and nodes["memcpy"] == 0 and nodes["host"] == 0


def test_train_with_graphs_equals_train_without_and_resumes_bit_for_bit(gpu, cp):
    from nn_gpu.optim import make_optimizer
    from nn_gpu.training import Hooks, Progress

    images, labels = synthetic_digits(700, seed=3)
    plan = TrainingPlan(
        learning_rate=1e-3, epochs=3, batch_size=64, dropout=(0.2, 0.5), lr_schedule="cosine", log_interval=7
    )
    runs = []
    for graphs, stop in ((True, False), (False, False), (True, True)):
        arch = Architecture((48,), "float32")
        network = Network(arch, gpu, init_parameters(arch, "he", np.random.default_rng(0)))
        optimizer = make_optimizer("adamw", network, weight_decay=0.01)
        X, y = rows_to_device(images, gpu, "float32"), gpu.to_device(labels.astype(np.int32))
        progress = None
        if stop:  # stopped at iteration 14 (mid-epoch) and resumed from its state, as --resume does
            first = train(
                network, optimizer, X, y, None, plan, seed=1, hooks=Hooks(on_log=lambda entry: entry["iteration"] >= 14)
            )
            assert first.iteration == 14
            state = [cp.asnumpy(s) for s in optimizer.state]
            optimizer = make_optimizer("adamw", network, weight_decay=0.01, state=state, steps=first.iteration)
            progress = Progress(iteration=first.iteration, history=first.history)
        result = train(network, optimizer, X, y, None, plan, seed=1, progress=progress, graphs=graphs)
        runs.append((cp.asnumpy(network.flat), [h["train_loss"] for h in result.history]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    np.testing.assert_array_equal(runs[2][0], runs[0][0])


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-9), ("float32", 1e-3)])
def test_the_estimator_on_the_gpu_is_the_estimator_on_the_cpu(cp, dtype, rtol):
    """nn_gpu.MLPClassifier, 64 features and 3 text classes (a softmax over 3, not 10): the same seed gives
    the same model on the card as on the CPU (to rounding), and twice on the card, the same bits."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 64))
    y = np.array(["ant", "bee", "cat"])[(X[:, :3] @ [1.0, -1.0, 0.5] > 0).astype(int) + (X[:, 3] > 1)]
    fitted = {}
    for device in ("gpu", "cpu", "gpu"):
        for solver in ("sgd", "adam"):
            clf = nn_gpu.MLPClassifier((32, 16), solver, max_iter=4, random_state=3, device=device, dtype=dtype)
            fitted.setdefault((device, solver), []).append(clf.fit(X, y))
    for solver in ("sgd", "adam"):
        (gpu_a, gpu_b), (on_cpu,) = fitted[("gpu", solver)], fitted[("cpu", solver)]
        for a, b, c in zip(gpu_a.coefs_, gpu_b.coefs_, on_cpu.coefs_):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a, c, rtol=rtol, atol=rtol * np.abs(c).max())
        assert list(gpu_a.classes_) == ["ant", "bee", "cat"]
        assert (gpu_a.predict(X) == on_cpu.predict(X)).mean() > 0.99
        np.testing.assert_allclose(gpu_a.loss_curve_, on_cpu.loss_curve_, rtol=rtol)


def test_a_table_trains_and_predicts_on_the_gpu(tmp_path, cp):
    """train.py and predict.py --device gpu on a CSV table of 5 features and 4 text labels."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 5)) * [1, 10, 100, 0.1, 1] + 50
    labels = np.array(["w", "x", "y", "z"])[(X[:, 0] > 50).astype(int) * 2 + (X[:, 1] > 50)]
    rows = "\n".join(",".join([*map(str, row), label]) for row, label in zip(X, labels))
    (tmp_path / "t.csv").write_text("a,b,c,d,e,kind\n" + rows + "\n")
    result = run_script("train.py", "--device", "gpu", "--data", tmp_path / "t.csv", "--label-column", "kind",
                        "--hidden", "16", "--epochs", "30", "--batch-size", "32", "--optimizer", "adam",
                        "--alpha", "0.01", "--dev-size", "100", "--output-dir", tmp_path / "run")  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["device"] == "gpu" and metrics["final"]["dev_accuracy"] > 0.9
    result = run_script("predict.py", "--device", "gpu", "--model", tmp_path / "run" / "best_model.npz",
                        "--data", tmp_path / "t.csv", "--out", tmp_path / "p.csv")  # fmt: skip
    assert result.returncode == 0, result.stderr
    predicted = [line.split(",")[1] for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert np.mean(np.array(predicted) == labels) > 0.9


def test_the_page_server_on_the_gpu_answers_as_on_the_cpu(tmp_path, cp):
    """nn_gpu.serve's forward pass on the card: the same picture gives the CPU's 28 x 28 digit, hidden
    activations and probabilities; and scripts/serve.py --device gpu serves it."""
    import base64
    import http.client
    import io
    import re

    from helpers import start_serve, stop_serve
    from PIL import Image, ImageDraw

    from nn_gpu.serve import Demo

    picture = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(picture).ellipse([(80, 40), (200, 240)], outline=255, width=20)
    png = io.BytesIO()
    picture.save(png, format="PNG")
    cpu_net = Network.create(hidden=(32, 16), device="cpu", seed=4)
    gpu_net = Network(
        cpu_net.arch, nn_gpu.device.resolve_device("gpu"), [cpu_net.device.to_host(p) for p in cpu_net.params]
    )
    on_cpu, on_gpu = (
        Demo(net, tmp_path / "m.npz", np.arange(10)).predict(png.getvalue()) for net in (cpu_net, gpu_net)
    )
    assert on_gpu["seen"] == on_cpu["seen"] and on_gpu["top"] == on_cpu["top"]
    for A_gpu, A_cpu in zip([*on_gpu["hidden"], on_gpu["probabilities"]], [*on_cpu["hidden"], on_cpu["probabilities"]]):
        np.testing.assert_allclose(A_gpu, A_cpu, rtol=1e-4, atol=1e-5)

    nn_gpu.save_model(cpu_net, tmp_path / "m.npz")
    server, url = start_serve("--model", tmp_path / "m.npz", "--port", 0, "--device", "gpu")
    try:
        host, port = re.match(r"http://([\d.]+):(\d+)/$", url).groups()
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request(
            "POST", "/api/predict", body=json.dumps({"image": base64.b64encode(png.getvalue()).decode()})
        )
        response = connection.getresponse()
        assert response.status == 200
        np.testing.assert_allclose(json.loads(response.read())["probabilities"], on_cpu["probabilities"], atol=1e-5)
        connection.request("GET", "/api/model")
        assert json.loads(connection.getresponse().read())["device"].startswith("gpu")
    finally:
        code, _ = stop_serve(server)
    assert code == 0


def test_batch_norm_and_weight_averaging_on_the_gpu_follow_the_cpu_and_graph(cpu, gpu):
    """Batch norm's statistics and the weights' average are device work inside the step: the card follows the
    CPU (float64), and a graphed run gives the eager run's bits, running statistics and average included."""
    images, labels = synthetic_digits(500, seed=3)
    states = {}
    for device, graphs in ((cpu, True), (gpu, True), (gpu, False)):
        net = Network.create(hidden=(32, 16), device=device, seed=0, dtype="float64", batch_norm=True)
        nn_gpu.train(net, images.T, labels, epochs=3, batch_size=64, optimizer="adamw", learning_rate=0.003,
                     average_weights=0.9, log=None, graphs=graphs)  # fmt: skip
        states[device.name, graphs] = device.to_host(net.state)
    np.testing.assert_allclose(states["gpu", True], states["cpu", True], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(states["gpu", True], states["gpu", False])
