"""The Python API a learner uses: one iteration by hand in the notebook's names, checked against the
notebook's equations written out in NumPy (helpers.hand_iteration), and against nn_gpu.train, bit for bit."""

import numpy as np
import pytest
from helpers import hand_iteration, synthetic_digits

import nn_gpu
from nn_gpu.errors import DataError, ModelFileError

NOTEBOOK_NAMES = {
    (10,): (["A0", "Z1", "A1", "Z2", "A2"], ["dZ2", "dW2", "db2", "dZ1", "dW1", "db1"]),
    (7, 5): (
        ["A0", "Z1", "A1", "Z2", "A2", "Z3", "A3"],
        ["dZ3", "dW3", "db3", "dZ2", "dW2", "db2", "dZ1", "dW1", "db1"],
    ),
}


@pytest.fixture(scope="module")
def batch():
    images, labels = synthetic_digits(300, seed=2)
    return images.T, labels  # X: 784 x m uint8, one column per sample


@pytest.mark.parametrize("hidden", [(10,), (7, 5)])
def test_one_iteration_by_hand_has_the_notebooks_names_shapes_and_numbers(batch, hidden):
    X, y = batch
    net = nn_gpu.Network.create(hidden=hidden, device="cpu", seed=1, dtype="float64")
    for b in net.b:
        b += 0.01  # nonzero biases, so that a dropped b shows
    cache = net.forward(X, keep=True)
    grads = net.backward(cache, y)
    cache_names, grad_names = NOTEBOOK_NAMES[hidden]
    assert list(cache) == cache_names and list(grads) == grad_names
    expected_cache, expected_grads = hand_iteration([p.copy() for p in net.params], X / 255, y)
    sizes = (784, *hidden, 10)
    for name, array in cache.items():
        assert array.shape == (sizes[int(name[1:])], 300) and array.dtype == np.float64, name
        np.testing.assert_allclose(array, expected_cache[name], rtol=1e-12, atol=1e-12, err_msg=name)
    for name, array in grads.items():
        l = int(name[2:])
        shape = {"dZ": (sizes[l], 300), "dW": (sizes[l], sizes[l - 1]), "db": (sizes[l], 1)}[name[:2]]
        assert array.shape == shape, name
        np.testing.assert_allclose(array, expected_grads[name], rtol=1e-10, atol=1e-14, err_msg=name)
    before = [p.copy() for p in net.params]
    net.step(grads, alpha=0.25)
    for name, p, p0 in zip(net.parameter_names, net.params, before):
        np.testing.assert_array_equal(p, p0 - 0.25 * grads[f"d{name}"], err_msg=name)  # W := W - alpha dW


def test_arrays_print_their_names_shapes_and_equations(batch):
    X, y = batch
    net = nn_gpu.Network.create(hidden=(10,), device="cpu", seed=0)
    cache = net.forward(X, keep=True)
    assert repr(cache).splitlines() == [
        "A0  784 x 300  float32  X: pixels / 255, one column per sample",
        "Z1   10 x 300  float32  W1 A0 + b1",
        "A1   10 x 300  float32  ReLU(Z1)",
        "Z2   10 x 300  float32  W2 A1 + b2",
        "A2   10 x 300  float32  softmax(Z2)",
    ]
    assert repr(net.backward(cache, y)).splitlines() == [
        "dZ2  10 x 300  float32  A2 - Y",
        "dW2   10 x 10  float32  dZ2 A1^T / m",
        "db2    10 x 1  float32  sum over samples of dZ2 / m",
        "dZ1  10 x 300  float32  W2^T dZ2 * ReLU'(Z1)",
        "dW1  10 x 784  float32  dZ1 A0^T / m",
        "db1    10 x 1  float32  sum over samples of dZ1 / m",
    ]
    cache["loss"] = 2.3  # a learner's own entry prints too
    assert repr(cache).splitlines()[-1] == "loss" + " " * 13 + "float"  # no shape, no equation
    assert repr(net) == "Network(784-10-10, float32, 7,960 parameters, on cpu (NumPy " + np.__version__ + "))"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pixels", ["uint8", "float"])
def test_forward_backward_step_is_train_bit_for_bit(batch, dtype, pixels):
    X, y = batch
    X = X if pixels == "uint8" else X / np.float32(255)
    by_hand = nn_gpu.Network.create(hidden=(16,), device="cpu", seed=3, dtype=dtype)
    for _ in range(25):
        by_hand.step(by_hand.backward(by_hand.forward(X, keep=True), y), alpha=0.1)
    fast = nn_gpu.Network.create(hidden=(16,), device="cpu", seed=3, dtype=dtype)
    progress = nn_gpu.train(fast, X, y, iterations=25, log=None)
    assert progress.iteration == 25
    assert not np.array_equal(fast.flat, nn_gpu.Network.create(hidden=(16,), device="cpu", seed=3, dtype=dtype).flat)
    np.testing.assert_array_equal(by_hand.flat, fast.flat)


def test_train_over_blocks_of_samples_gives_the_same_numbers_up_to_the_order_of_additions():
    images, labels = synthetic_digits(2500, seed=5)  # three blocks of 1,024 on the CPU
    by_hand = nn_gpu.Network.create(hidden=(12,), device="cpu", seed=0, dtype="float64")
    for _ in range(5):
        by_hand.step(by_hand.backward(by_hand.forward(images.T, keep=True), labels), alpha=0.1)
    fast = nn_gpu.Network.create(hidden=(12,), device="cpu", seed=0, dtype="float64")
    nn_gpu.train(fast, images.T, labels, iterations=5, log=None)
    np.testing.assert_allclose(fast.flat, by_hand.flat, rtol=1e-12, atol=1e-15)


def test_train_logs_and_evaluates_the_dev_set(batch):
    X, y = batch
    net = nn_gpu.Network.create(hidden=(10,), device="cpu", seed=0)
    lines = []
    progress = nn_gpu.train(
        net, X[:, :200], y[:200], iterations=30, log_interval=10, dev=(X[:, 200:], y[200:]), log=lines.append
    )
    assert [entry["iteration"] for entry in progress.history] == [10, 20, 30]
    assert len(lines) == 3 and lines[-1].startswith("iteration     30  train loss ")
    assert progress.final["dev_accuracy"] == pytest.approx(np.mean(net.predict(X[:, 200:]) == y[200:]))
    losses = [entry["train_loss"] for entry in progress.history]
    assert losses == sorted(losses, reverse=True)  # it learns


def test_rows_as_samples_are_refused_naming_the_expected_shape(batch):
    X, y = batch
    net = nn_gpu.Network.create(device="cpu")
    expected = "X is 300 x 784: one row per sample; pass X.T; nn_gpu takes X as 784 x m, one column per sample"
    for call in (
        lambda: net.forward(X.T),
        lambda: net.forward(X.T, keep=True),
        lambda: net.predict(X.T),
        lambda: net.evaluate(X.T, y),
        lambda: nn_gpu.train(net, X.T, y, log=None),
        lambda: nn_gpu.gradcheck(net, X.T, y),
    ):
        with pytest.raises(ValueError) as error:
            call()
        assert str(error.value) == expected
    with pytest.raises(ValueError, match=r"^X is 784; nn_gpu takes X as 784 x m"):
        net.forward(X[:, 0])  # one sample needs its column: X[:, :1]
    with pytest.raises(
        ValueError, match=r"^X holds int64: pass uint8 pixels 0..255, or floating values \(pixels / 255\)$"
    ):
        net.forward(X.astype(np.int64))


def test_labels_are_checked_against_the_batch(batch):
    X, y = batch
    net = nn_gpu.Network.create(device="cpu")
    cache = net.forward(X, keep=True)
    with pytest.raises(ValueError, match=r"^y has shape \(299,\); it must hold m = 300 labels, one per column of X$"):
        net.backward(cache, y[:-1])
    with pytest.raises(ValueError, match=r"^y holds labels 0\.\.10; they must lie in 0\.\.9$"):
        net.backward(cache, np.where(np.arange(300) == 7, 10, y))
    with pytest.raises(ValueError, match=r"^y holds float64; it must hold integer labels 0\.\.9$"):
        nn_gpu.train(net, X, y.astype(float), log=None)


def test_step_refuses_a_gradient_of_the_wrong_shape(batch):
    X, y = batch
    net = nn_gpu.Network.create(device="cpu")
    grads = net.backward(net.forward(X, keep=True), y)
    grads["dW1"] = grads["dW1"].T
    with pytest.raises(ValueError, match=r"^dW1 is 784 x 10; it must be shaped as W1, \(10, 784\)$"):
        net.step(grads, 0.1)


def test_create_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="unknown dtype 'float16': choose one of float32, float64"):
        nn_gpu.Network.create(device="cpu", dtype="float16")
    with pytest.raises(ValueError, match=r"hidden must list one or more layer widths of at least 1; got \(10, 0\)"):
        nn_gpu.Network.create(hidden=(10, 0), device="cpu")
    with pytest.raises(ValueError, match="unknown init 'zeros'"):
        nn_gpu.Network.create(device="cpu", init="zeros")
    assert nn_gpu.Network.create(hidden=7, device="cpu").arch.hidden == (7,)
    a, b = (nn_gpu.Network.create(hidden=(5,), device="cpu", seed=s) for s in (0, 1))
    assert not np.array_equal(a.flat, b.flat)
    np.testing.assert_array_equal(a.flat, nn_gpu.Network.create(hidden=(5,), device="cpu", seed=0).flat)


def test_a_saved_model_loads_with_the_same_predictions(batch, tmp_path):
    X, y = batch
    net = nn_gpu.Network.create(hidden=(6, 4), device="cpu", seed=0)
    nn_gpu.train(net, X, y, iterations=5, log=None)
    nn_gpu.save_model(net, tmp_path / "model.npz")
    again = nn_gpu.load_model(tmp_path / "model.npz", device="cpu")
    assert again.arch == net.arch
    np.testing.assert_array_equal(again.flat, net.flat)
    np.testing.assert_array_equal(again.predict(X), net.predict(X))
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match=r"bad\.npz: not an nn_gpu model file"):
        nn_gpu.load_model(tmp_path / "bad.npz", device="cpu")


def test_a_dataset_gives_the_notebooks_X_and_y():
    images, labels = synthetic_digits(50)
    data = nn_gpu.Dataset(images, labels, "synthetic")
    assert data.X.shape == (784, 50) and data.X.dtype == np.float32 and data.X is data.X
    np.testing.assert_array_equal(data.X, images.T.astype(np.float32) / 255)
    np.testing.assert_array_equal(data.y, labels)
    train_set, dev_set = data.split(dev_size=10, seed=4)
    assert len(train_set) == 40 and len(dev_set) == 10
    assert sorted(map(bytes, [*train_set.rows, *dev_set.rows])) == sorted(map(bytes, images))
    again, _ = data.split(dev_size=10, seed=4)
    np.testing.assert_array_equal(again.rows, train_set.rows)


def test_read_digit_takes_a_files_bytes_as_it_takes_its_path(tmp_path):
    from PIL import Image, ImageDraw

    paper = Image.new("L", (120, 160), 255)
    ImageDraw.Draw(paper).line([(60, 20), (60, 140)], fill=0, width=14)
    paper.save(tmp_path / "one.png")
    picture = (tmp_path / "one.png").read_bytes()
    np.testing.assert_array_equal(nn_gpu.read_digit(picture), nn_gpu.read_digit(tmp_path / "one.png"))
    with pytest.raises(DataError, match=r"^the picture: not a readable image"):
        nn_gpu.read_digit(b"GIF89a nonsense")
    with pytest.raises(DataError, match=r"^the picture: it is empty$"):
        nn_gpu.read_digit(b"")
    with pytest.raises(DataError, match=r"one\.png: too large a picture \(120 x 160 pixels; the limit is 19,199\)"):
        nn_gpu.read_digit(tmp_path / "one.png", max_pixels=120 * 160 - 1)
    assert nn_gpu.read_digit(picture, max_pixels=120 * 160).shape == (784, 1)


def test_read_digit_gives_one_column_or_names_the_file(tmp_path):
    from PIL import Image, ImageDraw

    from nn_gpu import handwriting

    paper = Image.new("L", (120, 160), 255)
    ImageDraw.Draw(paper).line([(60, 20), (60, 140)], fill=0, width=14)
    paper.save(tmp_path / "one.png")
    X = nn_gpu.read_digit(tmp_path / "one.png")
    assert X.shape == (784, 1) and X.dtype == np.uint8
    np.testing.assert_array_equal(X[:, 0], handwriting.preprocess(np.asarray(paper)).ravel())
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    with pytest.raises(DataError, match=r"blank\.png: it is blank: no ink to find$"):
        nn_gpu.read_digit(tmp_path / "blank.png")
