"""Attention figures for one translated sentence.

`plot_heads` draws every head of one layer as a grid of heatmaps sharing one colour scale, with
the subword tokens on the axes. `write_html` writes one self-contained page (data and script
inline, nothing fetched) where a reader switches attention kind, layer and head.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from translator.inference.translator import Translation  # noqa: E402

KINDS = {  # kind: (title, x axis, y axis)
    "cross": ("cross-attention", "source token", "produced target token"),
    "encoder_self": ("encoder self-attention", "source token", "source token"),
    "decoder_self": ("decoder self-attention", "decoder input token", "produced target token"),
}


def axis_tokens(translation: Translation, kind: str) -> tuple[list[str], list[str]]:
    """(column labels, row labels) of a kind's weight matrices."""
    source, produced = translation.source_pieces, translation.target_pieces
    return {
        "cross": (source, produced),
        "encoder_self": (source, source),
        "decoder_self": (translation.target_input_pieces, produced),
    }[kind]


def plot_heads(translation: Translation, kind: str, layer: int, path: Path) -> plt.Figure:
    """Save a grid with one heatmap per head of `layer` (negative counts from the last layer)."""
    layers = translation.attention[kind]
    index = layer % len(layers)
    weights = layers[index]  # (H, rows, cols)
    heads = weights.shape[0]
    columns, rows = axis_tokens(translation, kind)
    title, x_label, y_label = KINDS[kind]
    grid_cols = min(4, heads)
    grid_rows = math.ceil(heads / grid_cols)
    cell = max(2.5, 0.28 * max(len(columns), len(rows)))
    figure, axes = plt.subplots(
        grid_rows,
        grid_cols,
        figsize=(cell * grid_cols + 1.2, cell * grid_rows + 0.8),
        squeeze=False,
        layout="constrained",
    )
    vmax = float(weights.max()) or 1.0  # one colour scale for every head
    image = None
    for head, axis in enumerate(axes.flat):
        if head >= heads:
            axis.axis("off")
            continue
        image = axis.imshow(weights[head], cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
        axis.set_title(f"{title}, layer {index + 1}, head {head + 1}", fontsize=8)
        axis.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
        axis.set_yticks(range(len(rows)), rows, fontsize=7)
        if head // grid_cols == grid_rows - 1 or head + grid_cols >= heads:
            axis.set_xlabel(x_label, fontsize=7)
        if head % grid_cols == 0:
            axis.set_ylabel(y_label, fontsize=7)
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return figure


HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Attention: __TITLE__</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.controls label { margin-right: 1.2em; }
#legend { margin-top: 0.6em; font-size: 0.8em; }
</style></head>
<body data-status="loading">
<h2>__SOURCE__</h2><h3>&rarr; __TARGET__</h3>
<div class="controls">
<label>Attention <select id="kind"></select></label>
<label>Layer <select id="layer"></select></label>
<label>Head <select id="head"></select></label>
</div>
<table class="heat" id="heat"></table>
<div id="legend"></div>
<script>
__HEATMAP_JS__
document.head.insertAdjacentHTML("beforeend", "<style>" + HEAT_TABLE_CSS + "</style>");
window.onerror = function (message) { document.body.dataset.status = "error: " + message; };
const DATA = __DATA__;
const kind = document.getElementById("kind");
const layer = document.getElementById("layer");
const head = document.getElementById("head");
function options(select, values, labels) {
  select.innerHTML = "";
  values.forEach(function (value, i) {
    const option = document.createElement("option");
    option.value = value; option.textContent = labels[i];
    select.appendChild(option);
  });
}
function draw() {
  const k = DATA.kinds[kind.value];
  const matrix = k.weights[+layer.value][+head.value];
  let max = 0;
  k.weights[+layer.value].forEach(function (h) { h.forEach(function (row) {
    row.forEach(function (w) { max = Math.max(max, w); }); }); });
  drawHeatTable(document.getElementById("heat"), k.columns, k.rows, matrix, max);
  document.getElementById("legend").textContent = k.title + ", layer " + (+layer.value + 1) +
    ", head " + (+head.value + 1) + "; darkest = " + max.toFixed(3) + " (one scale per layer)";
  document.body.dataset.shown = kind.value + "/" + layer.value + "/" + head.value;
}
function kindChanged() {
  const k = DATA.kinds[kind.value];
  options(layer, k.weights.map(function (_, i) { return i; }),
          k.weights.map(function (_, i) { return "" + (i + 1); }));
  layer.value = k.weights.length - 1;
  layerChanged();
}
function layerChanged() {
  const heads = DATA.kinds[kind.value].weights[+layer.value];
  options(head, heads.map(function (_, i) { return i; }),
          heads.map(function (_, i) { return "" + (i + 1); }));
  draw();
}
const names = Object.keys(DATA.kinds);
options(kind, names, names.map(function (n) { return DATA.kinds[n].title; }));
kind.onchange = kindChanged; layer.onchange = layerChanged; head.onchange = draw;
kindChanged();
// Self-check: render every kind, layer and head once, then show the default view again.
let panels = 0;
names.forEach(function (n) {
  kind.value = n; kindChanged();
  DATA.kinds[n].weights.forEach(function (heads, l) {
    layer.value = l; layerChanged();
    heads.forEach(function (_, h) { head.value = h; draw(); panels += 1; });
  });
});
kind.value = "cross"; kindChanged();
if (!String(document.body.dataset.status).startsWith("error")) {
  document.body.dataset.status = "ok " + panels + " panels";
}
</script></body></html>
"""


HEATMAP_JS = (Path(__file__).parent / "heatmap.js").read_text(encoding="utf-8")


def attention_data(translation: Translation) -> dict:
    """Every kind's title, axis tokens and per-layer, per-head weights, as JSON-ready lists."""
    kinds = {}
    for kind, (title, _, _) in KINDS.items():
        columns, rows = axis_tokens(translation, kind)
        kinds[kind] = {
            "title": title,
            "columns": columns,
            "rows": rows,
            "weights": [np.round(w, 4).tolist() for w in translation.attention[kind]],
        }
    return {"kinds": kinds}


def write_html(translation: Translation, path: Path) -> Path:
    """One self-contained page to browse every kind, layer and head of a sentence's attention."""
    path.write_text(fill_template(HTML_TEMPLATE, page_values(translation)), encoding="utf-8")
    return path


def page_values(translation: Translation) -> dict[str, str]:
    """What each placeholder of HTML_TEMPLATE becomes: escaped text for the headings, and the
    data as JSON whose every "<" is written \\u003c, so no sentence can end the script early
    ("</script>") or open an HTML comment in it ("<!--")."""
    data = json.dumps(attention_data(translation), ensure_ascii=False).replace("<", "\\u003c")
    return {
        "HEATMAP_JS": HEATMAP_JS,
        "DATA": data,
        "TITLE": html.escape(translation.source),
        "SOURCE": html.escape(translation.source),
        "TARGET": html.escape(translation.text),
    }


def fill_template(template: str, values: dict[str, str]) -> str:
    """`template` with each `__NAME__` of `values` replaced in one pass over the template only:
    a value is never scanned again, so text that contains a placeholder's name stays as it is."""
    pattern = re.compile("|".join(f"__{re.escape(name)}__" for name in values))
    return pattern.sub(lambda match: values[match.group(0)[2:-2]], template)
