"""The `plot` command: translate one sentence and save its attention figures."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from omegaconf import DictConfig

from translator.errors import TranslatorError
from translator.inference.translator import Translator
from translator.visualization.attention import KINDS, plot_heads, write_html


def slug(text: str) -> str:
    words = re.sub(r"[^\w]+", "_", text.lower()).strip("_")[:40]
    return f"{words}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def plot(cfg: DictConfig) -> dict:
    """Write PNG grids (one panel per head) and an HTML viewer for `cfg.text`; print the paths."""
    if not cfg.text:
        raise TranslatorError('nothing to plot: give a sentence with TEXT="..." (or text=...)')
    unknown = [kind for kind in cfg.kinds if kind not in KINDS]
    if unknown:
        raise TranslatorError(
            f"kinds={list(cfg.kinds)}: unknown {unknown}; choose from {list(KINDS)}"
        )
    translator = Translator.from_command(cfg)
    translation = translator.translate_detailed([cfg.text], attention=True)[0]
    if translation.attention is None:
        raise TranslatorError("the sentence is empty: nothing to plot")
    out_dir = Path(cfg.output_dir or translator.run.plots_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = slug(cfg.text)
    layers = len(translation.attention["cross"])
    if not -layers <= cfg.layer < layers:
        raise TranslatorError(f"layer={cfg.layer}: the model has {layers} layers (0..{layers - 1})")
    written = []
    for kind in cfg.kinds:
        path = out_dir / f"{stem}.{kind}.layer{cfg.layer % layers + 1}.png"
        plot_heads(translation, kind, cfg.layer, path)
        written.append(path)
    written.append(write_html(translation, out_dir / f"{stem}.html"))
    print(f"{translation.source}\n-> {translation.text}")
    for path in written:
        print(path)
    return {"translation": translation.text, "files": [str(p) for p in written]}
