"""`nn-gpu serve` and scripts/serve.py: the draw-a-digit page (nn_gpu.serve) on this machine."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from nn_gpu.commands.toolkit import Parser, add_version, device_name, run_main
from nn_gpu.device import resolve_device
from nn_gpu.errors import warn
from nn_gpu.serve import Demo, is_loopback, make_server, url


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
        type=_host,
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 lets others in)",
    )
    p.add_argument("--device", type=device_name, default="auto", help="auto (default), cpu, gpu (card 0) or gpu:N")
    return p


def _host(text: str) -> str:
    """--host as the socket takes it: an IPv6 address without the brackets of a URL ([::1] is ::1)."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {text!r}")
    return int(text)


def serve_command(argv: list[str] | None = None, prog: str = "serve.py") -> int:
    args = serve_parser(prog).parse_args(argv)
    demo = Demo.load(args.model, resolve_device(args.device))
    server = make_server(demo, args.host, args.port)
    host, port = server.server_address[:2]  # as the system reads --host: "" is every address, 127.1 is 127.0.0.1
    if not is_loopback(host):
        everywhere = ipaddress.ip_address(host).is_unspecified
        where = f"every address of this machine ({host})" if everywhere else host
        warn(f"listening on {where}: anyone who can reach this machine on port {port} can use the page")
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
