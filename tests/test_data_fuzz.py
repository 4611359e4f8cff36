"""Property tests: any bytes given to the CSV and IDX readers give a valid Dataset or a DataError."""

import gzip
import tempfile
from pathlib import Path

import numpy as np
from helpers import synthetic_digits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nn_gpu import idx
from nn_gpu.data import Dataset, load_dataset
from nn_gpu.errors import DataError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def valid_csv() -> bytes:
    images, labels = synthetic_digits(3, seed=9)
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    rows = [",".join(map(str, [label, *row])) for label, row in zip(labels, images)]
    return ("\n".join([header, *rows]) + "\n").encode()


def valid_idx() -> bytes:
    images, _ = synthetic_digits(2, seed=9)
    return idx.encode(images, idx.IMAGES_MAGIC)


@st.composite
def mutated(draw, original: bytes):
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


def check_loads_or_data_error(name: str, content: bytes, gz: bool = False) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(content) if gz else content)
        try:
            dataset = load_dataset(path)
        except DataError as error:
            assert "\n" not in str(error) and str(error).startswith(str(path))
            return
    assert isinstance(dataset, Dataset)
    assert dataset.rows.dtype == np.uint8 and dataset.rows.ndim == 2 and dataset.rows.shape[1] == 784
    assert dataset.labels is None or (dataset.labels.dtype == np.uint8 and dataset.labels.max(initial=0) <= 9)
    assert dataset.labels is None or len(dataset.labels) == len(dataset.rows)


@FUZZ
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_as_csv(content):
    check_loads_or_data_error("train.csv", content)


@FUZZ
@given(mutated(valid_csv()), st.booleans())
def test_mutated_csv(content, gz):
    check_loads_or_data_error("train.csv", content, gz)


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_after_an_idx_magic(content):
    check_loads_or_data_error("x-images-idx3-ubyte", b"\x00\x00\x08\x03" + content)


@FUZZ
@given(mutated(valid_idx()), st.booleans())
def test_mutated_idx(content, gz):
    check_loads_or_data_error("x-images-idx3-ubyte", content, gz)
