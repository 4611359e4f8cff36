"""`nn-gpu serve --model runs/x/model.npz` (scripts/serve.py): draw a digit and watch the network think.

A local web server on 127.0.0.1 (--port, default 8000) with one page (nn_gpu/page/): draw a digit
with a mouse, pen or finger, or drop a photo of one, and the page shows the 28 x 28 image the network
sees, each hidden layer's activations A_l, the output probabilities A_L and the top class; hover or
tap a hidden unit to see its incoming weights as a 28 x 28 picture (plots.input_patterns, as in
weights.png). The page only draws: the server makes every number it shows.

    GET  /                   the page (index.html, app.js, style.css: nothing else is ever served)
    GET  /api/model          {"model", "device", "layers": [n0, n1, ..., C], "classes"}
    POST /api/predict        {"image": a data: URL or base64 of a picture file (PNG, JPEG, ...)}
                             -> {"seen": 28 x 28 pixels, "hidden": [A1, ...], "probabilities": A_L,
                                 "top": its index k, "prediction": classes[k]}
    GET  /api/weights?layer=l&unit=k   unit k (1..n_l) of hidden layer l: {"pattern": 784 weights, "limit"}

A picture goes through what `predict.py --image` does, the same functions: nn_gpu.read_digit (the
MNIST-like preprocessing of nn_gpu.handwriting), then Network.forward, one pass that keeps every A_l.
A bad request gets a 4xx and {"error": one line}, and the server goes on: a body over MAX_BODY bytes
(413), no length (411), not JSON or not {"image": ...} (400), a picture that cannot be read, holds no
ink or has over MAX_PIXELS pixels (422), an unknown path (404). Requests run one at a time through the model (a lock), so one large
photo at a time is in memory.

Built on the standard library's http.server: one page and three JSON endpoints need no framework,
and a dependency would be one more thing to install for a demo. ThreadingHTTPServer keeps a slow
client from holding up the others, and each connection times out after TIMEOUT seconds.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import errno
import ipaddress
import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from nn_gpu.api import read_digit
from nn_gpu.checkpoint import load_trained_model
from nn_gpu.cli import Parser, add_version, device_name, run_main, warn
from nn_gpu.device import Device, resolve_device
from nn_gpu.errors import DataError, NNGpuError, one_line
from nn_gpu.model import Network
from nn_gpu.plots import input_patterns
from nn_gpu.predict import picture_problem

MAX_BODY = 16 * 2**20  # bytes of a request body: a phone photo of up to 12 MB, in base64
MAX_PIXELS = 25_000_000  # a picture's pixels: a 24-megapixel photo; larger ones take gigabytes to preprocess
TIMEOUT = 30  # seconds a connection may take to send its request
ASSETS = {  # the only files served: a path to (file in nn_gpu/page, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
PAGE_POLICY = (  # the browser itself refuses anything from elsewhere: the page works offline
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class BadRequest(Exception):
    """A request the server refuses: its HTTP status and a one-line reason, sent as {"error": reason}."""

    def __init__(self, status: HTTPStatus, reason: str):
        super().__init__(reason)
        self.status = status


class Demo:
    """The network behind the page: its forward pass on one picture, and its hidden units' weights.

    network: a Network of 28 x 28 digits (n0 = 784) on any device; model: the file it came from, named
    on the page; classes: the label of each output unit (C).
    """

    @classmethod
    def load(cls, model: Path, device: Device) -> Demo:
        """The Demo of the model.npz at `model` on `device`; NNGpuError for a model that takes no pictures."""
        arch, params, _, encoding = load_trained_model(model)
        if problem := picture_problem(model, arch, encoding):
            raise NNGpuError(f"{problem}: serve needs a digit model")
        return cls(Network(arch, device, params), model, encoding.classes)

    def __init__(self, network: Network, model: Path, classes: np.ndarray):
        self.network, self.model, self.classes = network, model, classes
        W = [network.device.to_host(W_l) for W_l in network.W]  # n_l x n_{l-1} each
        self.patterns = [input_patterns(W, l) for l in range(1, network.n_layers)]  # n_l x 784 per hidden layer
        self.lock = threading.Lock()  # one forward pass (and one decoded picture) at a time

    def describe(self) -> dict:
        """What /api/model returns: the model's file, device, layer widths n0..C and class labels."""
        return {
            "model": str(self.model),
            "device": self.network.device.describe(),
            "layers": list(self.network.arch.sizes),
            "classes": self.classes.tolist(),
        }

    def predict(self, picture: bytes) -> dict:
        """What /api/predict returns for the bytes of a picture file: the 28 x 28 digit the network sees
        (uint8), each hidden layer's activations A_l (n_l), the probabilities A_L (C), and the top class
        k with its label. DataError when the picture cannot be read, holds no ink or is over MAX_PIXELS."""
        with self.lock:
            X = read_digit(picture, MAX_PIXELS)  # 784 x 1 uint8, as predict.py --image makes it
            cache = self.network.forward(X, keep=True)  # A0, Z1, A1, ..., A_L; one column each
            L, host = self.network.n_layers, self.network.device.to_host
            A = [host(cache[f"A{l}"])[:, 0] for l in range(1, L + 1)]  # host sync
        top = int(A[-1].argmax())
        return {
            "seen": X.reshape(28, 28).tolist(),
            "hidden": [A_l.tolist() for A_l in A[:-1]],
            "probabilities": A[-1].tolist(),
            "top": top,
            "prediction": self.classes[top].item(),
        }

    def weights(self, query: str) -> dict:
        """What /api/weights?layer=l&unit=k returns: unit k (1..n_l) of hidden layer l as weights over the
        784 pixels (W1's row k for layer 1, the product W_l ... W1 deeper, as in weights.png), with the
        largest |weight| of the layer, so that units of one layer share a colour scale."""
        fields = parse_qs(query)
        try:
            layer, unit = (int(fields[name][0]) for name in ("layer", "unit"))
        except (KeyError, ValueError):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "give ?layer=l&unit=k, two whole numbers") from None
        if not 1 <= layer <= len(self.patterns):
            raise BadRequest(HTTPStatus.NOT_FOUND, f"layer {layer}: the hidden layers are 1 to {len(self.patterns)}")
        pattern = self.patterns[layer - 1]
        if not 1 <= unit <= len(pattern):
            raise BadRequest(HTTPStatus.NOT_FOUND, f"unit {unit}: layer {layer} has units 1 to {len(pattern)}")
        return {
            "layer": layer,
            "unit": unit,
            "pattern": pattern[unit - 1].tolist(),
            "limit": float(np.abs(pattern).max()),
        }


def picture_of(body: bytes) -> bytes:
    """The picture file inside a /api/predict body, {"image": "data:image/png;base64,..." or plain
    base64}; BadRequest saying what is wrong with it."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"the body is not JSON ({one_line(error)})") from None
    image = request.get("image") if isinstance(request, dict) else None
    if not isinstance(image, str):
        raise BadRequest(HTTPStatus.BAD_REQUEST, 'the body must be {"image": a data: URL or base64 of a picture}')
    if image.startswith("data:"):
        header, _, image = image.partition(",")
        if not header.endswith(";base64"):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "the image's data: URL must be base64 (data:...;base64,...)")
    try:
        return base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"the image is not base64 ({one_line(error)})") from None


class Handler(BaseHTTPRequestHandler):
    """One request: an asset, or an endpoint of `demo`; every error is {"error": one line}."""

    demo: Demo  # set on the subclass make_server builds
    timeout = TIMEOUT
    server_version = "nn_gpu"
    error_content_type = "application/json"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/api/model":
            self._reply(lambda: self.demo.describe())
        elif url.path == "/api/weights":
            self._reply(lambda: self.demo.weights(url.query))
        elif url.path in ASSETS:
            name, kind = ASSETS[url.path]
            self._send(HTTPStatus.OK, (resources.files("nn_gpu") / "page" / name).read_bytes(), kind)
        else:
            self.send_error(HTTPStatus.NOT_FOUND, f"{url.path}: no such page")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != "/api/predict":
            self.send_error(HTTPStatus.NOT_FOUND, f"{path}: POST goes to /api/predict")
            return
        self._reply(lambda: self.demo.predict(picture_of(self._body())))

    def _body(self) -> bytes:
        """The request's body, at most MAX_BODY bytes; BadRequest for one without a length or over it."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
        size = int(length)
        if size > MAX_BODY:
            raise BadRequest(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is {size:,} bytes; the limit is {MAX_BODY:,}"
            )
        try:
            body = self.rfile.read(size)
        except TimeoutError:
            raise BadRequest(HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive within {TIMEOUT} s") from None
        if len(body) < size:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body):,} of {size:,} bytes")
        return body

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:  # the client left before its answer was sent (a tab closed): no one to tell
            self.close_connection = True

    def _reply(self, answer) -> None:
        """Send answer()'s dict as JSON, or its refusal: BadRequest's status, 422 for a picture that
        cannot be used (DataError), 500 for anything else (logged, and the server goes on)."""
        try:
            body = json.dumps(answer()).encode()
        except BadRequest as error:
            self.send_error(error.status, str(error))
        except DataError as error:
            self.send_error(HTTPStatus.UNPROCESSABLE_ENTITY, one_line(error))
        except Exception as error:  # a bug or an exhausted device: this request fails, the server stays up
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {one_line(error)}")
        else:
            self._send(HTTPStatus.OK, body, "application/json")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error as {"error": one line}, those http.server raises itself (a malformed request line,
        an unsupported method) included; the connection is closed, since its body may be unread."""
        self.log_error("%d %s", code, message or HTTPStatus(code).phrase)
        self.close_connection = True
        self._send(
            code, json.dumps({"error": one_line(message or HTTPStatus(code).phrase)}).encode(), "application/json"
        )

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if kind.startswith("text/html"):
            self.send_header("Content-Security-Policy", PAGE_POLICY)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        """Successful requests go unlogged: the page asks for a prediction as often as you draw."""

    def log_message(self, format: str, *args) -> None:
        print(f"{self.address_string()}: {format % args}", file=sys.stderr)


def make_server(demo: Demo, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server of `demo` listening on host:port (port 0: a free one, read from server.server_address);
    start it with serve_forever(). NNGpuError, in one line, when it cannot listen there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
    handler = type("DemoHandler", (Handler,), {"demo": demo})
    try:
        return server_class((host, port), handler)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        hint = "; choose another with --port" if error.errno in (errno.EADDRINUSE, errno.EACCES) else ""
        raise NNGpuError(f"cannot listen on {url(host, port)}: {reason}{hint}") from None


def url(host: str, port: int) -> str:
    """The page's address: http://host:port/, an IPv6 host in brackets."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine alone (127.0.0.0/8, ::1 or localhost): nobody else reaches the page."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_parser(prog: str = "serve.py") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Serve a page where you draw a digit and watch the network think: the picture it sees, "
        "each hidden layer, its probabilities.",
    )
    add_version(p)
    p.add_argument("--model", type=Path, required=True, help="a model of digits written by train.py (DIR/model.npz)")
    p.add_argument("--port", type=_port, default=8000, help="the port to listen on (default 8000; 0: any free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 lets others in)",
    )
    p.add_argument("--device", type=device_name, default="auto", help="auto (default), cpu, gpu (card 0) or gpu:N")
    return p


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {text!r}")
    return int(text)


def serve_command(argv: list[str] | None = None, prog: str = "serve.py") -> int:
    args = serve_parser(prog).parse_args(argv)
    demo = Demo.load(args.model, resolve_device(args.device))
    server = make_server(demo, args.host, args.port)
    host, port = server.server_address[:2]
    if not is_loopback(args.host):
        warn(f"listening on {args.host}: anyone who can reach this machine on port {port} can use the page")
    print(f"serving {args.model} on {demo.network.device.describe()} at {url(host, port)} (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def serve_main(argv: list[str] | None = None, prog: str = "serve.py") -> int:
    """`python scripts/serve.py --model DIR/model.npz` (prog: the command typed)."""
    return run_main(lambda a: serve_command(a, prog), argv)
