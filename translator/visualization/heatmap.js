// Attention heat maps as HTML tables: shared by the attention viewer (make plot) and the
// translation page (make serve). No dependencies; works offline.
"use strict";

function heatColour(w, max) {
  const t = max > 0 ? w / max : 0;
  const r = Math.round(255 - 210 * t), g = Math.round(255 - 150 * t), b = Math.round(255 - 40 * t);
  return "rgb(" + r + "," + g + "," + b + ")";
}

function escapeText(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span.innerHTML;
}

// Fill `table` with `matrix` (rows x columns of weights), shaded against `max`.
function drawHeatTable(table, columns, rows, matrix, max) {
  let html = "<thead><tr><th></th>" + columns.map(function (c) {
    return "<th>" + escapeText(c) + "</th>"; }).join("") + "</tr></thead><tbody>";
  matrix.forEach(function (row, i) {
    html += "<tr><th>" + escapeText(rows[i]) + "</th>" + row.map(function (w) {
      return "<td title='" + w.toFixed(3) + "' style='background:" + heatColour(w, max) + "'></td>";
    }).join("") + "</tr>";
  });
  table.innerHTML = html + "</tbody>";
}

const HEAT_TABLE_CSS = [
  "table.heat { border-collapse: collapse; margin-top: 1em; }",
  "table.heat td { width: 2.2em; height: 1.6em; border: 1px solid #fff; }",
  "table.heat th { font-weight: normal; font-size: 0.8em; padding: 0 0.4em; white-space: nowrap; }",
  "table.heat thead th { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }",
].join("\n");
