"""train.py and predict.py on CSV tables: any features and classes, labels as the user wrote them,
the scaling stored in model.npz and applied at predict time, and one-line errors naming the file."""

import json

import numpy as np
import pytest
from helpers import run_cli

from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.checkpoint import load_checkpoint, load_trained_model, save_model
from nn_gpu.commands import predict
from nn_gpu.commands.train import run_config, train_main, train_parser
from nn_gpu.device import resolve_device
from nn_gpu.errors import ModelFileError
from nn_gpu.model import Network
from nn_gpu.run import load_run_data
from nn_gpu.table import Scaling

datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is in the dev extra: pip install -e '.[dev]'")


def _iris_csv(path, label_column="species"):
    iris = datasets.load_iris(as_frame=True)
    frame = iris.frame.drop(columns="target")
    frame[label_column] = iris.target_names[iris.target]  # text labels
    frame.to_csv(path, index=False)
    return frame


def _train(tmp_path, data, *flags, out="run"):
    args = ["--device", "cpu", "--data", str(data), "--output-dir", str(tmp_path / out), "--quiet", *flags]
    return run_cli(train_main, args)


FAST = ["--hidden", "16", "--epochs", "40", "--batch-size", "16", "--alpha", "0.05", "--momentum", "0.9"]


def test_iris_with_text_labels_trains_and_predicts_them(tmp_path):
    frame = _iris_csv(tmp_path / "iris.csv")
    code, out, err = _train(tmp_path, tmp_path / "iris.csv", "--label-column", "species", "--dev-size", "30", *FAST)
    assert code == 0, err
    assert "weights.png and predictions.png skipped: the 4 inputs are not 28 x 28 images" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["final"]["dev_accuracy"] >= 0.9
    assert metrics["inputs"] == 4 and metrics["classes"] == ["setosa", "versicolor", "virginica"]
    confusion = json.loads((tmp_path / "run" / "confusion_matrix.json").read_text())
    assert confusion["classes"] == ["setosa", "versicolor", "virginica"] and len(confusion["counts"]) == 3
    arch, _, _, encoding = load_trained_model(tmp_path / "run" / "best_model.npz")
    assert (arch.n_inputs, arch.n_classes) == (4, 3)
    assert list(encoding.classes) == ["setosa", "versicolor", "virginica"]
    assert encoding.features == tuple(frame.columns[:4]) and encoding.label_column == "species"
    code, out, err = run_cli(
        predict.predict_main,
        ["--model", str(tmp_path / "run" / "best_model.npz"), "--data", str(tmp_path / "iris.csv"),
         "--out", str(tmp_path / "p.csv"), "--show", "3"],
    )  # fmt: skip
    assert code == 0, err
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "Id,species" and len(lines) == 151
    assert {line.split(",")[1] for line in lines[1:]} <= {"setosa", "versicolor", "virginica"}
    assert "row 1: predicted setosa" in out and "accuracy: " in out
    assert "120 of these 150 rows were in the model's training set" in err


def test_the_scaling_is_fitted_on_the_training_rows_stored_and_applied_at_predict_time(tmp_path):
    frame = _iris_csv(tmp_path / "iris.csv")
    features = frame.iloc[:, :4].to_numpy()
    for scale, shift, divisor in [
        ("standard", features.mean(axis=0), features.std(axis=0)),
        ("minmax", features.min(axis=0), np.ptp(features, axis=0)),
        ("none", np.zeros(4), np.ones(4)),
    ]:
        flags = ["--label-column", "species", "--dev-size", "0", "--scale", scale, "--iterations", "5"]
        assert _train(tmp_path, tmp_path / "iris.csv", *flags, out=scale)[0] == 0
        arch, params, _, encoding = load_trained_model(tmp_path / scale / "model.npz")
        assert encoding.scaling.kind == scale
        np.testing.assert_allclose(encoding.scaling.shift, shift, rtol=1e-12)
        np.testing.assert_allclose(encoding.scaling.divisor, divisor, rtol=1e-12)
        # predict.py's answer is the network's on the rows scaled by hand
        network = Network(arch, resolve_device("cpu"), params)
        by_hand = network.predict(((features - shift) / divisor).T.astype(np.float32))
        out_file = tmp_path / f"{scale}.csv"
        model = str(tmp_path / scale / "model.npz")
        assert run_cli(predict.predict_main, ["--model", model, "--data", str(tmp_path / "iris.csv"),
                                              "--out", str(out_file)])[0] == 0  # fmt: skip
        predicted = [line.split(",")[1] for line in out_file.read_text().splitlines()[1:]]
        assert predicted == list(encoding.classes[by_hand])


def test_the_scaling_sees_only_the_training_rows(tmp_path):
    from nn_gpu.data import load_dataset, split_dev

    _iris_csv(tmp_path / "iris.csv")
    flags = ["--label-column", "species", "--dev-size", "50", "--seed", "3", "--iterations", "2"]
    assert _train(tmp_path, tmp_path / "iris.csv", *flags)[0] == 0
    train, dev = split_dev(load_dataset(tmp_path / "iris.csv", "species"), 50, np.random.default_rng(3))
    scaling = load_trained_model(tmp_path / "run" / "model.npz")[3].scaling
    np.testing.assert_allclose(scaling.shift, train.rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaling.divisor, train.rows.std(axis=0), rtol=1e-12)
    assert not np.allclose(scaling.shift, np.vstack([train.rows, dev.rows]).mean(axis=0), rtol=1e-6)


def test_a_constant_feature_is_not_divided_by_zero():
    scaling = Scaling.fit("standard", np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_array_equal(scaling.apply(np.array([[2.0, 5.0]])), [[0.0, 0.0]])
    np.testing.assert_array_equal(Scaling.fit("minmax", np.array([[1.0, 7.0], [3.0, 7.0]])).divisor, [2.0, 1.0])


def test_sklearn_digits_8x8_with_integer_labels_and_predict_from_a_reordered_file(tmp_path):
    import pandas as pd

    digits = datasets.load_digits()
    frame = pd.DataFrame(digits.data, columns=[f"f{i}" for i in range(64)])
    frame.insert(10, "digit", digits.target * 10)  # labels 0, 10, ..., 90, in the middle of the columns
    frame.to_csv(tmp_path / "digits.csv", index=False)
    flags = ["--label-column", "digit", "--hidden", "64", "--epochs", "15", "--batch-size", "32",
             "--optimizer", "adam", "--alpha", "0.003"]  # fmt: skip
    code, _, err = _train(tmp_path, tmp_path / "digits.csv", *flags)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]["dev_accuracy"] >= 0.93
    frame[list(reversed(frame.columns))].to_csv(tmp_path / "reordered.csv", index=False)
    code, out, err = run_cli(predict.predict_main, ["--model", str(tmp_path / "run" / "model.npz"), "--data",
                                                   str(tmp_path / "reordered.csv"), "--out", str(tmp_path / "p.csv")])  # fmt: skip
    assert code == 0, err
    predicted = np.array([int(line.split(",")[1]) for line in (tmp_path / "p.csv").read_text().splitlines()[1:]])
    assert set(predicted) <= set(range(0, 100, 10)) and (predicted == digits.target * 10).mean() > 0.93


def test_a_table_run_resumed_is_the_run_never_stopped(tmp_path):
    _iris_csv(tmp_path / "iris.csv")
    flags = [
        "--label-column",
        "species",
        "--dev-size",
        "30",
        "--hidden",
        "8",
        "--batch-size",
        "16",
        "--optimizer",
        "adam",
        "--alpha",
        "0.01",
    ]
    code, _, err = _train(tmp_path, tmp_path / "iris.csv", *flags, "--epochs", "6", out="long")
    assert code == 0, err
    assert _train(tmp_path, tmp_path / "iris.csv", *flags, "--epochs", "3", out="short")[0] == 0
    code, _, err = run_cli(train_main, ["--resume", str(tmp_path / "short"), "--epochs", "6", "--quiet"])
    assert code == 0, err
    short, long = (load_checkpoint(tmp_path / name / "checkpoint.npz") for name in ("short", "long"))
    for a, b in zip(short[1], long[1]):
        np.testing.assert_array_equal(a, b)
    assert list(short[5].classes) == ["setosa", "versicolor", "virginica"]
    np.testing.assert_array_equal(short[5].scaling.shift, long[5].scaling.shift)


@pytest.mark.parametrize(
    "text, flags, message",
    [
        ("a,b\n1,2\n", [], r"no column 'label' holds the labels \(columns: a, b\); name the label column with "
                           "--label-column NAME"),
        ("a,label\n1,x\n2,\n", [], r"line 3: missing label in column 'label'"),
        ("a,b,label\n1,2,x\n1,oops,y\n", [], r"line 3, column 2 \(b\): 'oops' is not a finite number"),
        ("a,b,label\n1,2,x\n1,,y\n", [], r"line 3, column 2 \(b\): missing value"),
        ("a,label\n", [], "no rows, only a header"),
        ("label\nx\n", [], "no feature columns besides the label 'label'"),
        ("a,label\n1,x\n2,y\n", ["--augment", "affine"], "--augment distorts 28 x 28 digit images"),
        ("a,b,label\n1,2,0,5\n3,4,1,6\n", [], r"line 2: 4 fields, expected 3 as in the header$"),
        ("a,b,label\n1,2,0\n3,4,1\n5,6,0,\n", [], r"line 4: 4 fields, expected 3 as in the header \(a trailing comma\?\)"),
        ("a,b,label\n1,2,0\n3,4,1\n5,6\n", [], r"line 4: 2 fields, expected 3 as in the header"),
        ("a,b,label\n1,2,0\n\n3,x,1\n", [], r"line 4, column 2 \(b\): 'x' is not a finite number"),
        ("a,b,a,label\n1,2,3,0\n", [], r"line 1: column 'a' appears twice"),
        ("a,y\n1,0.25\n2,1.5\n3,2\n", ["--label-column", "y"],
         r"line 2: label '0.25' in column 'y' is not a whole number: a continuous target \(3 distinct values in 3 rows\)"),
        ("a,label\n1e300,0\n-1.7e308,1\n1.7e308,0\n", ["--scale", "minmax"],
         r"t.csv: feature 'a': its values span more than float64 can hold \(up to 1.7e\+308\)"),
    ],
)  # fmt: skip
def test_bad_tables_get_one_line_naming_the_file(tmp_path, text, flags, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    code, _, err = _train(tmp_path, path, "--dev-size", "0", *flags)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: ") and pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "run").exists()


def test_scale_is_refused_for_digit_images(tmp_path):
    code, _, err = _train(tmp_path, "sample", "--scale", "minmax")
    assert code == 2 and "--scale minmax: scales a CSV table's features; digit images are divided by 255" in err


def test_predict_refuses_what_a_table_model_cannot_take(tmp_path):
    _iris_csv(tmp_path / "iris.csv")
    assert (
        _train(tmp_path, tmp_path / "iris.csv", "--label-column", "species", "--dev-size", "0", "--iterations", "3")[0]
        == 0
    )
    model = str(tmp_path / "run" / "model.npz")
    (tmp_path / "short.csv").write_text("sepal length (cm),species\n1,setosa\n")
    (tmp_path / "new.csv").write_text(
        "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm),species\n1,2,3,4,tulip\n"
    )
    (tmp_path / "digit.png").write_bytes(b"")
    for args, message in [
        (["--data", str(tmp_path / "short.csv")], "the model's feature column 'sepal width (cm)' is missing"),
        (["--data", str(tmp_path / "new.csv")], "label 'tulip' is not one the model was trained on"),
        (["--image", str(tmp_path / "digit.png")], "takes 4 features, not a 28 x 28 picture; use --data"),
    ]:
        code, _, err = run_cli(predict.predict_main, ["--model", model, *args])
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_digit_model_given_a_table_is_told_what_it_reads_not_a_flag_predict_lacks(tmp_path):
    arch = Architecture((4,), "float32")  # 784 -> 4 -> 10: a digit model
    save_model(tmp_path / "digits.npz", arch, init_parameters(arch, "he", np.random.default_rng(0)))
    for header in ("a,b,species", "a,b,label"):
        (tmp_path / "t.csv").write_text(f"{header}\n1,2,x\n")
        code, _, err = run_cli(predict.predict_main, ["--model", tmp_path / "digits.npz", "--data", tmp_path / "t.csv"])
        assert code == 2 and err == (
            f"error: {tmp_path / 't.csv'}: a table of named columns, and {tmp_path / 'digits.npz'} is a model of "
            "28 x 28 digits: give it digit images (Kaggle's test.csv, a CSV of 784 pixels, IDX files), or a model "
            "trained on this table\n"
        )


def test_table_messages_speak_of_rows(tmp_path):
    (tmp_path / "t.csv").write_text("a,label\n1,x\n2,y\n3,x\n")
    code, _, err = _train(tmp_path, tmp_path / "t.csv", "--dev-size", "3")
    assert code == 2 and err.endswith("--dev-size 3 must be at least 0 and below the 3 rows\n"), err
    args = ["--device", "cpu", "--data", tmp_path / "t.csv", "--dev-size", "0", "--iterations", "2"]
    code, out, err = run_cli(train_main, [*args, "--output-dir", tmp_path / "run"])
    assert code == 0 and "2 full-batch gradient steps on all 3 rows" in out, err


def test_model_files_keep_inputs_and_classes_and_old_digit_files_still_load(tmp_path):
    arch = Architecture((3,), "float32", 5, 4)
    params = init_parameters(arch, "he", np.random.default_rng(0))
    save_model(tmp_path / "m.npz", arch, params)
    loaded, _, _, encoding = load_trained_model(tmp_path / "m.npz")
    assert loaded == arch and list(encoding.classes) == [0, 1, 2, 3] and not encoding.table
    digits = Architecture((3,))
    save_model(tmp_path / "d.npz", digits, init_parameters(digits, "he", np.random.default_rng(0)))
    with np.load(tmp_path / "d.npz") as f:
        old = {k: f[k] for k in f.files if k not in ("inputs", "classes")}  # as written before issue 19
    np.savez(tmp_path / "old.npz", **old)
    loaded, _, _, encoding = load_trained_model(tmp_path / "old.npz")
    assert (loaded.n_inputs, loaded.n_classes) == (784, 10) and list(encoding.classes) == list(range(10))
    with np.load(tmp_path / "m.npz") as f:
        bad = {k: f[k] for k in f.files}
    for change, message in [
        ({"classes": np.array([3, 1, 2, 0])}, "'classes' must list each class label once, sorted"),
        ({"inputs": np.array(-1)}, "'inputs' must be the number of input features"),
        ({"classes": np.array([0, 1, 2])}, r"W2 is float32 \(4, 3\), expected float32 \(3, 3\)"),
    ]:
        np.savez(tmp_path / "bad.npz", **{**bad, **change})
        with pytest.raises(ModelFileError, match=message):
            load_trained_model(tmp_path / "bad.npz")


def test_gradients_of_any_shape_against_finite_differences():
    """5 inputs, two hidden layers, 3 classes: every gradient against centred finite differences."""
    import nn_gpu

    rng = np.random.default_rng(0)
    net = nn_gpu.Network.create(hidden=(6, 4), device="cpu", seed=1, dtype="float64", n_inputs=5, n_classes=3)
    X, y = rng.standard_normal((5, 16)), rng.integers(0, 3, 16)
    table = nn_gpu.gradcheck(net, X, y, entries=None)
    assert list(table["shape"]) == ["6 x 5", "6 x 1", "4 x 6", "4 x 1", "3 x 4", "3 x 1"]
    assert table["passed"].all(), table
    with pytest.raises(ValueError, match=r"y holds labels 0..3; they must lie in 0..2"):
        net.backward(net.forward(X, keep=True), np.array([0, 1, 2, 3] * 4))
    with pytest.raises(ValueError, match=r"X is 784 x 16; nn_gpu takes X as 5 x m"):
        net.forward(np.zeros((784, 16)))


def test_labels_with_commas_and_quotes_are_written_as_csv_cells(tmp_path):
    import csv

    points = np.random.default_rng(0).normal(size=(60, 2))
    rows = [f"{x},{y}," + ('"big, red"' if x > 0 else "small") for x, y in points]  # a quoted label with a comma
    (tmp_path / "t.csv").write_text("x,y,label\n" + "\n".join(rows) + "\n")
    assert _train(tmp_path, tmp_path / "t.csv", "--dev-size", "0", "--epochs", "20", "--batch-size", "8")[0] == 0
    model = str(tmp_path / "run" / "model.npz")
    code, _, err = run_cli(
        predict.predict_main, ["--model", model, "--data", tmp_path / "t.csv", "--out", tmp_path / "p.csv"]
    )
    assert code == 0, err
    with open(tmp_path / "p.csv", newline="") as f:
        read = list(csv.reader(f))
    assert read[0] == ["Id", "label"] and len(read) == 61
    assert {row[1] for row in read[1:]} <= {"big, red", "small"} and "big, red" in {row[1] for row in read[1:]}


def test_a_table_of_784_features_is_no_picture_model(tmp_path):
    from nn_gpu.table import Encoding

    wide = Encoding(
        np.arange(3), tuple(f"f{k}" for k in range(784)), "kind", Scaling("none", np.zeros(784), np.ones(784))
    )
    arch = Architecture((4,), n_classes=3)  # as many inputs as a digit's pixels, but a table's columns
    assert predict.picture_problem(tmp_path / "m.npz", arch, wide) == (
        f"{tmp_path / 'm.npz'} takes 784 features, not a 28 x 28 picture"
    )
    assert predict.picture_problem(tmp_path / "m.npz", arch, Encoding(np.arange(3))) is None


def test_labels_stay_as_written_unless_every_one_is_a_plain_integer(tmp_path):
    from nn_gpu.table import read_table

    def labels(*cells):
        (tmp_path / "t.csv").write_text("a,label\n" + "".join(f"{i}, {cell} \n" for i, cell in enumerate(cells)))
        return read_table(tmp_path / "t.csv", "label")[1]

    plain = labels("7", "-3", "0", "9223372036854775807")
    assert plain.dtype == np.int64 and plain.tolist() == [7, -3, 0, 2**63 - 1]
    ids = labels("12345678901234567890", "98765432109876543210")  # beyond int64: kept, not wrapped
    assert ids.dtype.kind == "U" and ids.tolist() == ["12345678901234567890", "98765432109876543210"]
    assert labels("9223372036854775808", "1").tolist() == ["9223372036854775808", "1"]
    assert labels("1", "01", "1.0").tolist() == ["1", "01", "1.0"]  # three labels as written, none merged
    assert labels("cat", "7").tolist() == ["cat", "7"]


def test_a_feature_near_the_top_of_float64_is_scaled_not_zeroed():
    features = np.array([[1e300, 1.0], [3e300, 3.0], [2e300, 2.0]])
    for kind in ("standard", "minmax"):
        scaled = Scaling.fit(kind, features).apply(features)
        assert np.isfinite(scaled).all()
        np.testing.assert_allclose(scaled[:, 0], scaled[:, 1])  # the same pattern, 1e300 times larger
    rows = np.random.default_rng(0).normal(size=(200, 3)) * [1.0, 1e-5, 1e6]  # ordinary columns: numpy's bits
    standard = Scaling.fit("standard", rows)
    np.testing.assert_array_equal(standard.shift, rows.mean(axis=0))
    np.testing.assert_array_equal(standard.divisor, rows.std(axis=0))
    np.testing.assert_array_equal(Scaling.fit("minmax", rows).divisor, np.ptp(rows, axis=0))


def test_a_model_of_text_labels_predicts_a_file_of_some_of_them(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array(["1", "2", "b"])[np.arange(60) % 3]
    table = "a,b,label\n" + "".join(
        f"{rng.normal() + i % 3},{rng.normal()},{label}\n" for i, label in enumerate(labels)
    )
    (tmp_path / "t.csv").write_text(table)
    code, _, err = _train(tmp_path, tmp_path / "t.csv", "--dev-size", "0", "--hidden", "4", "--epochs", "2")
    assert code == 0, err
    assert list(load_trained_model(tmp_path / "run" / "model.npz")[3].classes) == ["1", "2", "b"]
    kept = [line for line in table.splitlines() if not line.endswith(",b")]  # labels 1 and 2, read as integers
    (tmp_path / "some.csv").write_text("\n".join(kept) + "\n")
    args = ["--model", tmp_path / "run" / "model.npz", "--data", tmp_path / "some.csv", "--out", tmp_path / "p.csv"]
    code, out, err = run_cli(predict.predict_main, args)
    assert code == 0, err
    assert "accuracy: " in out and len((tmp_path / "p.csv").read_text().splitlines()) == 41


def test_a_resumed_run_scales_by_its_checkpoint_and_header_names_are_stripped(tmp_path):
    (tmp_path / "t.csv").write_text(" a , b ,  label \n1,10,x\n3,30,y\n5,50,x\n")
    config = run_config(train_parser().parse_args(["--data", str(tmp_path / "t.csv"), "--dev-size", "0"]))
    fitted = load_run_data(config)
    assert fitted.encoding.features == ("a", "b") and fitted.encoding.label_column == "label"
    kept = Scaling("standard", np.array([1.0, 2.0]), np.array([4.0, 8.0]))  # not what these rows would give
    resumed = load_run_data(config, kept)
    assert resumed.encoding.scaling is kept
    from nn_gpu.data import split_dev

    raw_train, _ = split_dev(fitted.dataset, 0, np.random.default_rng(config.seed))  # the runs' own split
    np.testing.assert_array_equal(resumed.train.rows, (raw_train.rows - [1.0, 2.0]) / [4.0, 8.0])
    np.testing.assert_array_equal(fitted.train.rows, fitted.encoding.scaling.apply(raw_train.rows))


def test_a_resumed_run_refuses_training_rows_that_changed(tmp_path):
    _iris_csv(tmp_path / "iris.csv")
    flags = ["--label-column", "species", "--dev-size", "30", "--hidden", "8", "--batch-size", "16"]
    assert _train(tmp_path, tmp_path / "iris.csv", *flags, "--epochs", "2", out="short")[0] == 0
    checkpoint = tmp_path / "short" / "checkpoint.npz"
    before = checkpoint.read_bytes()
    with open(tmp_path / "iris.csv", "a") as f:
        f.write("9.0,9.0,9.0,9.0,setosa\n")  # one row more: another split, and the old scaling no longer fits
    code, _, err = run_cli(train_main, ["--resume", str(tmp_path / "short"), "--epochs", "4", "--quiet"])
    assert code == 2 and err.count("\n") == 1, err
    assert (
        f"{checkpoint}: {tmp_path / 'iris.csv'} has changed since the run began: its training rows are not the run's"
        in err
    )
    assert "(121 now, 120 then, after the dev split)" in err
    assert checkpoint.read_bytes() == before


def test_ctrl_c_while_a_table_or_a_digit_csv_is_read_is_interrupted_not_a_broken_file(tmp_path, monkeypatch):
    from nn_gpu import data, table

    _iris_csv(tmp_path / "iris.csv")

    def interrupted(*args):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(table, "_bounded_lines", interrupted)
    code, _, err = _train(tmp_path, tmp_path / "iris.csv", "--label-column", "species")
    assert (code, err) == (130, "interrupted\n")
    opened = data._LineLimit.__init__

    class Interrupting:
        def read(self, size=-1):
            raise KeyboardInterrupt

        def close(self):
            pass

    def init(self, path, skip_header):
        opened(self, path, skip_header)
        self.raw.close()
        self.raw = Interrupting()

    monkeypatch.setattr(data._LineLimit, "__init__", init)
    code, _, err = _train(tmp_path, "sample", "--epochs", "1")  # pandas reads the built-in digits through _LineLimit
    assert (code, err) == (130, "interrupted\n")


def test_ctrl_c_while_a_script_imports_its_libraries_is_interrupted(monkeypatch, capsys):
    import importlib
    import importlib.util

    from helpers import ROOT

    spec = importlib.util.spec_from_file_location("launch", ROOT / "scripts" / "launch.py")
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)

    def importing(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", importing)
    assert launch.launch("nn_gpu.commands.train", "train_main") == 130
    assert capsys.readouterr().err == "interrupted\n"
