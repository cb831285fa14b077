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

// Subword pieces as labels, without SentencePiece's word mark "▁" (U+2581): a piece that starts
// a word shows bare ("▁Hund" -> "Hund"), a piece inside a word after a middle dot ("e" -> "·e"),
// a lone mark (a space before a piece that starts a word) as "␣"; special and byte pieces
// ("</s>", "<0xE2>") as they are. Only the labels change: the data keeps the tokenizer's pieces.
function pieceLabels(pieces) {
  const special = function (piece) { return /^<[^<>]+>$/.test(piece); };
  const space = function (piece) { return /^\u2581+$/.test(piece); };
  return pieces.map(function (piece, i) {
    if (special(piece)) { return piece; }
    if (space(piece)) { return "\u2423"; }
    const previous = pieces[i - 1];
    const inside = piece.charAt(0) !== "\u2581" && previous !== undefined &&
      !special(previous) && !space(previous);
    return (inside ? "\u00b7" : "") + piece.replace(/^\u2581/, "").replace(/\u2581/g, " ");
  });
}

// Fill `table` with `matrix` (rows x columns of weights), shaded against `max`; axis labels
// are the pieces as pieceLabels shows them.
function drawHeatTable(table, columns, rows, matrix, max) {
  const rowLabels = pieceLabels(rows);
  let html = "<thead><tr><th></th>" + pieceLabels(columns).map(function (c) {
    return "<th>" + escapeText(c) + "</th>"; }).join("") + "</tr></thead><tbody>";
  matrix.forEach(function (row, i) {
    html += "<tr><th>" + escapeText(rowLabels[i]) + "</th>" + row.map(function (w) {
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
