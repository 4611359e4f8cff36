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
(413, read and dropped up to DRAIN_BYTES first, so that the client sees the answer rather than a
reset connection), no length (411), not JSON, JSON nested too deeply or not {"image": ...} (400), a
picture that cannot be read, holds no ink or has over MAX_PIXELS pixels (422), an unknown path (404).
Requests run one at a time through the model (a lock), so one large photo at a time is in memory.
HEAD is answered as GET, without the body.

A server on a loopback address answers only requests whose Host is this machine (127.0.0.1,
localhost, [::1] or the address it listens on, with its port): a page of another site cannot reach
it through a name that resolves to 127.0.0.1 (DNS rebinding). /api/model names the model's file, not
its path. Connections wait in a queue of QUEUE while the server is busy.

Built on the standard library's http.server: one page and three JSON endpoints need no framework,
and a dependency would be one more thing to install for a demo. ThreadingHTTPServer keeps a slow
client from holding up the others, and each connection times out after TIMEOUT seconds.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import ipaddress
import json
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from nn_gpu.api import read_digit
from nn_gpu.checkpoint import load_trained_model, picture_problem
from nn_gpu.device import Device
from nn_gpu.errors import DataError, NNGpuError, one_line
from nn_gpu.model import Network
from nn_gpu.plots import input_patterns

MAX_BODY = 16 * 2**20  # bytes of a request body: a phone photo of up to 12 MB, in base64
MAX_PIXELS = 25_000_000  # a picture's pixels: a 24-megapixel photo; larger ones take gigabytes to preprocess
TIMEOUT = 30  # seconds a connection may take to send its request
DRAIN_BYTES, DRAIN_SECONDS = 4 * MAX_BODY, 2.0  # what a refused body may still send before the connection closes
QUEUE = 128  # connections waiting to be accepted (socketserver's default, 5, resets the sixth at once)
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")  # the Host a loopback server answers, besides its own address
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
            "model": self.model.name,
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
            cache = self.network.forward(X, keep=True, training=False)  # A0, Z1, A1, ..., A_L; one column each
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
    except RecursionError:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "the body is JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as error:  # ValueError: not JSON, or a number of thousands of digits
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
        if self._foreign_host():
            return
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

    def do_HEAD(self) -> None:
        self.do_GET()  # _send leaves the body out

    def do_POST(self) -> None:
        if self._foreign_host():
            return
        path = urlsplit(self.path).path
        if path != "/api/predict":
            self.send_error(HTTPStatus.NOT_FOUND, f"{path}: POST goes to /api/predict")
            return
        self._reply(lambda: self.demo.predict(picture_of(self._body())))

    def _body(self) -> bytes:
        """The request's body, at most MAX_BODY bytes; BadRequest for one without a length or over it."""
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):
            raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
        size = int(length)
        if size > MAX_BODY:
            self.unread = size
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
        self.unread = 0  # bytes of a refused body the client may still be sending
        try:
            super().handle_one_request()
            if self.unread:
                self._drain(min(self.unread, DRAIN_BYTES))
        except ConnectionError:  # the client left before its answer was sent (a tab closed): no one to tell
            self.close_connection = True

    def _drain(self, limit: int) -> None:
        """After answering, read and drop what the client is still sending (at most `limit` bytes, for at
        most DRAIN_SECONDS): closing a socket with unread data resets it, and the client, still busy
        sending, would see "connection reset" instead of the answer. nginx's lingering close does the same."""
        self.wfile.flush()
        deadline = time.monotonic() + DRAIN_SECONDS
        with contextlib.suppress(OSError):  # a timeout included: the client is told, the rest is its business
            self.connection.shutdown(socket.SHUT_WR)
            while limit > 0 and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(limit, 1 << 16))
                if not chunk:
                    break
                limit -= len(chunk)

    def _foreign_host(self) -> bool:
        """Whether the request names another host than this server, on loopback (then it is refused, 403):
        a page elsewhere that made a name of its own resolve to 127.0.0.1 (DNS rebinding) sends that name."""
        host = self.headers.get("Host")
        listening, port = self.server.server_address[:2]
        if host is None or not is_loopback(listening):
            return False
        own = f"[{listening}]" if ":" in listening else listening
        if host.lower() in {name + suffix for name in {*LOCAL_NAMES, own} for suffix in ("", f":{port}")}:
            return False
        self.send_error(HTTPStatus.FORBIDDEN, f"Host {host!r} is not this server; open {url(listening, port)}")
        return True

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
    server_class = type(
        "Server",
        (ThreadingHTTPServer,),
        {"address_family": family, "daemon_threads": True, "request_queue_size": QUEUE},
    )
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
