"""nn_gpu.serve: the page's endpoints through the standard library's HTTP client, against a server on an
ephemeral port of 127.0.0.1; every bad request, each followed by a good one; scripts/serve.py as run."""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import ROOT, start_serve, stop_serve

import nn_gpu
from nn_gpu import serve
from nn_gpu.commands.serve import serve_main
from nn_gpu.model import Network
from nn_gpu.serve import Demo, make_server

PIL = pytest.importorskip("PIL", reason="pictures need Pillow (the plot extra)")
from PIL import Image, ImageDraw  # noqa: E402


def png(draw=None, size=(280, 280), background=0, mode="L", format="PNG") -> bytes:
    """The bytes of a picture file: `draw(ImageDraw)` on a plain background."""
    picture = Image.new(mode, size, background)
    if draw is not None:
        draw(ImageDraw.Draw(picture))
    out = io.BytesIO()
    picture.save(out, format=format)
    return out.getvalue()


def stroke(d):  # a vertical stroke, white on black, as the page's pad draws a 1
    d.line([(140, 40), (140, 240)], fill=255, width=20)


def data_url(picture: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(picture).decode()}"


@pytest.fixture(scope="module")
def network():
    return Network.create(hidden=(12, 6), device="cpu", seed=3)


@pytest.fixture
def server(network, tmp_path):
    """(host, port, demo) of a server running in a thread, stopped after the test."""
    demo = Demo(network, tmp_path / "model.npz", np.arange(10))
    httpd = make_server(demo, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield (*httpd.server_address[:2], demo)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def request(server, method, path, body=None, headers=None):
    """(status, headers, body) of one request through http.client."""
    connection = http.client.HTTPConnection(*server[:2], timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def predict(server, body) -> tuple[int, dict]:
    body = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, headers, answer = request(server, "POST", "/api/predict", body, {"Content-Type": "application/json"})
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(answer)


def raw(server, data: bytes, shut_write: bool = True) -> tuple[int, dict]:
    """Send bytes as they are on a socket (a request http.client would not send); (status, JSON body)."""
    with socket.create_connection(server[:2], timeout=30) as s:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    if not reply.startswith(b"HTTP/"):  # http.server answers a request line it cannot read without a status line
        return None, json.loads(reply)
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def assert_refused(server, status: int, answer: dict, expected_status: int, message: str) -> None:
    """A refusal: the status, one line of JSON {"error"} matching `message`; then a good request works."""
    assert status == expected_status, answer
    assert list(answer) == ["error"] and "\n" not in answer["error"]
    assert re.search(message, answer["error"]), answer["error"]
    good, result = predict(server, {"image": data_url(png(stroke))})
    assert good == 200 and len(result["probabilities"]) == 10


def hand_forward(network, x: np.ndarray) -> list[np.ndarray]:
    """[A1, ..., A_L] for one digit x (784 uint8) in float64 NumPy, written here: ReLU hidden, softmax out."""
    A, out = x.astype(np.float64) / 255, []
    Ws, bs = [np.asarray(W, np.float64) for W in network.W], [np.asarray(b, np.float64)[:, 0] for b in network.b]
    for l, (W, b) in enumerate(zip(Ws, bs), start=1):
        Z = W @ A + b
        A = np.maximum(Z, 0) if l < len(Ws) else np.exp(Z - Z.max()) / np.exp(Z - Z.max()).sum()
        out.append(A)
    return out


def test_a_drawing_gives_what_predict_py_computes_and_every_layer(server, network, tmp_path):
    picture = png(stroke)
    (tmp_path / "one.png").write_bytes(picture)
    status, answer = predict(server, {"image": data_url(picture)})
    assert status == 200
    X = nn_gpu.read_digit(tmp_path / "one.png")  # what predict.py --image feeds the network
    np.testing.assert_array_equal(np.array(answer["seen"], dtype=np.uint8), X.reshape(28, 28))
    np.testing.assert_allclose(answer["probabilities"], network.predict_proba(X)[:, 0], rtol=1e-6, atol=1e-7)
    *hidden, output = hand_forward(network, X[:, 0])
    assert [len(A) for A in answer["hidden"]] == [12, 6]
    for A_served, A_hand in zip(answer["hidden"], hidden):
        np.testing.assert_allclose(A_served, A_hand, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(answer["probabilities"], output, rtol=1e-4, atol=1e-6)
    assert answer["top"] == int(np.argmax(output)) and answer["prediction"] == answer["top"]
    # plain base64 and a photo of dark ink on light paper (a JPEG) are read the same way
    status, plain = predict(server, {"image": base64.b64encode(picture).decode()})
    assert status == 200 and plain == answer
    photo = png(
        lambda d: d.line([(300, 60), (300, 420)], fill=(20, 20, 30), width=30), (600, 480), "white", "RGB", "JPEG"
    )
    (tmp_path / "photo.jpg").write_bytes(photo)
    status, answer = predict(server, {"image": data_url(photo, "image/jpeg")})
    assert status == 200
    np.testing.assert_array_equal(
        np.array(answer["seen"], dtype=np.uint8).ravel(), nn_gpu.read_digit(tmp_path / "photo.jpg")[:, 0]
    )


def test_labels_other_than_0_to_9_are_named(server):
    server[2].classes = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    status, answer = predict(server, {"image": data_url(png(stroke))})
    assert status == 200 and answer["prediction"] == server[2].classes[answer["top"]]


def test_the_model_endpoint_gives_the_layers_and_classes(server):
    status, headers, body = request(server, "GET", "/api/model")
    assert status == 200 and headers["Content-Type"] == "application/json"
    model = json.loads(body)
    assert model["layers"] == [784, 12, 6, 10] and model["classes"] == list(range(10))
    assert model["model"] == "model.npz" and model["device"].startswith("cpu")  # the name, never the path


def test_a_units_weights_are_w1s_row_or_the_product_below_it(server, network):
    W1, W2 = (np.asarray(W, np.float64) for W in network.W[:2])
    status, _, body = request(server, "GET", "/api/weights?layer=1&unit=3")
    answer = json.loads(body)
    assert status == 200 and (answer["layer"], answer["unit"]) == (1, 3)
    np.testing.assert_allclose(answer["pattern"], W1[2], rtol=1e-12)
    assert answer["limit"] == pytest.approx(np.abs(W1).max())  # one colour scale for the layer
    answer = json.loads(request(server, "GET", "/api/weights?layer=2&unit=6")[2])
    np.testing.assert_allclose(answer["pattern"], (W2 @ W1)[5], rtol=1e-9)
    assert answer["limit"] == pytest.approx(np.abs(W2 @ W1).max())
    for query, expected, message in [
        ("layer=3&unit=1", 404, r"^layer 3: the hidden layers are 1 to 2$"),
        ("layer=0&unit=1", 404, "hidden layers are 1 to 2"),
        ("layer=1&unit=13", 404, r"^unit 13: layer 1 has units 1 to 12$"),
        ("layer=1&unit=0", 404, "units 1 to 12"),
        ("layer=1", 400, r"layer=l&unit=k"),
        ("layer=one&unit=1", 400, r"two whole numbers"),
    ]:
        status, _, body = request(server, "GET", f"/api/weights?{query}")
        assert_refused(server, status, json.loads(body), expected, message)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, r"^the body is not JSON \(Expecting property name"),
        (b"\xff\xfe\x00", 400, r"^the body is not JSON"),
        (b"[1, 2]", 400, r'^the body must be \{"image"'),
        (b'{"picture": "x"}', 400, r'^the body must be \{"image"'),
        (b'{"image": 7}', 400, r'^the body must be \{"image"'),
        (b'{"image": "data:image/png,abc"}', 400, r"data: URL must be base64"),
        (b'{"image": "not base64!"}', 400, r"^the image is not base64"),
        (b'{"image": "aGVsbG8=$$"}', 400, r"^the image is not base64"),  # never read as "hello" with $$ dropped
        (b'{"image": ""}', 422, r"^the picture: it is empty$"),
        (b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, r"^the body is JSON nested too deeply$"),
        (b'{"image": 1' + b"0" * 5000 + b"}", 400, r"^the body is not JSON \(Exceeds the limit"),
        (
            json.dumps({"image": data_url(b"hello, not a picture")}).encode(),
            422,
            r"^the picture: not a readable image: not a PNG, JPEG, GIF, WEBP, BMP, TIFF picture$",
        ),
        (json.dumps({"image": data_url(png())}).encode(), 422, r"^the picture: it is blank: no ink to find$"),
        (json.dumps({"image": data_url(png(background=255))}).encode(), 422, r"blank"),
        (json.dumps({"image": data_url(png()[:60])}).encode(), 422, r"not a readable image"),  # cut short
        (
            json.dumps({"image": data_url(png(size=(5000, 5001)))}).encode(),
            422,
            r"^the picture: too large a picture \(5000 x 5001 pixels; the limit is 25,000,000\); shrink or crop it$",
        ),
    ],
)
def test_a_bad_body_is_a_4xx_with_one_line_and_the_next_request_works(server, body, status, message):
    assert_refused(server, *predict(server, body), status, message)


def test_a_body_over_the_limit_is_refused_unread(server, monkeypatch):
    monkeypatch.setattr(serve, "MAX_BODY", 4096)
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80), dtype=np.uint8)).save(noise, format="PNG")
    body = json.dumps({"image": data_url(noise.getvalue())}).encode()
    assert len(body) > 4096
    assert_refused(server, *predict(server, body), 413, rf"^the body is {len(body):,} bytes; the limit is 4,096$")
    # a client that says it will send a gigabyte is answered before it sends anything
    connection = http.client.HTTPConnection(*server[:2], timeout=30)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Length", str(2**30))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "limit is 4,096" in json.loads(response.read())["error"]
    connection.close()


def test_requests_http_client_would_not_send_are_refused_too(server):
    head = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    assert_refused(server, *raw(server, head + b"\r\n"), 411, "Content-Length")
    assert_refused(server, *raw(server, head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), 411, "")
    assert_refused(server, *raw(server, head + b'Content-Length: 100\r\n\r\n{"image"'), 400, "ended after 8 of 100")
    assert_refused(server, *raw(server, head + b"X-Long: " + b"x" * 70000 + b"\r\n\r\n"), 431, "Line too long")
    assert raw(server, b"GARBAGE\r\n\r\n") == (None, {"error": "Bad request syntax ('GARBAGE')"})
    assert_refused(server, *raw(server, b"DELETE / HTTP/1.1\r\n\r\n"), 501, "Unsupported method")


@pytest.mark.parametrize(
    "path",
    ["/../pyproject.toml", "/%2e%2e/pyproject.toml", "/serve.py", "/page/app.js", "/app.js/../../serve.py",
     "//etc/passwd", "/index.html", "/api", "/favicon.ico"],
)  # fmt: skip
def test_nothing_but_its_own_assets_is_served(server, path):
    status, headers, body = request(server, "GET", path)
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"].endswith("no such page")
    assert request(server, "POST", path, b"{}")[0] == 404


def test_the_page_loads_only_its_own_assets(server):
    status, headers, page = request(server, "GET", "/?from=bookmark")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    links = re.findall(rb'(?:src|href)="([^"]*)"', page)
    assert sorted(links) == [b"/app.js", b"/style.css", b"data:,"]
    for path, kind in [("/app.js", "text/javascript"), ("/style.css", "text/css")]:
        status, headers, body = request(server, "GET", path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
        assert not re.search(rb"https?:|//[a-z]", body.replace(b"// ", b"")), f"{path} refers to another site"


def test_a_failure_inside_is_a_500_and_the_server_goes_on(server, monkeypatch):
    real = Demo.predict
    monkeypatch.setattr(Demo, "predict", lambda self, picture: 1 / 0)
    assert predict(server, {"image": data_url(png(stroke))}) == (500, {"error": "ZeroDivisionError: division by zero"})
    monkeypatch.setattr(Demo, "predict", real)
    assert predict(server, {"image": data_url(png(stroke))})[0] == 200


def test_a_client_that_leaves_before_its_answer_is_no_error(server, monkeypatch, capfd):
    real = Demo.predict

    def slow(self, picture):
        time.sleep(0.3)
        return real(self, picture)

    monkeypatch.setattr(Demo, "predict", slow)
    body = json.dumps({"image": data_url(png(stroke))}).encode()
    with socket.create_connection(server[:2]) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    time.sleep(0.6)
    assert predict(server, {"image": data_url(png(stroke))})[0] == 200
    assert "Traceback" not in capfd.readouterr().err


def test_requests_at_once_each_get_their_own_answer_one_at_a_time(server, network, monkeypatch):
    inside, most = [0], [0]  # pictures being read at once now, and at most

    def read_digit(picture, max_pixels):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        inside[0] -= 1
        return nn_gpu.read_digit(picture, max_pixels)

    monkeypatch.setattr(serve, "read_digit", read_digit)
    pictures = [
        png(lambda d, k=k: d.line([(60 + 20 * k, 40), (200 - 10 * k, 240)], fill=255, width=20)) for k in range(8)
    ]
    answers = [None] * len(pictures)

    def ask(k):
        answers[k] = predict(server, {"image": data_url(pictures[k])})

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(pictures))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for picture, (status, answer) in zip(pictures, answers):
        assert status == 200
        np.testing.assert_array_equal(
            np.array(answer["seen"], dtype=np.uint8).ravel(), nn_gpu.read_digit(picture)[:, 0]
        )
    assert most == [1]  # one picture in memory at a time


def test_a_body_over_the_limit_still_being_sent_gets_its_413_not_a_reset(server, monkeypatch):
    monkeypatch.setattr(serve, "MAX_BODY", 4096)
    body = b'{"image": "' + b"A" * (8 << 20) + b'"}'  # 8 MB: the client is still sending when the answer comes
    status, _, answer = request(server, "POST", "/api/predict", body, {"Content-Type": "application/json"})
    assert status == 413 and json.loads(answer)["error"] == f"the body is {len(body):,} bytes; the limit is 4,096"
    assert predict(server, {"image": data_url(png(stroke))})[0] == 200


def test_odd_requests_are_4xx_and_head_is_get_without_the_body(server):
    head = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for length in (
        "\u00b2".encode(),
        "\u0663".encode(),
        b"-1",
        b"1e3",
    ):  # superscript 2, Arabic-Indic 3: digits to isdigit
        assert_refused(server, *raw(server, head + b"Content-Length: " + length + b"\r\n\r\n{}"), 411, "Content-Length")
    status, headers, body = request(server, "HEAD", "/")
    assert (status, body) == (200, b"") and int(headers["Content-Length"]) == len(request(server, "GET", "/")[2])
    status, headers, body = request(server, "HEAD", "/api/model")
    assert status == 200 and body == b"" and headers["Content-Type"] == "application/json"


def test_a_loopback_server_answers_only_its_own_host_names(server):
    host, port = server[:2]
    for name in ("127.0.0.1", "localhost", "LOCALHOST", "[::1]"):
        for shown in (name, f"{name}:{port}"):
            assert request(server, "GET", "/api/model", headers={"Host": shown})[0] == 200, shown
    for foreign in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", "localhost:1", ""):
        status, _, body = request(server, "GET", "/api/model", headers={"Host": foreign})
        assert status == 403, foreign
        assert json.loads(body)["error"] == f"Host {foreign!r} is not this server; open http://{host}:{port}/"
        assert request(server, "POST", "/api/predict", b"{}", headers={"Host": foreign})[0] == 403
    assert raw(server, b"GET /api/model HTTP/1.0\r\n\r\n")[0] == 200  # HTTP/1.0 without a Host: not a browser's page


def test_many_clients_at_once_wait_in_the_queue_rather_than_being_reset(network, tmp_path):
    httpd = make_server(Demo(network, tmp_path / "model.npz", np.arange(10)), "127.0.0.1", 0)
    clients = []
    try:  # nothing accepts yet: the kernel queues each connection up to the backlog, and drops the rest
        for _ in range(64):
            clients.append(socket.create_connection(httpd.server_address[:2], timeout=0.5))
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        for client in clients:
            client.settimeout(30)
            client.sendall(b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        for client in clients:
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"), reply[:80]
        httpd.shutdown()
        thread.join()
    finally:
        for client in clients:
            client.close()
        httpd.server_close()


@pytest.mark.parametrize(
    ("host", "warned", "shown"),
    [
        ("127.1", None, "http://127.0.0.1:"),
        ("", "listening on every address of this machine (0.0.0.0): anyone who can reach", "http://0.0.0.0:"),
        ("[::1]", None, "http://[::1]:"),
    ],
)
def test_the_host_flag_as_the_system_reads_it(model_file, monkeypatch, host, warned, shown):
    from helpers import run_cli

    if host == "[::1]":
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError as error:
            pytest.skip(f"no IPv6 loopback on this machine ({error})")

    def interrupted(self, poll_interval=0.5):
        raise KeyboardInterrupt

    monkeypatch.setattr(serve.ThreadingHTTPServer, "serve_forever", interrupted)
    code, out, err = run_cli(serve_main, ["--model", model_file, "--host", host, "--port", "0", "--device", "cpu"])
    assert code == 0, err
    assert f" at {shown}" in out
    assert (warned in err) if warned else "warning" not in err, err


def test_loopback_hosts():
    assert all(serve.is_loopback(h) for h in ["127.0.0.1", "127.3.2.1", "::1", "localhost"])
    assert not any(serve.is_loopback(h) for h in ["0.0.0.0", "::", "192.168.1.2", "example.org"])
    assert serve.url("::1", 80) == "http://[::1]:80/" and serve.url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"


# ---- the command, as a user runs it ----


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, network):
    path = tmp_path_factory.mktemp("serve") / "model.npz"
    nn_gpu.save_model(network, path)
    return path


@pytest.mark.slow
def test_serve_py_prints_its_url_serves_and_stops_on_ctrl_c(model_file):
    process, url = start_serve("--model", model_file, "--port", 0, "--device", "cpu")
    try:
        host, port = re.match(r"http://([\d.]+):(\d+)/$", url).groups()
        assert host == "127.0.0.1"
        status, _, body = request((host, int(port)), "GET", "/")
        assert status == 200 and b'<canvas id="pad"' in body
        status, answer = predict((host, int(port)), {"image": data_url(png(stroke))})
        assert status == 200 and len(answer["hidden"]) == 2
        # the port is taken now: a second server says so in one line
        taken = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "serve.py"), "--model", str(model_file), "--port", port],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert taken.returncode == 2
        assert taken.stderr == f"error: cannot listen on {url}: address already in use; choose another with --port\n"
    finally:
        code, err = stop_serve(process)
    assert code == 0 and err == "stopped\n"


@pytest.mark.slow
def test_serve_py_warns_when_others_can_reach_it(model_file):
    process, url = start_serve("--model", model_file, "--port", 0, "--host", "0.0.0.0", "--device", "cpu")
    port = int(url.rsplit(":", 1)[1].strip("/"))
    try:
        assert request(("127.0.0.1", port), "GET", "/api/model")[0] == 200
    finally:
        code, err = stop_serve(process)
    assert code == 0
    assert err.splitlines()[0] == (
        f"warning: listening on every address of this machine (0.0.0.0): anyone who can reach this machine on "
        f"port {port} can use the page"
    )


def test_serve_refuses_what_it_cannot_show(tmp_path, model_file, capsys, monkeypatch):
    from helpers import run_cli

    def never(*args):  # a refusal that failed would serve for ever: fail instead
        raise AssertionError("serve.py started a server for a model it must refuse")

    monkeypatch.setattr(serve, "make_server", never)
    table = Network.create(hidden=(4,), device="cpu", seed=0, n_inputs=5, n_classes=3)
    nn_gpu.save_model(table, tmp_path / "table.npz")
    code, out, err = run_cli(serve_main, ["--model", tmp_path / "table.npz", "--port", 0])
    assert (code, out) == (2, "")
    assert (
        err == f"error: {tmp_path / 'table.npz'} takes 5 features, not a 28 x 28 picture: serve needs a digit model\n"
    )
    code, _, err = run_cli(serve_main, ["--model", tmp_path / "missing.npz"])
    assert code == 2 and err.startswith(f"error: {tmp_path / 'missing.npz'}") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit:
        serve_main(["--model", str(model_file), "--port", "80000"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == (
        "error: argument --port: must be a port number 0..65535, got '80000' (see serve.py --help)\n"
    )
