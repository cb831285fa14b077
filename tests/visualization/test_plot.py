import dataclasses
import html
import json
import re
import shutil
import subprocess

import matplotlib.image
import pytest

from translator.config import load_config
from translator.errors import TranslatorError
from translator.inference.translator import Translator
from translator.visualization.attention import attention_data, plot_heads, write_html
from translator.visualization.plot import plot

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_dom(page, tmp_path) -> str:
    """The page's DOM after its script ran in headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "make test installs Debian's chromium"
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         f"file://{page}"],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip


def heat_labels(dom: str) -> list[str]:
    """The heat map's axis labels as shown: column heads, then row heads."""
    table = re.search(r'<table[^>]*id="heat"[^>]*>(.*?)</table>', dom, re.DOTALL).group(1)
    return [html.unescape(label) for label in re.findall(r"<th>([^<]*)</th>", table)[1:]]


def shown(pieces: list[str]) -> list[str]:
    """Pieces as the heat map labels them: no word mark "▁"; a piece inside a word after "·"
    ("▁Hund", "e" -> "Hund", "·e"); a lone mark as "␣"; special and byte pieces as they are."""

    def special(piece: str) -> bool:
        return re.fullmatch(r"<[^<>]+>", piece) is not None

    def space(piece: str) -> bool:
        return re.fullmatch("\u2581+", piece) is not None

    labels = []
    for i, piece in enumerate(pieces):
        if special(piece) or space(piece):
            labels.append(piece if special(piece) else "␣")
            continue
        inside = not piece.startswith("\u2581") and i > 0
        inside = inside and not (special(pieces[i - 1]) or space(pieces[i - 1]))
        labels.append(("·" if inside else "") + piece.removeprefix("\u2581").replace("\u2581", " "))
    return labels


@pytest.fixture(scope="module")
def translation(trained_run):
    cfg, _ = trained_run
    translator = Translator.from_run_dir(cfg.run_dir)
    return translator.translate_detailed(["Zwei junge Männer spielen Fußball."], attention=True)[0]


def test_grid_has_one_panel_per_head_with_token_labels(translation, tmp_path):
    path = tmp_path / "cross.png"
    figure = plot_heads(translation, "cross", -1, path)
    panels = [axis for axis in figure.axes if axis.images]
    assert len(panels) == 4  # the tiny model's heads
    for head, axis in enumerate(panels):
        assert axis.get_title() == f"cross-attention, layer 2, head {head + 1}"
        assert [t.get_text() for t in axis.get_xticklabels()] == translation.source_pieces
        assert [t.get_text() for t in axis.get_yticklabels()] == translation.target_pieces
    assert {axis.images[0].get_clim() for axis in panels} == {panels[0].images[0].get_clim()}
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 400 and height > 150


def test_plot_command_writes_pngs_and_html_that_chromium_opens(trained_run, tmp_path, capsys):
    cfg, _ = trained_run
    result = plot(load_config("plot", [
        f"run_dir={cfg.run_dir}", "text='Zwei junge Männer spielen Fußball.'",
        "kinds=[cross,encoder_self,decoder_self]", f"output_dir={tmp_path}", "layer=0",
    ]))  # fmt: skip
    files = result["files"]
    assert [f.rsplit(".", 2)[-2:] for f in files[:3]] == [
        ["layer1", "png"],
        ["layer1", "png"],
        ["layer1", "png"],
    ]
    assert all(name in files[i] for i, name in enumerate(["cross", "encoder_self", "decoder_self"]))
    printed = capsys.readouterr().out
    assert all(f in printed for f in files)

    page = open(files[-1], encoding="utf-8").read()
    assert page.count('"weights"') == 3 and "http" not in page.replace("http-equiv", "")
    dom = chromium_dom(files[-1], tmp_path)
    status = re.search(r'data-status="([^"]*)"', dom).group(1)
    assert status == "ok 24 panels"  # 3 kinds x 2 layers x 4 heads, rendered without a JS error
    cross = json.loads(re.search(r"const DATA = (.*);\n", page).group(1))["kinds"]["cross"]
    labels = heat_labels(dom)  # the default view: cross-attention
    assert labels == shown(cross["columns"]) + shown(cross["rows"])
    assert any(p.startswith("\u2581") for p in cross["columns"])  # the data keeps the marks
    assert not [label for label in labels if "\u2581" in label]  # the labels do not


HOSTILE = ["__DATA__", "__TITLE__", "__HEATMAP_JS__", "</script>", "<!--", "__SOURCE__"]


def test_placeholder_names_and_script_ends_in_a_sentence_leave_the_page_intact(
    translation, tmp_path
):
    pieces = [HOSTILE[i % len(HOSTILE)] for i in range(len(translation.source_pieces))]
    hostile = dataclasses.replace(
        translation, source=" ".join(HOSTILE) + " & more", text="</script> __TARGET__ __DATA__",
        source_pieces=pieces,
    )  # fmt: skip
    page = write_html(hostile, tmp_path / "hostile.html").read_text(encoding="utf-8")
    assert page.count("const DATA = ") == 1 and page.count("<script>") == 1
    data = re.search(r"const DATA = (.*);\n", page).group(1)
    assert json.loads(data) == json.loads(json.dumps(attention_data(hostile)))  # intact
    assert "</script>" not in data and "<!--" not in data
    assert f"<title>Attention: {html.escape(hostile.source)}</title>" in page
    assert f"<h2>{html.escape(hostile.source)}</h2>" in page
    assert f"<h3>&rarr; {html.escape(hostile.text)}</h3>" in page

    dom = chromium_dom(tmp_path / "hostile.html", tmp_path)
    assert re.search(r'data-status="([^"]*)"', dom).group(1) == "ok 24 panels"
    assert heat_labels(dom)[: len(pieces)] == shown(pieces)


def test_plot_needs_text_and_known_kinds(trained_run):
    cfg, _ = trained_run
    with pytest.raises(TranslatorError, match="nothing to plot"):
        plot(load_config("plot", [f"run_dir={cfg.run_dir}", "text=null"]))
    with pytest.raises(TranslatorError, match="unknown \\['nope'\\]"):
        plot(load_config("plot", [f"run_dir={cfg.run_dir}", "text=Hallo", "kinds=[nope]"]))
    with pytest.raises(TranslatorError, match="layer=5: the model has 2 layers"):
        plot(load_config("plot", [f"run_dir={cfg.run_dir}", "text=Hallo", "layer=5"]))
