"""The HTML report renders in headless Chromium: non-blank screenshot, every <img> loaded."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from causalscene.cli import main
from causalscene.plots import save_image_grid
from causalscene.report import render_html

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is needed for this test (make test installs it)"
    return exe


def make_results(folder: Path) -> None:
    rng = np.random.default_rng(0)
    save_image_grid(
        rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8), folder / "grid.png", ncol=4
    )
    (folder / "sub").mkdir()
    save_image_grid(rng.random((4, 3, 16, 16)), folder / "sub" / "samples.png", ncol=2)
    (folder / "result.json").write_text(
        json.dumps(
            {
                "name": "toy",
                "claim": "a claim",
                "source": "x",
                "measured": {"tau": 0.3},
                "holds": True,
            }
        )
    )
    (folder / "table.json").write_text(
        json.dumps([{"pair": "a:b", "tau": 0.1}, {"pair": "c:d", "tau": -0.2}])
    )


def render(html: Path, tmp_path: Path):
    exe = chromium()
    common = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,900", html.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        [*common, "--virtual-time-budget=5000", "--dump-dom", html.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return shot, dom


@pytest.mark.slow
def test_report_renders_in_chromium(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    make_results(results)
    assert main(["report", str(results), "--out", str(tmp_path / "site")]) == 0
    html = tmp_path / "site" / "index.html"
    text = html.read_text()
    assert "a claim" in text and "http" not in text.replace("http-equiv", "")  # no network
    shot, dom = render(html, tmp_path)
    pixels = np.asarray(Image.open(shot).convert("L"), float)
    assert pixels.std() > 5  # not a blank page
    found = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert found and found.group(1) == found.group(2) == "2", found
    assert 'data-loaded="no"' not in dom
    assert 'data-wide="no"' in dom  # nothing wider than the window


def test_section_parts_in_order_and_wide_tables_scroll(tmp_path):
    """lead, text, figures, tables, images, in that order; ``scale`` enlarges an image; a
    table is a scrolling block, so a wide one cannot widen the page."""
    save_image_grid(np.zeros((2, 16, 16, 3), np.uint8), tmp_path / "a.png", ncol=2)
    save_image_grid(np.ones((2, 16, 16, 3), np.uint8), tmp_path / "b.png", ncol=2)
    section = {
        "title": "S",
        "lead": "HEADLINE",
        "text": "TEXT",
        "figures": [{"path": "a.png", "caption": "FIGURE"}],
        "tables": [{"title": "TABLE", "columns": ["x"], "rows": [[0.123456789]]}],
        "images": [{"path": "b.png", "caption": "IMAGE", "scale": 3}],
    }
    page = render_html("t", [section], tmp_path)
    order = [page.index(k) for k in ("HEADLINE", "TEXT", "FIGURE", "TABLE", "IMAGE")]
    assert order == sorted(order)
    assert "0.1235" in page and "0.123456" not in page
    widths = [int(w) for w in re.findall(r'<img [^>]*width="(\d+)"', page)]
    assert widths == [2 * 38, 3 * 38]  # a 2-image grid of 16 px tiles is 38 px wide
    assert re.search(r"table\{[^}]*overflow-x:auto", page)


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "nothing to report" in capsys.readouterr().err
