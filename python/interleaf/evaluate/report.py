"""The evaluation report: ``metrics.json``, ``examples.parquet`` (one row per example) and
``report.html`` (the metrics, the per-example table, and the worst examples' images and texts side
by side), written atomically into one folder. The page is self-contained: inline CSS, images as
data URLs, no script, nothing fetched."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from interleaf.io.atomic import atomic_output, write_text
from interleaf.report import _CSS, CSP_META, _e, _num

#: Rows of the per-example table shown in the page (all of them are in examples.parquet).
TABLE_ROWS = 500
THUMB = 192

_EVAL_CSS = """
.pair{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:12px;border:1px solid #e2e6ea;border-radius:6px;padding:10px;margin:10px 0}
.pair h3{grid-column:1/-1;margin:0;font-size:14px}.pair .imgs{display:flex;flex-wrap:wrap;gap:6px}
.pair img{max-width:192px;max-height:192px;border-radius:3px}.pair p{white-space:pre-wrap;font-size:12px;margin:4px 0}
td.err{color:#b42318}.scroll{max-height:520px;overflow:auto}
"""


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out: list[tuple[str, Any]] = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, d)]


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return _num(v) if math.isfinite(v) else "-"
    if v is None:
        return ""
    s = str(v)
    return _e(s if len(s) <= 160 else s[:157] + "...")


def _thumbs(images: list[bytes | None]) -> list[str | None]:
    import base64

    from interleaf.image import thumbnails

    present = [i for i, b in enumerate(images) if b]
    out: list[str | None] = [None] * len(images)
    if present:
        frame = thumbnails([images[i] for i in present], THUMB, quality=80)
        for i, jpeg in zip(present, frame["thumbnail"].to_list(), strict=True):
            out[i] = None if jpeg is None else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return out


def _side(label: str, texts: list[str | None], images: list[bytes | None], urls: list[str | None]) -> str:
    parts = [f'<div><div class="side">{_e(label)}</div><div class="imgs">']
    for b, u in zip(images, urls, strict=True):
        parts.append(f'<img alt="" src="{u}">' if u else f'<div class="thumb missing">{"unreadable" if b else "no image"}</div>')
    parts.append("</div>")
    parts += [f"<p>{_e(t)}</p>" for t in texts if t]
    parts.append("</div>")
    return "".join(parts)


def render(title: str, metrics: dict[str, Any], examples: pl.DataFrame, worst: list[dict[str, Any]], worst_by: str | None) -> str:
    """The page. ``worst``: cards ``{"name", "value", "generated": {"texts", "images"},
    "reference": {"texts", "images"}}``, worst first."""
    flat = _flatten({k: v for k, v in metrics.items() if k not in ("command", "versions")})
    rows = "".join(f'<tr><td>{_e(k)}</td><td class="n">{_cell(v)}</td></tr>' for k, v in flat)
    cols = examples.columns
    shown = examples.head(TABLE_ROWS)
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f'<td class="{"err" if c == "error" else "n" if isinstance(v, int | float) else ""}">{_cell(v)}</td>' for c, v in zip(cols, r, strict=True)) + "</tr>" for r in shown.iter_rows())
    more = f'<p class="muted">first {TABLE_ROWS:,} of {examples.height:,} rows; all are in examples.parquet</p>' if examples.height > TABLE_ROWS else ""
    all_images = [b for c in worst for side in ("generated", "reference") for b in c[side]["images"]]
    urls = iter(_thumbs(all_images))
    cards = []
    for c in worst:
        sides = []
        for side, label in (("generated", "generated"), ("reference", "reference")):
            imgs = c[side]["images"]
            sides.append(_side(label, c[side]["texts"], imgs, [next(urls) for _ in imgs]))
        cards.append(f'<div class="pair"><h3>{_e(c["name"])}: {_e(worst_by)} = {_cell(c["value"])}</h3>{"".join(sides)}</div>')
    worst_html = "".join(cards) if cards else '<p class="muted">no scored examples</p>'
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{CSP_META}<title>{_e(title)}</title><style>{_CSS}{_EVAL_CSS}</style></head><body>'
        f"<h1>{_e(title)}</h1><p class=\"muted\">{_e(metrics.get('command', ''))}</p>"
        f"<h2>Metrics</h2><table>{rows}</table>"
        f"<h2>Worst examples{f' by {_e(worst_by)}' if worst_by else ''}</h2>{worst_html}"
        f'<h2>Per example</h2><div class="scroll"><table><tr>{head}</tr>{body}</table></div>{more}'
        "</body></html>"
    )


def write(out: str | Path, title: str, metrics: dict[str, Any], examples: pl.DataFrame, worst: list[dict[str, Any]], worst_by: str | None) -> Path:
    """Writes ``metrics.json``, ``examples.parquet`` and ``report.html`` into ``out``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False, default=str) + "\n")
    with atomic_output(root / "examples.parquet") as tmp:
        examples.write_parquet(tmp)
    write_text(root / "report.html", render(title, metrics, examples, worst, worst_by))
    return root


def worst_rows(examples: pl.DataFrame, column: str | None, n: int, *, descending: bool = False) -> list[int]:
    """Row indices of the ``n`` worst scored examples by ``column`` (lowest first, or highest
    with ``descending``); none when the column is absent or empty."""
    if column is None or column not in examples.columns:
        return []
    idx = examples.with_row_index("_i").filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan() if examples.schema[column].is_float() else pl.col(column).is_not_null())
    return idx.sort(column, descending=descending, maintain_order=True).head(n)["_i"].to_list()
