"""The command line of scripts/predict.py and `nn-gpu predict`: a Kaggle submission, a gallery, or your own digit.

A model of a CSV table (nn_gpu.table) predicts the rows of a CSV with its feature columns (by name,
in any order; the label column, when there, gives an accuracy): the rows are scaled as its training
rows were, and predictions come back as the labels it was trained on, written as `Id,<label column>`.

A submission is written only when --out names it. --out is refused when it names the --data or
--model file, and when it names any other existing file that is not a predictions CSV of the same
layout (its first line the header predict.py would write; so a submission can be written again),
unless --overwrite says to replace it. When the model knows what it was trained on (train.py records a hash of each training
image in model.npz), images of --data that were in its training set are counted and warned about,
and the accuracy is given on the others too. The gallery (--show N) prints N predictions spread over
the classes and draws at most SHOW_DRAWN of them. --image saves the 28 x 28 digit the network saw
beside the picture (or in --save-seen DIR) under a name not yet taken, and a failure to save it is a
warning: the prediction it already printed stands.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

import numpy as np

from nn_gpu import handwriting, plots
from nn_gpu.api import read_digit
from nn_gpu.checkpoint import TrainingData, load_trained_model, picture_problem
from nn_gpu.commands.toolkit import Parser, add_version, device_name, non_negative_int, run_main
from nn_gpu.data import Dataset, is_table, load_dataset, rows_to_device
from nn_gpu.device import resolve_device
from nn_gpu.errors import NNGpuError, warn
from nn_gpu.model import Network
from nn_gpu.report import percent
from nn_gpu.safe_io import numbered, write_text_atomically
from nn_gpu.table import Encoding, class_indices, read_table

SHOW_DRAWN = 64  # digits in the --show picture: more take long to draw and are too small to read


def predict_parser(prog: str = "predict.py") -> argparse.ArgumentParser:
    p = Parser(prog=prog, description="Predict digits with a trained model, and write a Kaggle submission with --out.")
    add_version(p)
    p.add_argument(
        "--model",
        type=Path,
        required=True,
        help="a model written by train.py: DIR/best_model.npz (the best dev accuracy), or DIR/model.npz (the last)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        help="a Kaggle test.csv, or any source train.py reads (labels give an accuracy); for a model of a CSV "
        "table, a CSV with its feature columns",
    )
    source.add_argument("--image", type=Path, help="a picture of one handwritten digit (PNG, JPEG, ...)")
    p.add_argument(
        "--out",
        type=_out_path,
        help="write the predictions of --data to this ImageId,Label CSV, Kaggle's submission format "
        "(default: none written); an existing file is replaced only when it is such a CSV",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="let --out replace an existing file that is not a predictions CSV"
    )
    p.add_argument(
        "--show",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="print and draw N predictions spread over the classes (to --out's name + _show.png, "
        "else predictions_show.png)",
    )
    p.add_argument("--device", type=device_name, default="auto", help="auto (default), cpu, gpu (card 0) or gpu:N")
    p.add_argument(
        "--save-seen",
        type=Path,
        metavar="DIR",
        help="with --image: the folder for the 28 x 28 digit the network saw (default: beside the picture)",
    )
    return p


def predict_command(argv: list[str] | None = None, prog: str = "predict.py") -> int:
    args = predict_parser(prog).parse_args(argv)
    for flag, other in (("--data", args.data), ("--model", args.model)):
        if other is not None and args.out is not None and _same_file(args.out, Path(other)):
            raise NNGpuError(f"--out {args.out} is the {flag} file, which it would overwrite; choose another --out")
    arch, params, trained_on, encoding = load_trained_model(args.model)
    device = resolve_device(args.device)
    network = Network(arch, device, params)
    if args.image is not None:
        if problem := picture_problem(args.model, arch, encoding):
            raise NNGpuError(f"--image: {problem}; use --data")
        return _predict_image(network, args.image, args.save_seen)
    if not encoding.table and is_table(args.data):
        raise NNGpuError(
            f"{args.data}: a table of named columns, and {args.model} is a model of 28 x 28 digits: give it digit "
            "images (Kaggle's test.csv, a CSV of 784 pixels, IDX files), or a model trained on this table"
        )
    dataset = _table(args.data, encoding) if encoding.table else load_dataset(args.data)
    dataset = dataset.test or dataset  # a directory of IDX files: predict its t10k test set
    if dataset.rows.shape[1] != arch.n_inputs:
        raise NNGpuError(f"{args.data}: rows of {dataset.rows.shape[1]} values; {args.model} takes {arch.n_inputs}")
    header = _csv_line(["Id", encoding.label_column] if encoding.table else ["ImageId", "Label"])
    if args.out is not None and not args.overwrite:
        _refuse_to_replace(args.out, header)
    probabilities = network.predict_proba(rows_to_device(dataset.rows, device, arch.dtype))  # C x m
    predictions = probabilities.argmax(axis=0)
    what = dataset.unit
    if args.out is not None:
        rows = enumerate(encoding.classes[predictions].tolist(), start=1)
        write_text_atomically(args.out, header + "".join(_csv_line(row) for row in rows))
        print(f"wrote {len(predictions)} predictions to {args.out} (device: {device.describe()})")
    else:
        print(
            f"predicted {len(predictions)} {what} (device: {device.describe()}); --out FILE writes them as a submission"
        )
    seen = _seen_in_training(trained_on, dataset)
    if dataset.labels is not None:
        print(f"accuracy: {_accuracy(predictions, dataset.labels)}")
    if seen.any():
        warn(
            f"{seen.sum():,} of these {len(dataset):,} {what} were in the model's training set ({trained_on.source}): "
            "an accuracy over them is not a test of the model"
        )
        if dataset.labels is not None and not seen.all():
            print(f"accuracy on the {(~seen).sum():,} {what} it was not trained on: "
                  f"{_accuracy(predictions[~seen], dataset.labels[~seen])}")  # fmt: skip
    if args.show:
        picture = Path("predictions_show.png") if args.out is None else args.out.with_name(args.out.stem + "_show.png")
        _show(dataset, predictions, probabilities.max(axis=0), args.show, picture if arch.pictures else None)
    return 0


def _out_path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty file name; name the CSV to write, e.g. --out submission.csv")
    return Path(text)


def _csv_line(cells) -> str:
    """One CSV line: the csv module quotes a label holding a comma, a quote or a line break."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(cells)
    return line.getvalue()


def _refuse_to_replace(out: Path, header: str) -> None:
    """NNGpuError when `out` exists and is not a predictions CSV whose first line is `header`."""
    if not out.exists():
        return
    if out.is_dir():
        raise NNGpuError(f"--out {out} is a folder; name a file in it, e.g. --out {out / 'submission.csv'}")
    try:
        with open(out, encoding="utf-8", newline="") as f:
            first = f.readline(len(header) + 2).rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        first = None
    if first != header.rstrip("\n"):
        raise NNGpuError(
            f"--out {out} exists and is not a predictions CSV (its first line is not {header.strip()!r}), so it "
            "is kept; choose another --out, or add --overwrite to replace it"
        )


def _table(path: str, encoding: Encoding) -> Dataset:
    """The rows of a CSV table for a model of a table: its features by the model's column names, scaled as
    the training rows were, and each label's class index when the label column is there."""
    features, labels, _ = read_table(Path(path), encoding.label_column, encoding.features)
    y = None if labels is None else class_indices(path, labels, encoding.classes)
    return Dataset(encoding.scaling.apply(features), y, path, encoding=encoding)


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> str:
    right = int(np.sum(predictions == labels))
    return f"{percent(right / len(labels))} ({right} of {len(labels)})"


def _seen_in_training(trained_on: TrainingData | None, dataset) -> np.ndarray:
    """Which images of `dataset` the model was trained on (a bool per image; none when it does not say)."""
    if trained_on is None:
        return np.zeros(len(dataset), dtype=bool)
    return np.isin(dataset.hashes, trained_on.hashes)


def _same_file(a: Path, b: Path) -> bool:
    """Whether a and b name one file (through links, or as different spellings of one path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet
        return os.path.abspath(a) == os.path.abspath(b)


def _show(dataset, predictions, confidence, n: int, path: Path | None) -> None:
    """Print n predictions with their probability, spread over the classes (the true ones when known,
    else the predicted), and draw up to SHOW_DRAWN of them to `path` (the notebook's test_prediction;
    None: not drawn, for rows that are not images)."""
    shown = plots.spread(predictions if dataset.labels is None else dataset.labels, n)
    named, what = dataset.classes, "image" if dataset.encoding is None else "row"
    for k in shown:
        truth = "" if dataset.labels is None else f", true {named[dataset.labels[k]]}"
        print(f"{what} {k + 1}: predicted {named[predictions[k]]} (probability {confidence[k]:.3f}){truth}")
    if path is None:
        return
    if not plots.available():
        print(f"picture skipped: matplotlib is not installed ({plots.PLOT_HINT})")
        return
    drawn = shown[:SHOW_DRAWN]
    labels = None if dataset.labels is None else dataset.labels[drawn]
    plots.save(plots.predictions_grid(dataset.rows[drawn], predictions[drawn], confidence[drawn], labels), path)
    print(f"wrote {path}" + (f": the first {len(drawn)} of the {len(shown)}" if len(drawn) < len(shown) else ""))


def _predict_image(network: Network, path: Path, save_seen: Path | None) -> int:
    """Predict one picture of a digit, made MNIST-like (nn_gpu.handwriting); save what the network saw."""
    X = read_digit(path)  # 784 x 1
    probabilities = network.predict_proba(X)[:, 0]
    top = np.argsort(probabilities)[::-1][:3]
    print(f"{path}: the digit is {top[0]}")
    print("top 3: " + ", ".join(f"{k} ({probabilities[k]:.3f})" for k in top))
    folder = path.parent if save_seen is None else save_seen
    seen = next(name for name in numbered(folder / f"{path.stem}_28x28.png") if not name.exists())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handwriting.save_digit(X.reshape(28, 28), seen)
    except OSError as error:
        print(
            f"warning: {seen}: not saved ({error.strerror or error}); choose a folder with --save-seen DIR",
            file=sys.stderr,
        )
        return 0
    print(f"wrote {seen}: what the network saw (28 x 28, light on dark, centred by mass)")
    return 0


def predict_main(argv: list[str] | None = None, prog: str = "predict.py") -> int:
    """`python scripts/predict.py --model M --data CSV --out submission.csv` (prog: the command typed)."""
    return run_main(lambda argv: predict_command(argv, prog), argv)
