// constnet's live page: draw a digit, and every layer of LeNet-5 answers.
// The server runs the library's forward pass and sends each layer as grey levels
// (round(255·a/m), as constnet::viz draws them); this script only draws them and the hovers.
'use strict';

const SIDE = 28;
// name, maps, height, width, CSS pixels per value
const LAYERS = [
  { name: 'input', maps: 1, h: 32, w: 32, s: 4 },
  { name: 'conv1', maps: 6, h: 28, w: 28, s: 4 },
  { name: 'pool1', maps: 6, h: 14, w: 14, s: 6 },
  { name: 'conv2', maps: 16, h: 10, w: 10, s: 4 },
  { name: 'pool2', maps: 16, h: 5, w: 5, s: 7 },
  { name: 'fc1', maps: 1, h: 10, w: 12, s: 9 }, // 120 nodes, row-major
  { name: 'fc2', maps: 1, h: 10, w: 10, s: 9 }, // 100 nodes
];
const byName = Object.fromEntries(LAYERS.map((l) => [l.name, l]));
// Which layer a pooled or convolved pixel comes from.
const POOLED_FROM = { pool1: 'conv1', pool2: 'conv2' };
const CONVOLVED_FROM = { conv1: 'input', conv2: 'pool1' };
const PEN_RADIUS = 1.0; // full ink within 1 px of the stroke, fading to none at 2 px

const state = {
  pixels: new Float64Array(SIDE * SIDE),
  source: 'drawing',
  index: null,
  label: null,
  count: null,
  result: null,
  inFlight: false,
  dirty: false,
  updates: 0,
  roundTrips: [],
  fc3: null,
  waiters: [],
};
window.constnet = state;
state.schedule = () => schedule();

const $ = (sel) => document.querySelector(sel);

function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

// Draws greys (0..255) as an opaque grey image on a canvas of the same size.
function paint(canvas, greys, offset) {
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < canvas.width * canvas.height; i++) {
    const g = greys[offset + i];
    img.data[4 * i] = g;
    img.data[4 * i + 1] = g;
    img.data[4 * i + 2] = g;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

// ---- the layers --------------------------------------------------------------------------

function buildLayers() {
  for (const layer of LAYERS) {
    const box = $(`#layer-${layer.name} .maps`);
    layer.canvases = [];
    for (let c = 0; c < layer.maps; c++) {
      const wrap = el('div', 'map', box);
      wrap.style.width = `${layer.w * layer.s}px`;
      wrap.style.height = `${layer.h * layer.s}px`;
      wrap.dataset.layer = layer.name;
      wrap.dataset.map = c;
      const canvas = el('canvas', null, wrap);
      canvas.width = layer.w;
      canvas.height = layer.h;
      canvas.addEventListener('mousemove', (e) => hoverMap(layer, c, e));
      canvas.addEventListener('mouseleave', clearHover);
      layer.canvases.push(canvas);
    }
  }
  const outputs = $('#outputs');
  for (let k = 0; k < 10; k++) {
    const node = el('div', 'node', outputs);
    node.dataset.class = k;
    el('span', 'digit', node).textContent = k;
    el('span', 'p', node);
    node.addEventListener('mouseenter', () => hoverOutput(k));
    node.addEventListener('mouseleave', clearHover);
  }
}

function render(result) {
  for (const data of result.layers) {
    const layer = byName[data.name];
    if (!layer) continue;
    const size = layer.h * layer.w;
    layer.max = data.max;
    layer.grey = data.grey;
    layer.canvases.forEach((canvas, c) => paint(canvas, data.grey, c * size));
  }
  const out = result.layers.find((l) => l.name === 'output');
  document.querySelectorAll('#outputs .node').forEach((node, k) => {
    const g = out.grey[k];
    node.style.background = `rgb(${g},${g},${g})`;
    node.style.color = g > 140 ? '#000' : '#fff';
    node.classList.toggle('best', k === result.prediction);
    node.querySelector('.p').textContent = `${(100 * result.probabilities[k]).toFixed(1)}%`;
  });
  $('#prediction').textContent = result.prediction ?? '–';
  $('#confidence').textContent = result.prediction === null ? '(NaN probabilities)' :
    `(${(100 * result.probabilities[result.prediction]).toFixed(1)}%)`;
  const trips = state.roundTrips.slice(-20).sort((a, b) => a - b);
  const median = trips[Math.floor(trips.length / 2)];
  $('#timing').textContent =
    `round trip ${median.toFixed(1)} ms (median of the last ${trips.length}), server ${result.micros} µs`;
}

// ---- the forward pass, kept up with the drawing -------------------------------------------

// Sends the current pixels; while a request is out, further changes wait and the latest goes
// next, so a fast pen never queues stale drawings.
function schedule() {
  state.dirty = true;
  if (!state.inFlight) send();
}

async function send() {
  state.dirty = false;
  state.inFlight = true;
  const body = JSON.stringify(Array.from(state.pixels));
  try {
    const t0 = performance.now();
    const response = await fetch('/api/forward', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body,
    });
    const result = await response.json();
    state.roundTrips.push(performance.now() - t0);
    if (!response.ok) throw new Error(result.error || response.statusText);
    state.result = result;
    state.updates++;
    render(result);
  } catch (err) {
    $('#timing').textContent = `error: ${err.message}`;
  } finally {
    state.inFlight = false;
  }
  if (state.dirty) {
    send();
  } else {
    const waiters = state.waiters;
    state.waiters = [];
    waiters.forEach((w) => w());
  }
}

// Resolves once every change so far is on the page.
state.settled = () =>
  new Promise((resolve) => {
    if (!state.inFlight && !state.dirty) resolve();
    else state.waiters.push(resolve);
  });

// ---- the drawing pad ---------------------------------------------------------------------

const pad = $('#pad');

function paintPad() {
  paint(pad, Array.from(state.pixels, (p) => Math.round(255 * p)), 0);
}

function padPoint(e) {
  const rect = pad.getBoundingClientRect();
  return {
    x: ((e.clientX - rect.left) / rect.width) * SIDE,
    y: ((e.clientY - rect.top) / rect.height) * SIDE,
  };
}

// Inks every pixel near the segment a→b: 1 within PEN_RADIUS, fading to 0 a pixel further.
function stroke(a, b) {
  const reach = PEN_RADIUS + 1;
  const x0 = Math.max(0, Math.floor(Math.min(a.x, b.x) - reach));
  const x1 = Math.min(SIDE - 1, Math.ceil(Math.max(a.x, b.x) + reach));
  const y0 = Math.max(0, Math.floor(Math.min(a.y, b.y) - reach));
  const y1 = Math.min(SIDE - 1, Math.ceil(Math.max(a.y, b.y) + reach));
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len2 = dx * dx + dy * dy;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const px = x + 0.5;
      const py = y + 0.5;
      const t = len2 > 0 ? Math.max(0, Math.min(1, ((px - a.x) * dx + (py - a.y) * dy) / len2)) : 0;
      const d = Math.hypot(px - (a.x + t * dx), py - (a.y + t * dy));
      const ink = Math.max(0, Math.min(1, PEN_RADIUS + 1 - d));
      const i = y * SIDE + x;
      if (ink > state.pixels[i]) state.pixels[i] = ink;
    }
  }
}

let last = null;
pad.addEventListener('pointerdown', (e) => {
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  last = padPoint(e);
  stroke(last, last);
  drawn();
});
pad.addEventListener('pointermove', (e) => {
  if (!last) return;
  const p = padPoint(e);
  stroke(last, p);
  last = p;
  drawn();
});
const lift = () => {
  last = null;
};
pad.addEventListener('pointerup', lift);
pad.addEventListener('pointercancel', lift);

function drawn() {
  if (state.source !== 'drawing') {
    state.source = 'drawing';
    showSource();
  }
  paintPad();
  schedule();
}

function showSource() {
  $('#source').textContent =
    state.source === 'digit'
      ? `test digit ${state.index} of ${state.count} (label ${state.label})`
      : state.index === null
        ? 'your drawing'
        : `your drawing (over test digit ${state.index})`;
}

// ---- the bundled test digits -------------------------------------------------------------

async function pick(query) {
  const response = await fetch(`/api/digit?${query}`);
  const digit = await response.json();
  if (!response.ok) throw new Error(digit.error);
  digit.pixels.forEach((p, i) => {
    state.pixels[i] = p / 255;
  });
  state.source = 'digit';
  state.index = digit.index;
  state.label = digit.label;
  state.count = digit.count;
  showSource();
  paintPad();
  schedule();
  await state.settled();
  return digit;
}
state.pick = pick;

$('#clear').addEventListener('click', () => {
  state.pixels.fill(0);
  state.source = 'drawing';
  state.index = null;
  showSource();
  paintPad();
  schedule();
});
$('#first8').addEventListener('click', () => pick('first=8'));
$('#next').addEventListener('click', () =>
  pick(`index=${state.index === null ? 0 : (state.index + 1) % state.count}`));
$('#prev').addEventListener('click', () =>
  pick(`index=${state.index === null ? 0 : (state.index + state.count - 1) % state.count}`));

// ---- hovers ------------------------------------------------------------------------------

function clearHover() {
  document.querySelectorAll('.outline').forEach((o) => o.remove());
  $('#hover-info').textContent = '';
}

// Outlines a size×size square (in the layer's own pixels) at (x, y) of map `c` of `layer`.
function outline(layer, c, x, y, size, cls) {
  const wrap = layer.canvases[c].parentElement;
  const o = el('div', `outline ${cls || ''}`, wrap);
  o.style.left = `${x * layer.s}px`;
  o.style.top = `${y * layer.s}px`;
  o.style.width = `${size * layer.s}px`;
  o.style.height = `${size * layer.s}px`;
  Object.assign(o.dataset, { layer: layer.name, map: c, x, y, size });
  return o;
}

function valueAt(layer, c, x, y) {
  if (!layer.grey) return '';
  const g = layer.grey[c * layer.h * layer.w + y * layer.w + x];
  return `grey ${g}, a ≈ ${((g / 255) * layer.max).toPrecision(3)} (m = ${layer.max.toPrecision(4)})`;
}

function hoverMap(layer, c, e) {
  const x = Math.min(layer.w - 1, Math.max(0, Math.floor(e.offsetX / layer.s)));
  const y = Math.min(layer.h - 1, Math.max(0, Math.floor(e.offsetY / layer.s)));
  clearHover();
  outline(layer, c, x, y, 1, 'self');
  let where = layer.maps > 1 ? `${layer.name} map ${c} (x ${x}, y ${y})` : `${layer.name} (x ${x}, y ${y})`;
  if (layer.name === 'fc1' || layer.name === 'fc2') where = `${layer.name} node ${y * layer.w + x}`;
  let info = `${where}: ${valueAt(layer, c, x, y)}`;
  if (POOLED_FROM[layer.name]) {
    const from = byName[POOLED_FROM[layer.name]];
    outline(from, c, 2 * x, 2 * y, 2, 'window');
    info += ` — max of the 2×2 window at (${2 * x}, ${2 * y}) of ${from.name} map ${c}`;
  }
  if (CONVOLVED_FROM[layer.name]) {
    const from = byName[CONVOLVED_FROM[layer.name]];
    for (let m = 0; m < from.maps; m++) outline(from, m, x, y, 5, 'field');
    info += ` — its 5×5 receptive field at (${x}, ${y}) in each of ${from.name}'s ${from.maps} map(s)`;
  }
  $('#hover-info').textContent = info;
}

function hoverOutput(k) {
  clearHover();
  if (!state.fc3) return;
  const w = state.fc3.weight[k];
  const strongest = w
    .map((v, j) => [v, j])
    .sort((a, b) => Math.abs(b[0]) - Math.abs(a[0]))
    .slice(0, 10);
  const fc2 = byName.fc2;
  for (const [v, j] of strongest) {
    const o = outline(fc2, 0, j % fc2.w, Math.floor(j / fc2.w), 1, v < 0 ? 'negative' : 'positive');
    o.dataset.node = j;
    o.dataset.weight = v;
  }
  $('#hover-info').textContent =
    `output ${k}: strongest weights from fc2 — ` +
    strongest.map(([v, j]) => `node ${j}: ${v > 0 ? '+' : ''}${v}`).join(', ');
}

// ---- the filters -------------------------------------------------------------------------

async function loadFilters() {
  const filters = await (await fetch('/api/filters')).json();
  for (const [name, s] of [['conv1', 7], ['conv2', 6]]) {
    const f = filters[name];
    const [n, inputs, k] = f.shape;
    const box = $(`#filters-${name} .maps`);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < inputs; j++) {
        const wrap = el('div', 'map', box);
        wrap.style.width = `${k * s}px`;
        wrap.style.height = `${k * s}px`;
        wrap.title = `${name} filter ${i}, input map ${j} (M = ${f.max_abs.toPrecision(4)})`;
        const canvas = el('canvas', null, wrap);
        canvas.width = k;
        canvas.height = k;
        paint(canvas, f.grey, (i * inputs + j) * k * k);
      }
    }
  }
  state.fc3 = await (await fetch('/api/fc3')).json();
}

buildLayers();
paintPad();
showSource();
state.ready = Promise.all([loadFilters(), pick('first=8')]);
