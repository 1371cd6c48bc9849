"""The page a radiologist labels the chosen scans in (``label.html`` beside ``to_label.csv``):
one self-contained HTML file, nothing fetched. Each scan large, at its own resolution (up to
:data:`MAX_SIDE` pixels), with window and level (sliders, or a drag on the image), the run's
current answer hidden until asked for, one key or click per class, skip, "not a brain MRI",
undo and progress; it saves the same CSV as ``to_label.csv`` (``path,slice,label``; a skipped
scan's label left empty, one that is not a brain MRI labelled ``drop``, as ``--labels`` reads
it).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

MAX_SIDE = 768
PAGE_FILE = "label.html"


def preview_images(paths: Sequence[str], wanted: set[tuple[str, int | None]], host: Any) -> dict[tuple[str, int | None],
                                                                                                  str]:
    """Each wanted ``(path, slice)`` as a PNG data URL of the image as its reader decodes it
    (8-bit grayscale, full size, at most :data:`MAX_SIDE` on its longer side)."""
    import cv2

    from btk.predict import InputsReader, _slice_of
    from btk.predict_inputs import gather_inputs
    from btk.types import ReadOptions

    options = ReadOptions(image_size=None, channels=1, extra={}, crop="none")
    inputs = gather_inputs(sorted(set(paths)), host, options)
    reader = InputsReader(inputs)
    out: dict[tuple[str, int | None], str] = {}
    sources = {p for p, _ in wanted}
    for entry in reader.scan(None, options):
        if entry.source not in sources:
            continue
        for sample in reader.load(entry, replace(options)):
            key = (entry.source, _slice_of(sample))
            if key not in wanted:
                continue
            image = np.asarray(sample.image)
            image = image[..., 0] if image.ndim == 3 else image
            scale = MAX_SIDE / max(image.shape[:2])
            if scale < 1:
                image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                                   interpolation=cv2.INTER_AREA)
            ok, png = cv2.imencode(".png", np.ascontiguousarray(image, np.uint8))
            if ok:
                out[key] = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")
    return out


def write_label_page(path: Path, items: list[dict[str, Any]], classes: Sequence[str], title: str) -> None:
    """Write the page at ``path`` for ``items`` (each: ``path``, ``slice``, ``image`` (a data
    URL), ``answer`` and ``confidence``: the run's current answer), in their order."""
    data = json.dumps({"classes": list(classes), "items": items}).replace("</", "<\\/")
    path.write_text(_PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", data))


_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
header{display:flex;gap:1.5em;align-items:center;padding:.6em 1em;background:#222;flex-wrap:wrap}
main{display:flex;gap:1em;padding:1em;flex-wrap:wrap}
#view{background:#000;max-width:100%;cursor:crosshair}
aside{min-width:16em;max-width:24em}
button{font-size:1em;margin:.2em 0;padding:.45em .8em;width:100%;text-align:left;background:#333;color:#eee;
border:1px solid #555;border-radius:4px;cursor:pointer}
button:hover{background:#444} button.current{outline:2px solid #6cf}
kbd{background:#555;border-radius:3px;padding:0 .35em;font-size:.85em}
#answer{min-height:1.4em;color:#fc6} #done{color:#6f6} .row{margin:.4em 0} label{display:block}
input[type=range]{width:100%}
</style></head><body>
<header><strong>__TITLE__</strong><span id="progress"></span><span id="where"></span>
<span id="done"></span></header>
<main><canvas id="view" width="512" height="512"></canvas>
<aside>
<div id="buttons"></div>
<button id="skip">Skip <kbd>S</kbd></button>
<button id="drop">Not a brain MRI <kbd>N</kbd></button>
<button id="undo">Undo <kbd>U</kbd></button>
<div class="row"><label>Window <input id="window" type="range" min="1" max="255" value="255"></label>
<label>Level <input id="level" type="range" min="0" max="255" value="128"></label>
<small>or drag on the image: sideways window, up and down level; <kbd>R</kbd> resets</small></div>
<div class="row"><label><input id="show" type="checkbox"> Show the model's answer <kbd>H</kbd></label>
<div id="answer"></div></div>
<button id="save">Save the CSV <kbd>Ctrl</kbd>+<kbd>S</kbd></button>
</aside></main>
<script>
const DATA = __DATA__;
const items = DATA.items, classes = DATA.classes;
const labels = new Array(items.length).fill(null);  // null: not yet seen; "": skipped; "drop": not a brain MRI
const history = [];
let at = 0, pixels = null;
const view = document.getElementById("view"), ctx = view.getContext("2d");
const win = document.getElementById("window"), lev = document.getElementById("level");
const buttons = document.getElementById("buttons");
classes.forEach((c, k) => {
  const b = document.createElement("button");
  b.id = "class-" + k; b.innerHTML = c.replace(/_/g, " ") + " <kbd>" + (k + 1) + "</kbd>";
  b.onclick = () => answer(c); buttons.appendChild(b);
});
function load() {
  const done = labels.filter(v => v !== null).length;
  document.getElementById("progress").textContent = done + " of " + items.length + " labelled";
  document.getElementById("done").textContent = done === items.length ? "all done: save the CSV" : "";
  if (at >= items.length) { ctx.clearRect(0, 0, view.width, view.height); return; }
  const item = items[at];
  document.getElementById("where").textContent = "scan " + (at + 1) + ": " + item.path +
    (item.slice === null ? "" : " slice " + item.slice);
  document.getElementById("answer").textContent = document.getElementById("show").checked ?
    "model: " + item.answer + " (" + (100 * item.confidence).toFixed(0) + "%)" : "";
  const img = new Image();
  img.onload = () => {
    view.width = img.width; view.height = img.height;
    ctx.drawImage(img, 0, 0); pixels = ctx.getImageData(0, 0, img.width, img.height); draw();
  };
  img.src = item.image;
  classes.forEach((c, k) => document.getElementById("class-" + k).classList.toggle("current", labels[at] === c));
}
function draw() {
  if (!pixels) return;
  const w = +win.value, lo = +lev.value - w / 2, out = ctx.createImageData(pixels.width, pixels.height);
  for (let i = 0; i < pixels.data.length; i += 4) {
    const v = Math.max(0, Math.min(255, (pixels.data[i] - lo) * 255 / w));
    out.data[i] = out.data[i + 1] = out.data[i + 2] = v; out.data[i + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
}
function answer(value) {
  if (at >= items.length) return;
  history.push([at, labels[at]]); labels[at] = value;
  at = labels.findIndex(v => v === null); if (at < 0) at = items.length;
  load();
}
function undo() {
  const last = history.pop(); if (!last) return;
  labels[last[0]] = last[1]; at = last[0]; load();
}
function csvField(v) { v = String(v); return /[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
function csv() {
  const rows = [["path", "slice", "label"]].concat(items.map((it, k) =>
    [it.path, it.slice === null ? "" : it.slice, labels[k] === null ? "" : labels[k]]));
  return rows.map(r => r.map(csvField).join(",")).join("\r\n") + "\r\n";
}
function save() {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([csv()], {type: "text/csv"}));
  a.download = "to_label.csv"; document.body.appendChild(a); a.click(); a.remove();
}
document.getElementById("skip").onclick = () => answer("");
document.getElementById("drop").onclick = () => answer("drop");
document.getElementById("undo").onclick = undo;
document.getElementById("save").onclick = save;
document.getElementById("show").onchange = load;
win.oninput = draw; lev.oninput = draw;
let drag = null;
view.onmousedown = e => { drag = [e.clientX, e.clientY, +win.value, +lev.value]; };
window.onmouseup = () => { drag = null; };
view.onmousemove = e => {
  if (!drag) return;
  win.value = Math.max(1, Math.min(255, drag[2] + (e.clientX - drag[0]))); lev.value = drag[3] - (e.clientY - drag[1]);
  draw();
};
document.addEventListener("keydown", e => {
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s") { e.preventDefault(); save(); return; }
  const k = parseInt(e.key, 10);
  if (k >= 1 && k <= classes.length) answer(classes[k - 1]);
  else if (e.key === "s" || e.key === "S") answer("");
  else if (e.key === "n" || e.key === "N") answer("drop");
  else if (e.key === "u" || e.key === "U" || e.key === "Backspace") undo();
  else if (e.key === "h" || e.key === "H") {
    const s = document.getElementById("show"); s.checked = !s.checked; load();
  }
  else if (e.key === "r" || e.key === "R") { win.value = 255; lev.value = 128; draw(); }
});
load();
</script></body></html>
"""
