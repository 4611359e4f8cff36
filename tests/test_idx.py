"""IDX files (MNIST's own format): round trips, directories with a test split, and every kind of damage."""

import gzip

import numpy as np
import pytest
from helpers import synthetic_digits, write_kaggle_csv

from nn_gpu import idx
from nn_gpu.data import load_dataset
from nn_gpu.errors import DataError


def write_pair(folder, split, images, labels, gz=True):
    suffix = ".gz" if gz else ""
    idx.write(folder / f"{split}-images-idx3-ubyte{suffix}", images, idx.IMAGES_MAGIC)
    idx.write(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, idx.LABELS_MAGIC)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_pair_round_trips_and_matches_the_csv(tmp_path, gz):
    images, labels = synthetic_digits(15, seed=6)
    write_pair(tmp_path, "train", images, labels, gz)
    write_kaggle_csv(tmp_path / "train.csv", images, labels)
    suffix = ".gz" if gz else ""
    from_idx = load_dataset(tmp_path / f"train-images-idx3-ubyte{suffix}")
    from_csv = load_dataset(tmp_path / "train.csv")
    for loaded in (from_idx, from_csv):
        assert loaded.rows.dtype == np.uint8 and loaded.labels.dtype == np.uint8
        np.testing.assert_array_equal(loaded.rows, images)
        np.testing.assert_array_equal(loaded.labels, labels)


def test_directory_gives_train_and_t10k_as_test(tmp_path):
    train_images, train_labels = synthetic_digits(20, seed=1)
    test_images, test_labels = synthetic_digits(7, seed=2)
    write_pair(tmp_path, "train", train_images, train_labels)
    write_pair(tmp_path, "t10k", test_images, test_labels, gz=False)
    dataset = load_dataset(tmp_path)
    np.testing.assert_array_equal(dataset.rows, train_images)
    np.testing.assert_array_equal(dataset.test.rows, test_images)
    np.testing.assert_array_equal(dataset.test.labels, test_labels)
    assert dataset.test.test is None


def test_images_without_labels_load_unlabelled(tmp_path):
    images, _ = synthetic_digits(4)
    idx.write(tmp_path / "digits-images-idx3-ubyte", images, idx.IMAGES_MAGIC)
    dataset = load_dataset(tmp_path / "digits-images-idx3-ubyte")
    assert dataset.labels is None
    np.testing.assert_array_equal(dataset.rows, images)


def header(magic, *dims):
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize(
    ("images_bytes", "labels_bytes", "message"),
    [
        (header(2049, 2, 28, 28) + bytes(1568), None, "magic number 2049, expected 2051 for IDX images"),
        (header(2051, 2, 28, 28) + bytes(1568), header(2051, 2), "magic number 2051, expected 2049 for IDX labels"),
        (header(2051, 2, 27, 29) + bytes(1566), None, "images are 27x29, expected 28x28"),
        (header(2051, 2, 28, 28) + bytes(1000), None, "truncated: 1016 bytes, expected 1584 for 2 images"),
        (header(2051, 2, 28), None, "truncated: 12 bytes, the header alone needs 16"),
        (header(2051, 2, 28, 28) + bytes(1569), None, "1 trailing bytes after 2 images"),
        (header(2051, 2, 28, 28) + bytes(1568), header(2049, 3) + bytes(3), "2 images but"),
        (header(2051, 2, 28, 28) + bytes(1568), header(2049, 2) + bytes([1, 12]), "label 12 at index 1 outside 0..9"),
        (
            header(2051, 2, 28, 28) + bytes(1568),
            header(2049, 2) + bytes(1),
            "truncated: 9 bytes, expected 10 for 2 labels",
        ),
    ],
)
def test_damaged_idx_files_get_one_line(tmp_path, images_bytes, labels_bytes, message):
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images_bytes)
    if labels_bytes is not None:
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels_bytes)
    with pytest.raises(DataError) as error:
        load_dataset(images if labels_bytes is None else tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith(str(tmp_path))


def test_corrupt_gzip_is_named(tmp_path):
    good = gzip.compress(header(2051, 1, 28, 28) + bytes(784))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(good[:-12])  # cut inside the stream
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: corrupt gzip"):
        idx.read_images(path)


@pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Debian's dataset-fashion-mnist package is not installed (/usr/share/datasets/fashion-mnist)",
)
def test_debian_fashion_mnist_loads_in_full():
    dataset = load_dataset("/usr/share/datasets/fashion-mnist")
    assert dataset.rows.shape == (60000, 784) and dataset.test.rows.shape == (10000, 784)
    assert np.bincount(dataset.labels).tolist() == [6000] * 10
    assert np.bincount(dataset.test.labels).tolist() == [1000] * 10
