"""A static HTML report (no server, no network): figures, tables and captions of a run or a folder.

A folder may describe itself with ``report.json``::

    {"title": "...", "sections": [{"title": "...", "lead": "...", "text": "...",
      "figures": [...], "images": [{"path": "rel/fig.png", "caption": "...", "scale": 2}],
      "tables": [{"title": "...", "columns": [...], "rows": [[...], ...]}]}]}

Without one, :func:`collect_sections` builds sections from what it finds: a training run's
metrics and evaluation, every ``result.json`` (the ``reproduce`` contract), other small JSON
objects as key/value tables, and every PNG. A section shows its ``lead`` (a highlighted
headline), ``text``, ``figures``, ``tables`` and ``images`` in that order; an image's ``scale``
enlarges it (pixel-sharp; default 2 for images under 360 px wide). Images are embedded as data URIs, so the page is a
single self-contained file.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from causalscene.utils import atomic_write_text

__all__ = ["collect_sections", "render_html", "build_report"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1rem}
h1{border-bottom:2px solid #9ecae1;padding-bottom:.3rem}h2{margin-top:2.2rem;color:#08519c}
figure{display:inline-block;margin:.5rem 1rem 1rem 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #ddd;image-rendering:pixelated}
figcaption{font-size:.85rem;color:#555;max-width:520px}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.88rem;display:block;
max-width:100%;overflow-x:auto}
p.lead{font-size:1.08rem;background:#f0f5fa;border-left:4px solid #3182bd;padding:.5rem .8rem}
th,td{border:1px solid #ccc;padding:.25rem .55rem;text-align:left}th{background:#f0f5fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}.note{color:#555;font-size:.9rem}
nav a{margin-right:1rem}
"""

_CHECK_IMAGES = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), ok = 0;
  imgs.forEach(function (im) {
    var good = im.complete && im.naturalWidth > 0;
    im.setAttribute('data-loaded', good ? 'yes' : 'no');
    if (good) { ok += 1; }
  });
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
  var page = document.documentElement;  // wider than the window: something overflows
  document.body.setAttribute('data-wide', page.scrollWidth > page.clientWidth ? 'yes' : 'no');
});
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:300]
    return str(value)


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and len(value) <= 24:
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def _json_table(title: str, obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, Mapping):
        rows = _flatten(obj)
        if rows and len(rows) <= 120:
            return {"title": title, "columns": ["key", "value"], "rows": [[k, v] for k, v in rows]}
    if (
        isinstance(obj, list)
        and obj
        and all(isinstance(r, Mapping) for r in obj)
        and len(obj) <= 200
    ):
        columns = list(dict.fromkeys(k for r in obj for k in r))
        return {
            "title": title,
            "columns": columns,
            "rows": [[r.get(c, "") for c in columns] for r in obj],
        }
    return None


def collect_sections(folder: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """``(title, sections)`` for a folder: its ``report.json`` or what it contains."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    manifest = folder / "report.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        return str(data.get("title", folder.name)), list(data.get("sections", []))
    sections: list[dict[str, Any]] = []
    config = folder / "config.json"
    if config.is_file():
        sections.append(
            {
                "title": "Run configuration",
                "tables": [
                    t for t in [_json_table("config.json", json.loads(config.read_text()))] if t
                ],
            }
        )
    metrics = folder / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        table = _json_table("metrics.jsonl (per epoch)", rows[-40:])
        if table:
            sections.append({"title": "Training", "tables": [table]})
    for path in sorted(folder.rglob("*.json")):
        if path.name in ("config.json", "report.json") or len(path.relative_to(folder).parts) > 3:
            continue
        if path.stat().st_size > 200_000:
            continue
        try:
            obj = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        rel = str(path.relative_to(folder))
        if isinstance(obj, Mapping) and {"claim", "measured", "holds"} <= set(obj):
            text = f"Claim: {obj['claim']} Source: {obj.get('source', '')}. Holds: {obj['holds']}."
            table = _json_table(rel, obj["measured"])
            sections.append(
                {
                    "title": f"reproduce {obj.get('name', rel)}",
                    "text": text,
                    "tables": [table] if table else [],
                }
            )
            continue
        table = _json_table(rel, obj)
        if table:
            sections.append({"title": rel, "tables": [table]})
    images = [
        {"path": str(p.relative_to(folder)), "caption": p.stem.replace("_", " ")}
        for p in sorted(folder.rglob("*.png"))
        if len(p.relative_to(folder).parts) <= 3
    ]
    if images:
        sections.append({"title": "Figures", "images": images})
    return folder.name, sections


def _img_tag(path: Path, caption: str, scale: float | None = None) -> str:
    from PIL import Image

    raw = path.read_bytes()
    with Image.open(path) as image:
        width = image.size[0]
    # small image grids (32-64 px tiles) are shown enlarged, pixel-sharp; ``scale`` says how much
    shown = int(width * (scale or (2 if width < 360 else 1)))
    shown = min(shown, 1060)
    data = base64.b64encode(raw).decode("ascii")
    cap = html.escape(caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{shown}" alt="{cap}">'
        f"<figcaption>{cap}</figcaption></figure>"
    )


def _img_tag_of(base: Path, image: Mapping[str, Any]) -> str:
    path = base / image["path"]
    if not path.is_file():
        raise FileNotFoundError(f"report image missing: {path}")
    return _img_tag(path, image.get("caption", ""), image.get("scale"))


def _table_html(table: Mapping[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table["columns"])
    body = []
    for row in table["rows"]:
        cells = []
        for value in row:
            cls = (
                ' class="num"'
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else ""
            )
            cells.append(f"<td{cls}>{html.escape(_fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    title = (
        f"<p><b>{html.escape(str(table.get('title', '')))}</b></p>" if table.get("title") else ""
    )
    return f"{title}<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(title: str, sections: Sequence[Mapping[str, Any]], base: str | Path) -> str:
    """The page as a string; image paths are relative to ``base`` and embedded."""
    base = Path(base)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>",
        f"<script>{_CHECK_IMAGES}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    nav = " ".join(
        f"<a href='#s{i}'>{html.escape(str(s.get('title', '')))}</a>"
        for i, s in enumerate(sections)
    )
    parts.append(f"<nav>{nav}</nav>")
    for i, section in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{html.escape(str(section.get('title', '')))}</h2>")
        if section.get("lead"):
            parts.append(f"<p class='lead'>{html.escape(str(section['lead']))}</p>")
        if section.get("text"):
            parts.append(f"<p class='note'>{html.escape(str(section['text']))}</p>")
        parts.extend(_img_tag_of(base, image) for image in section.get("figures", []) or [])
        parts.extend(_table_html(table) for table in section.get("tables", []) or [])
        parts.extend(_img_tag_of(base, image) for image in section.get("images", []) or [])
    parts.append(
        "<p class='note'>Made by causalscene. Self-contained: images are embedded.</p></body></html>"
    )
    return "\n".join(parts)


def build_report(source: str | Path, out: str | Path) -> Path:
    """Write ``out/index.html`` for a run or results folder; returns its path."""
    title, sections = collect_sections(source)
    if not sections:
        raise ValueError(
            f"nothing to report in {source}: no report.json, JSON results or PNG figures"
        )
    page = render_html(title, sections, source)
    return atomic_write_text(Path(out) / "index.html", page)
