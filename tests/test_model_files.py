"""model.npz: round trip, atomic writes, and one clear line for every file that is not ours."""

import errno
import io
import os
import zipfile

import numpy as np
import pytest
from helpers import traced_peak

from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.checkpoint import load_model, save_model
from nn_gpu.errors import ModelFileError
from nn_gpu.safe_io import write_atomically


@pytest.fixture
def saved(tmp_path):
    arch = Architecture((16, 8), "float64")
    params = init_parameters(arch, "he", np.random.default_rng(0))
    save_model(tmp_path / "model.npz", arch, params)
    return tmp_path / "model.npz", arch, params


def arrays_of(path):
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def test_round_trip_keeps_architecture_and_bits(saved):
    path, arch, params = saved
    loaded_arch, loaded = load_model(path)
    assert loaded_arch == arch
    for p, q in zip(params, loaded):
        assert q.dtype == p.dtype
        np.testing.assert_array_equal(p, q)
    assert [f.name for f in path.parent.iterdir()] == ["model.npz"]  # no temporary file left


def rewrite(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("W2"), "missing ['W2']"),
        (lambda a: a.update(extra=np.zeros(3)), "unexpected ['extra']"),
        (lambda a: a.update(W1=np.zeros((16, 783))), "W1 is float64 (16, 783), expected float64 (16, 784)"),
        (lambda a: a.update(b3=np.zeros((10, 1), np.float32)), "b3 is float32 (10, 1), expected float64 (10, 1)"),
        (lambda a: a["W3"].__setitem__((0, 0), np.nan), "W3 holds non-finite values"),
        (lambda a: a.update(format=np.array("something-else")), "not an nn_gpu model file"),
        (lambda a: a.update(hidden=np.array([16.0, 8.0])), "'hidden' must be a list of positive layer widths"),
        (lambda a: a.update(dtype=np.array("float16")), "dtype 'float16' is not one of float32, float64"),
    ],
)
def test_damaged_model_files_are_rejected_with_one_line(saved, change, message):
    path, _, _ = saved
    arrays = arrays_of(path)
    change(arrays)
    rewrite(path, arrays)
    with pytest.raises(ModelFileError) as error:
        load_model(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_pickles_and_object_arrays_never_load(saved, tmp_path):
    path, _, _ = saved
    arrays = arrays_of(path)
    arrays["W1"] = np.array([{"code": "runs"}], dtype=object)
    rewrite(path, arrays)
    with pytest.raises(ModelFileError, match="not an nn_gpu model file.*allow_pickle"):
        load_model(path)
    pickled = tmp_path / "pickled.npz"
    np.save(pickled, np.array([object()], dtype=object), allow_pickle=True)
    os.replace(str(pickled) + ".npy", pickled)
    with pytest.raises(ModelFileError, match="pickled.npz: not an nn_gpu model file"):
        load_model(pickled)


@pytest.mark.parametrize("content", [b"", b"plain text, not a zip", None])
def test_truncated_or_foreign_files_are_rejected(saved, content):
    path, _, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(ModelFileError, match="not an nn_gpu model file"):
        load_model(path)


def test_a_file_that_is_no_archive_is_named_so_without_numpys_advice_to_unpickle(tmp_path):
    import pickle

    for name, content, what in [
        ("notes.txt", b"hello, a text file", "not a .npz archive"),
        ("model.pkl", pickle.dumps({"W1": [1.0]}), "not a .npz archive"),
        ("array.npy", None, "a single array"),
    ]:
        path = tmp_path / name
        if content is None:
            np.save(path, np.zeros(3))  # the name ends in .npy: kept as it is
        else:
            path.write_bytes(content)
        with pytest.raises(ModelFileError) as error:
            load_model(path)
        assert str(error.value) == (
            f"{path}: not an nn_gpu model file ({what}; train.py writes DIR/model.npz and DIR/best_model.npz)"
        )


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="model.npz: no such file"):
        load_model(tmp_path / "model.npz")


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"previous bytes")

    def half_then_crash(f: io.BufferedWriter):
        f.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_then_crash)
    assert path.read_bytes() == b"previous bytes"
    assert [f.name for f in tmp_path.iterdir()] == ["model.npz"]


def test_members_are_checked_from_their_headers_before_any_is_read(saved):
    path, _, _ = saved
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:  # a 256 MB extra member
        with archive.open("surprise.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": (1 << 28,)})
            for _ in range(256):
                member.write(bytes(1 << 20))
    assert path.stat().st_size < 1_000_000
    with traced_peak() as peak, pytest.raises(ModelFileError, match="unexpected \\['surprise'\\]"):
        load_model(path)
    assert peak[0] < 2_000_000  # the 256 MB were never decompressed


def test_a_header_cannot_claim_more_than_its_member_holds(saved):
    path, arch, params = saved
    arrays = arrays_of(path)
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                if name == "W1":  # a header claiming 10^9 x 784 floats in front of the real 16 x 784
                    header = {"descr": "<f8", "fortran_order": False, "shape": (10**9, 784)}
                    np.lib.format.write_array_header_1_0(member, header)
                    member.write(array.tobytes())
                else:
                    np.lib.format.write_array(member, array)
    with pytest.raises(ModelFileError) as error:
        load_model(path)  # today: MemoryError, a traceback
    assert str(error.value) == (
        f"{path}: W1: its header claims 6,272,000,000,000 bytes of data, but the member holds 100,352"
    )


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_model_that_is_not_a_regular_file_is_refused(tmp_path, special):
    if special == "fifo":
        special = tmp_path / "model.npz"
        os.mkfifo(special)
    with pytest.raises(ModelFileError, match=f"^{special}: needs a regular file, not a pipe, socket or device$"):
        load_model(special)


def test_a_full_disk_names_the_file_asked_for_not_the_temporary_one(tmp_path):
    def disk_full(f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as f.write or fsync raises it: no file name

    with pytest.raises(OSError) as error:
        write_atomically(tmp_path / "model.npz", disk_full)
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, str(tmp_path / "model.npz"))
    assert list(tmp_path.iterdir()) == []
