// The page of `nn-gpu serve` (nn_gpu/serve.py). It only draws: the server makes every number it shows
// (the 28 x 28 digit, each hidden layer's activations, the probabilities, the weights) with the same
// functions as predict.py --image. Nothing here is loaded from elsewhere: it works offline.
"use strict";

const DEBOUNCE_MS = 120; // ask for a prediction this long after the pen last moved, and when it lifts
const STROKE = 20; // pixels of the 280 x 280 pad: about MNIST's stroke once scaled to 20 x 20

const pad = document.getElementById("pad");
const pen = pad.getContext("2d");
const seen = document.getElementById("seen");
const weights = document.getElementById("weights");
const caption = document.getElementById("unit-caption");
const layersBox = document.getElementById("layers");
const predictionText = document.getElementById("prediction");
const confidenceText = document.getElementById("confidence");
const bars = document.getElementById("bars");
const statusLine = document.getElementById("status");

let layers = []; // one {canvas, units, columns, cell, values} per hidden layer
let asked = 0; // the number of the latest request: an older answer arriving late is dropped
let timer = null;
let last = null; // the pen's previous point while it is down
let photoShown = false; // the pad shows a dropped photo: the next stroke starts on a clean pad
const patterns = new Map(); // "layer/unit" -> the answer of /api/weights

function say(text) {
  statusLine.textContent = text;
}

async function ask(url, options) {
  // The JSON the server answers; its one-line {"error"} becomes the Error's message.
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// ---- the pad: mouse, pen and touch through pointer events ----
function blankPad() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, pad.width, pad.height);
}

function canvasPoint(canvas, event) {
  // the pointer in the canvas's own pixels, however CSS sizes it
  const box = canvas.getBoundingClientRect();
  return [((event.clientX - box.left) * canvas.width) / box.width, ((event.clientY - box.top) * canvas.height) / box.height];
}

function strokeTo(point) {
  pen.strokeStyle = "#fff";
  pen.lineWidth = STROKE;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(...(last || point));
  pen.lineTo(...point);
  pen.stroke();
  last = point;
}

pad.addEventListener("pointerdown", (event) => {
  if (photoShown) {
    blankPad();
    photoShown = false;
  }
  pad.setPointerCapture(event.pointerId);
  last = null;
  strokeTo(canvasPoint(pad, event));
  soon();
});
pad.addEventListener("pointermove", (event) => {
  if (last === null) return;
  const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const move of moves.length ? moves : [event]) strokeTo(canvasPoint(pad, move));
  soon();
});
for (const kind of ["pointerup", "pointercancel"]) {
  pad.addEventListener(kind, () => {
    if (last === null) return;
    last = null;
    now();
  });
}

function soon() {
  clearTimeout(timer);
  timer = setTimeout(now, DEBOUNCE_MS);
}

function now() {
  clearTimeout(timer);
  predict(pad.toDataURL("image/png"));
}

document.getElementById("clear").addEventListener("click", () => {
  clearTimeout(timer);
  asked += 1; // an answer still on its way is for a drawing that is gone
  blankPad();
  photoShown = false;
  showNothing();
  say("");
});

// ---- a photo: dropped on the page, or chosen (a phone offers its camera) ----
function usePhoto(file) {
  const reader = new FileReader();
  reader.onload = () => {
    const image = new Image();
    image.onload = () => {
      blankPad();
      const scale = Math.min(pad.width / image.width, pad.height / image.height);
      const [w, h] = [image.width * scale, image.height * scale];
      pen.drawImage(image, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    };
    image.src = reader.result; // shown on the pad; the file itself is what the server reads
    photoShown = true;
    predict(reader.result);
  };
  reader.readAsDataURL(file);
}

document.getElementById("photo").addEventListener("change", (event) => {
  if (event.target.files.length) usePhoto(event.target.files[0]);
  event.target.value = "";
});
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  document.body.classList.add("dropping");
});
document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dropping");
  if (event.dataTransfer.files.length) usePhoto(event.dataTransfer.files[0]);
});

// ---- the server's answer, drawn ----
async function predict(image) {
  const mine = ++asked;
  try {
    const answer = await ask("/api/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image }),
    });
    if (mine !== asked) return;
    show(answer);
    say("");
  } catch (error) {
    if (mine === asked) say(error.message);
  }
}

function show(answer) {
  const pixels = seen.getContext("2d").createImageData(28, 28);
  answer.seen.flat().forEach((v, k) => pixels.data.set([v, v, v, 255], 4 * k));
  seen.getContext("2d").putImageData(pixels, 0, 0);
  answer.hidden.forEach((values, l) => drawLayer(layers[l], values));
  predictionText.textContent = String(answer.prediction);
  const [p, top] = [answer.probabilities, answer.top];
  confidenceText.textContent = `${(100 * p[top]).toFixed(1)}% sure`;
  [...bars.children].forEach((bar, k) => {
    bar.querySelector(".fill").style.width = `${100 * p[k]}%`;
    bar.querySelector(".value").textContent = `${(100 * p[k]).toFixed(1)}%`;
    bar.classList.toggle("top", k === top);
  });
}

function showNothing() {
  const context = seen.getContext("2d");
  context.fillStyle = "#000";
  context.fillRect(0, 0, 28, 28);
  layers.forEach((layer) => drawLayer(layer, new Array(layer.units).fill(0)));
  predictionText.textContent = "";
  confidenceText.textContent = "draw a digit";
  for (const bar of bars.children) {
    bar.querySelector(".fill").style.width = "0%";
    bar.querySelector(".value").textContent = "";
    bar.classList.remove("top");
  }
}

// ---- hidden layers: one cell per unit, brighter for a larger activation ----
function heat(t) {
  // 0 (a silent unit) is near black, the layer's largest activation amber
  return `rgb(${Math.round(20 + 235 * t)}, ${Math.round(22 + 154 * t)}, ${Math.round(26 * (1 - t))})`;
}

function drawLayer(layer, values) {
  layer.values = values;
  const context = layer.canvas.getContext("2d");
  const largest = values.reduce((a, b) => Math.max(a, b), 0) || 1; // each layer on its own scale (ReLU: >= 0)
  context.fillStyle = "#15171b";
  context.fillRect(0, 0, layer.canvas.width, layer.canvas.height);
  values.forEach((v, k) => {
    context.fillStyle = heat(Math.max(v, 0) / largest);
    const [x, y] = [(k % layer.columns) * layer.cell, Math.floor(k / layer.columns) * layer.cell];
    context.fillRect(x + 1, y + 1, layer.cell - 2, layer.cell - 2);
  });
  if (layer.picked !== null) {
    // the unit whose weights are shown: a white frame
    const k = layer.picked;
    context.strokeStyle = "#fff";
    context.strokeRect((k % layer.columns) * layer.cell + 0.5, Math.floor(k / layer.columns) * layer.cell + 0.5, layer.cell - 1, layer.cell - 1);
  }
}

function addLayer(l, units) {
  // Small multiples for up to 256 units; a wide layer is a heat strip of 64 small cells a row.
  const columns = Math.min(units, units <= 256 ? 16 : 64);
  const cell = units <= 256 ? 16 : 6;
  const panel = document.createElement("div");
  panel.className = "layer";
  const title = document.createElement("h3");
  title.textContent = `Layer ${l}: A${l} = ReLU(Z${l}), ${units} units`;
  const canvas = document.createElement("canvas");
  canvas.width = columns * cell;
  canvas.height = Math.ceil(units / columns) * cell;
  canvas.dataset.layer = l;
  canvas.dataset.units = units;
  panel.append(title, canvas);
  layersBox.append(panel);
  const layer = { canvas, units, columns, cell, values: new Array(units).fill(0), picked: null };
  const pick = (event) => {
    const [x, y] = canvasPoint(canvas, event);
    const [column, row] = [Math.floor(x / cell), Math.floor(y / cell)];
    const k = row * columns + column;
    if (column >= columns || k >= units || k === layer.picked) return;
    layers.forEach((other) => {
      other.picked = other === layer ? k : null;
      drawLayer(other, other.values);
    });
    showUnit(l, k + 1, layer.values[k]);
  };
  canvas.addEventListener("pointermove", pick);
  canvas.addEventListener("pointerdown", pick); // a tap, on a touch screen
  drawLayer(layer, layer.values);
  return layer;
}

async function showUnit(l, unit, activation) {
  const key = `${l}/${unit}`;
  if (!patterns.has(key)) patterns.set(key, ask(`/api/weights?layer=${l}&unit=${unit}`));
  try {
    const answer = await patterns.get(key);
    const pixels = weights.getContext("2d").createImageData(28, 28);
    answer.pattern.forEach((w, k) => {
      // red positive, blue negative, white 0, on the layer's one scale: as in weights.png
      const t = Math.min(Math.abs(w) / answer.limit, 1);
      const fade = Math.round(255 * (1 - t));
      pixels.data.set(w >= 0 ? [255, fade, fade, 255] : [fade, fade, 255, 255], 4 * k);
    });
    weights.getContext("2d").putImageData(pixels, 0, 0);
    const through = l === 1 ? "W1" : `W${l} ... W1, ReLUs left out`;
    caption.textContent = `Layer ${l}, unit ${unit}: activation ${activation.toFixed(3)}. Its incoming weights (${through}): red for ink it wants, blue for ink it does not.`;
  } catch (error) {
    patterns.delete(key);
    say(error.message);
  }
}

// ---- start: the model's shape gives the panels ----
async function start() {
  blankPad();
  try {
    const model = await ask("/api/model");
    const sizes = model.layers;
    document.getElementById("model").textContent =
      `${model.model}: ${sizes.join(" \u2192 ")} on ${model.device}. Every number below comes from the server.`;
    layers = sizes.slice(1, -1).map((units, k) => addLayer(k + 1, units));
    for (const label of model.classes) {
      const bar = document.createElement("li");
      bar.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
      bar.querySelector(".label").textContent = String(label);
      bars.append(bar);
    }
    showNothing();
    document.body.dataset.ready = "yes"; // the panels are built: a test may draw now
  } catch (error) {
    say(`cannot load the model: ${error.message}`);
  }
}

start();
