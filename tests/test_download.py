"""Datasets by name against a local HTTP server on 127.0.0.1: never the internet."""

import gzip
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest
from helpers import synthetic_digits

from nn_gpu import idx
from nn_gpu.commands.train import train_main
from nn_gpu.data import load_dataset
from nn_gpu.download import REMOTES, Remote, fetch
from nn_gpu.errors import DataError


def idx_bytes(array, magic):
    return gzip.compress(idx.encode(array, magic))


class Server:
    """Serves `files` on 127.0.0.1; `cut` names files whose transfer stops halfway."""

    def __init__(self, files):
        self.files, self.cut, self.requests = files, set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in server.cut else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served():
    train_images, train_labels = synthetic_digits(30, seed=1)
    test_images, test_labels = synthetic_digits(10, seed=2)
    files = {
        "train-images-idx3-ubyte.gz": idx_bytes(train_images, idx.IMAGES_MAGIC),
        "train-labels-idx1-ubyte.gz": idx_bytes(train_labels, idx.LABELS_MAGIC),
        "t10k-images-idx3-ubyte.gz": idx_bytes(test_images, idx.IMAGES_MAGIC),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(test_labels, idx.LABELS_MAGIC),
    }
    server = Server(files)
    remote = Remote(mirrors=(server.url,), md5={k: hashlib.md5(v).hexdigest() for k, v in files.items()})
    yield server, remote, (train_images, train_labels, test_images)
    server.stop()


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_first_download_then_cached_use_offline(tmp_path, served, capsys):
    server, remote, (train_images, train_labels, test_images) = served
    folder = fetch("mnist", cache=tmp_path, remote=remote)
    assert folder == tmp_path / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(remote.md5)  # no temporary files
    assert len(server.requests) == 4 and "downloading " + server.url in capsys.readouterr().out
    server.stop()
    assert fetch("mnist", cache=tmp_path, remote=remote) == folder  # no network needed now
    dataset = load_dataset(folder)
    np.testing.assert_array_equal(dataset.rows, train_images)
    np.testing.assert_array_equal(dataset.labels, train_labels)
    np.testing.assert_array_equal(dataset.test.rows, test_images)


def test_second_mirror_is_used_when_the_first_refuses(tmp_path, served):
    server, remote, _ = served
    two = Remote(mirrors=(closed_port_url(), server.url), md5=remote.md5)
    fetch("mnist", cache=tmp_path, remote=two)
    assert len(server.requests) == 4


def test_checksum_mismatch_keeps_nothing(tmp_path, served):
    server, remote, _ = served
    wrong = dict(remote.md5, **{"train-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(DataError) as error:
        fetch("mnist", cache=tmp_path, remote=Remote(remote.mirrors, wrong))
    message = str(error.value)
    assert message.startswith("mnist: could not download train-labels-idx1-ubyte.gz")
    assert "checksum mismatch: md5 " + remote.md5["train-labels-idx1-ubyte.gz"] + ", expected " + "0" * 32 in message
    assert not (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == ["train-images-idx3-ubyte.gz"]


def test_connection_refused_says_what_to_do(tmp_path):
    remote = Remote(mirrors=(closed_port_url(),), md5=REMOTES["mnist"].md5)
    with pytest.raises(DataError) as error:
        fetch("mnist", cache=tmp_path, remote=remote)
    message = str(error.value)
    assert "Connection refused" in message and "connect to the internet once" in message
    assert "\n" not in message
    assert list((tmp_path / "mnist").iterdir()) == []


def test_transfer_cut_off_midway_leaves_no_partial_file(tmp_path, served):
    server, remote, _ = served
    server.cut.add("train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="transfer cut off after"):
        fetch("mnist", cache=tmp_path, remote=remote)
    assert list((tmp_path / "mnist").iterdir()) == []
    server.cut.clear()
    fetch("mnist", cache=tmp_path, remote=remote)  # and the next try completes
    assert len(list((tmp_path / "mnist").iterdir())) == 4


def test_damaged_cached_file_is_downloaded_again(tmp_path, served):
    server, remote, _ = served
    folder = fetch("mnist", cache=tmp_path, remote=remote)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"damaged")
    server.requests.clear()
    fetch("mnist", cache=tmp_path, remote=remote)
    assert server.requests == ["t10k-labels-idx1-ubyte.gz"]


def test_train_script_by_name_offline_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NN_GPU_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("NN_GPU_MIRRORS", closed_port_url())
    assert train_main(["--data", "fashion-mnist", "--device", "cpu", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: fashion-mnist: could not download train-images-idx3-ubyte.gz into ")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()
