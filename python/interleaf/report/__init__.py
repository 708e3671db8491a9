"""The run report: one self-contained, offline HTML file (``OUT/report.html``).

No script, no stylesheet or font from elsewhere, no network request: plots are inline SVG and
thumbnails inline JPEG ``data:`` URIs. It shows the funnel (documents in, after each filter,
kept), a histogram per filtered signal with its threshold and the share it dropped, the
documents just above and just below each threshold, dedup examples, errors by kind with
examples, and the recipe. The same run gives the same bytes (no clock, no timings: those are in
``summary.json``).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from interleaf import schema as S

#: Examples near thresholds and dedup examples come from the first shards only, so the report
#: never reads the whole input again.
EXAMPLE_SHARDS = 4
# Examples come from the first EXAMPLE_DOCS documents of each of the first EXAMPLE_SHARDS
# shards, so the report re-reads at most that much input (not whole shards of images).
EXAMPLE_DOCS = 2_000
EXAMPLES = 4
THUMB = 96


#: The most characters of one value a report shows (a document's text, an id, a message): a
#: hostile record cannot make the page enormous.
MAX_SHOWN_CHARS = 4000

#: Every report is one offline file: no request leaves it (scripts, fonts, remote images).
CSP_META = '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; style-src \'unsafe-inline\'">'


#: Bidirectional controls (embeddings, overrides, isolates, marks): shown by code point, so a
#: value cannot reverse or reorder the report's own text around it (an id holding U+202E read
#: "dropped: exe.jpg_..." backwards).
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _e(x: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """``x`` as escaped HTML text, cut to ``limit`` characters (the cut is said), its
    bidirectional control characters shown as ``<U+202E>``."""
    s = str(x)
    if len(s) > limit:
        s = f"{s[:limit]}… ({len(s) - limit:,} more characters)"
    return html.escape(_BIDI.sub(lambda m: f"<U+{ord(m.group()):04X}>", s), quote=True)


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, int) or float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:.4g}"


# --- plots ----------------------------------------------------------------------------------


def funnel_svg(steps: list[tuple[str, int]], width: int = 640) -> str:
    """Horizontal bars: documents left after each step (the first is the input)."""
    if not steps:
        return ""
    top = max(n for _, n in steps) or 1
    row = 26
    label_w = 190
    bars = []
    for i, (name, n) in enumerate(steps):
        w = max(1.0, (width - label_w - 90) * n / top)
        y = i * row
        bars.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{_e(name)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" class="{"bar-in" if i == 0 else "bar"}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 17}">{n:,}</text>'
        )
    return f'<svg class="plot" width="{width}" height="{row * len(steps)}" role="img" aria-label="funnel">{"".join(bars)}</svg>'


def _range(lo: float, hi: float, threshold: float | None) -> tuple[float, float]:
    """The histogram's range: the values' (finite) range, widened to show the threshold."""
    if threshold is not None and math.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    return (lo, lo + 1.0) if hi == lo else (lo, hi)


def histogram_svg(values: np.ndarray, threshold: float | None, width: int = 420, height: int = 140, bins: int = 30) -> str:
    """A histogram of ``values`` with ``threshold`` as a red line."""
    v = values[np.isfinite(values)]
    if not len(v):
        return '<p class="muted">no values</p>'
    lo, hi = _range(float(v.min()), float(v.max()), threshold)
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return _histogram_svg(counts, edges, threshold, width, height)


def _histogram_svg(counts: np.ndarray, edges: np.ndarray, threshold: float | None, width: int = 420, height: int = 140) -> str:
    """The SVG of a histogram's ``counts`` over ``edges`` with ``threshold`` as a red line."""
    bins = len(counts)
    lo, hi = float(edges[0]), float(edges[-1])
    top = counts.max() or 1
    pad, base = 4, height - 20
    bw = (width - 2 * pad) / bins
    x = lambda t: pad + (t - lo) / (hi - lo) * (width - 2 * pad)
    parts = []
    for i, c in enumerate(counts.tolist()):
        h = (base - pad) * c / top
        parts.append(f'<rect x="{pad + i * bw:.1f}" y="{base - h:.1f}" width="{max(bw - 1, 0.5):.1f}" height="{h:.1f}" class="bar"><title>{_num(edges[i])} to {_num(edges[i + 1])}: {c:,}</title></rect>')
    parts.append(f'<text x="{pad}" y="{height - 4}">{_num(lo)}</text><text x="{width - pad}" y="{height - 4}" text-anchor="end">{_num(hi)}</text>')
    if threshold is not None and math.isfinite(threshold):
        tx = x(threshold)
        parts.append(f'<line x1="{tx:.1f}" y1="{pad}" x2="{tx:.1f}" y2="{base}" class="threshold"/><text x="{tx + 3:.1f}" y="{pad + 10}" class="threshold-label">{_num(threshold)}</text>')
    return f'<svg class="plot" width="{width}" height="{height}" role="img" aria-label="histogram">{"".join(parts)}</svg>'


def _img(b: bytes | None) -> str:
    if b is None:
        return '<div class="thumb missing">no image</div>'
    return f'<img class="thumb" alt="" src="data:image/jpeg;base64,{base64.b64encode(b).decode()}">'


# --- data -----------------------------------------------------------------------------------


def _column_histogram(
    out: Path, signal: str, column: str, shards: list[Any], threshold: float | None, bins: int = 30, rule: pl.Expr | None = None, rule_columns: Sequence[str] = (), per_document: bool = False
) -> tuple[str, int, tuple[int, int] | None]:
    """The histogram SVG of a column over every shard, its number of finite values and, given
    the filter's ``rule`` (its columns all in this signal's table), how many fail it on their
    own (whatever the filters before it dropped) of how many: the rows with a finite value, or
    with ``per_document`` (a document filter aggregating node columns, ``AVG(x) >= 0.3``) the
    documents, the rule taken over each one's nodes. Read one shard at a time (twice: the
    range, then the counts), so memory does not grow with the run."""
    wanted = list(dict.fromkeys([column, *(rule_columns if rule is not None else ()), *((S.DOC_INDEX,) if per_document else ())]))

    def values(with_rule: bool) -> Iterator[tuple[np.ndarray, int, int]]:
        for s in shards:
            f = out / "attributes" / signal / f"{s.name}.parquet"
            if f.exists():
                t = pl.read_parquet(f, columns=wanted if with_rule else [column])
                v = t.get_column(column).cast(pl.Float64, strict=False).to_numpy()
                finite = np.isfinite(v)
                fails, of = 0, int(finite.sum())
                if with_rule and rule is not None and per_document:
                    ok = t.group_by(S.DOC_INDEX).agg(rule.alias("_ok")).get_column("_ok")
                    fails, of = int((~ok).sum()), ok.len()
                elif with_rule and rule is not None:
                    fails = int((finite & ~t.select(rule).to_series().to_numpy().astype(bool)).sum())
                yield v[finite], fails, of

    lo, hi, n = math.inf, -math.inf, 0
    for v, _, _ in values(False):
        if len(v):
            lo, hi, n = min(lo, float(v.min())), max(hi, float(v.max())), n + len(v)
    if not n:
        return '<p class="muted">no values</p>', 0, None
    rng = _range(lo, hi, threshold)
    counts = np.zeros(bins, dtype=np.int64)
    edges = np.histogram_bin_edges(np.zeros(0), bins=bins, range=rng)
    failing, of = 0, 0
    for v, fails, k in values(True):
        counts += np.histogram(v, bins=bins, range=rng)[0]
        failing, of = failing + fails, of + k
    return _histogram_svg(counts, edges, threshold), n, (failing, of) if rule is not None else None


def _value_counts(out: Path, signal: str, column: str, shards: list[Any], top: int = 12, most: int = 10_000) -> str:
    """A table of a label column's commonest values over every shard (one shard read at a
    time), with their share of the rows; null is shown as "(none)". A column of more than
    ``most`` distinct values is no label column: counting stops there (memory stays bounded)."""
    counts: dict[str | None, int] = {}
    for s in shards:
        f = out / "attributes" / signal / f"{s.name}.parquet"
        if f.exists():
            for v, n in pl.read_parquet(f, columns=[column]).get_column(column).value_counts().iter_rows():
                counts[v] = counts.get(v, 0) + n
            if len(counts) > most:
                return f'<p class="muted">over {most:,} distinct values: not tabulated</p>'
    total = sum(counts.values())
    if not total:
        return '<p class="muted">no values</p>'
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
    rows = "".join(f"<tr><td>{_e(v) if v is not None else '<span class=muted>(none)</span>'}</td><td class=n>{n:,}</td><td class=n>{100 * n / total:.1f}%</td></tr>" for v, n in ranked[:top])
    more = f"<p class=muted>{len(ranked) - top:,} other values</p>" if len(ranked) > top else ""
    return f"<table><tr><th>value</th><th>rows</th><th>share</th></tr>{rows}</table>{more}"


def _image_limits(plan: Any) -> dict[str, int | None]:
    """The decode limits of the recipe's image signals (the smallest each sets), which the
    report's thumbnails keep to: an image the recipe refuses as too large is not decoded for
    a thumbnail either."""
    specs = [spec for spec in plan.signals.values() if spec.type == "image"]
    pixels = [spec.max_pixels for spec in specs if spec.max_pixels is not None]
    sizes = [spec.max_bytes for spec in specs if spec.max_bytes is not None]
    return {"max_pixels": min(pixels) if pixels else None, "max_bytes": min(sizes) if sizes else None}


def _content(shards: list[Any], wanted: dict[str, set[int]], read: dict[str, Any], shown: set[tuple[str, int, int]] = frozenset(), limits: dict[str, int | None] | None = None) -> dict[tuple[str, int], pl.DataFrame]:  # type: ignore[assignment]
    """The nodes of the wanted documents (shard name -> doc_index set), with a thumbnail for
    each document's first image and for the images ``shown`` names ((shard, doc_index, pos)):
    the ones a card can show (a document of 100,000 images made 100,000 thumbnails), decoded
    within ``limits`` (``max_pixels``, ``max_bytes``: :func:`_image_limits`)."""
    from interleaf import image
    from interleaf.pipeline import read_shard

    found: dict[tuple[str, int], pl.DataFrame] = {}
    for s in shards:
        want = wanted.get(s.name)
        if not want:
            continue
        last = max(want)
        for df in read_shard(s, read, last + 1):
            got = df.filter(pl.col(S.DOC_INDEX).is_in(sorted(want)))
            if got.height:
                is_image = pl.col(S.KIND) == S.IMAGE_KIND
                keys = [di * (1 << 32) + p for sh, di, p in shown if sh == s.name]
                named = (pl.col(S.DOC_INDEX).cast(pl.Int64) * (1 << 32) + pl.col(S.POS).cast(pl.Int64)).is_in(keys) if keys else pl.lit(False)
                first_image = is_image & (is_image.cum_sum().over(S.DOC_INDEX) == 1)
                rows = np.flatnonzero(got.select((is_image & (first_image | named)).fill_null(False)).to_series().to_numpy())
                thumbs = pl.Series("thumb", [None] * got.height, dtype=pl.Binary)
                if len(rows):
                    made = image.thumbnails(got.get_column(S.IMAGE).gather(rows).fill_null(b""), THUMB, max_pixels=(limits or {}).get("max_pixels"), max_bytes=(limits or {}).get("max_bytes")).get_column("thumbnail")
                    thumbs = thumbs.scatter(rows, made)
                got = got.select(S.DOC_INDEX, S.DOC_ID, S.POS, S.KIND, S.TEXT).with_columns(thumbs)
                for (di,), part in got.partition_by(S.DOC_INDEX, as_dict=True, maintain_order=True).items():
                    found[(s.name, int(di))] = part
    return found


#: How the document-level pHash step's dropped records name the image they repeat.
_NEAR = "near-duplicate of the image at pos "


def _doc_card(doc: pl.DataFrame | None, pos: int | None, caption: str) -> str:
    """A document (or one node of it, ``pos``) as a thumbnail and a text snippet."""
    if doc is None:
        return f'<div class="card"><div class="cap">{_e(caption)}</div><p class="muted">not shown</p></div>'
    rows = doc.filter(pl.col(S.POS) == pos) if pos is not None else doc
    img = rows.filter(pl.col(S.KIND) == S.IMAGE_KIND)
    txt = rows.filter(pl.col(S.KIND) == S.TEXT_KIND)
    thumb = _img(img.get_column("thumb")[0]) if img.height else ""
    text = " ".join(t for t in txt.get_column(S.TEXT).to_list() if t)
    if len(text) > 280:
        text = text[:277] + "..."
    return f'<div class="card">{thumb}<div class="cap">{_e(caption)}</div><p>{_e(text)}</p></div>'


# --- the page -------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1d232a;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #dde2e8;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#6b7580}
.stats{display:flex;gap:28px;margin:16px 0}.stat b{display:block;font-size:26px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eef1f4;text-align:left}td.n{text-align:right}
.plot text{font-size:11px;fill:#39424b}.bar{fill:#4f81bd}.bar-in{fill:#2c5282}.threshold{stroke:#d62728;stroke-width:2}.threshold-label{fill:#d62728}
.filter{display:grid;grid-template-columns:440px 1fr;gap:16px;align-items:start;margin-bottom:12px}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{width:200px;border:1px solid #e2e6ea;border-radius:6px;padding:6px;font-size:12px;overflow:hidden}
.card p{margin:4px 0 0;word-wrap:break-word}.cap{font-weight:600}.side{font-size:12px;font-weight:600;margin:6px 0 2px}
.thumb{display:block;max-width:96px;max-height:96px;border-radius:3px}.thumb.missing{width:96px;height:40px;background:#f1f3f5;font-size:11px;color:#6b7580;text-align:center;line-height:40px}
pre{background:#f6f8fa;padding:10px;border-radius:6px;overflow:auto;font-size:12px}
"""


def render(out: Path, plan: Any, shards: list[Any], summary: dict[str, Any], read: dict[str, Any]) -> str:
    """The report's HTML for the run in ``out``."""
    import yaml

    from interleaf.pipeline import _SIMPLE_RULE, _filter_expr, _nan_as_null, _row_wise, _threshold_of

    docs = summary["documents"]
    dropped_docs: dict[str, int] = summary.get("dropped_documents", {})
    dropped_nodes: dict[str, int] = summary.get("dropped_nodes", {})
    first = shards[:EXAMPLE_SHARDS]
    # Examples only: the drop records of the first shards (the counts come from the summary).
    drops = [pl.read_parquet(out / "dropped" / f"{s.name}.parquet").with_columns(pl.lit(s.name).alias("shard")) for s in first if (out / "dropped" / f"{s.name}.parquet").exists()]
    dropped = pl.concat(drops) if drops else pl.DataFrame()
    first_names = {s.name for s in first}
    parts: list[str] = []
    r = plan.recipe
    parts.append(f"<h1>interleaf run: {_e(r.name)}</h1><p class=\"muted\">{_e(r.description)}</p>")
    parts.append(
        '<div class="stats">'
        f'<div class="stat"><b>{docs["in"]:,}</b>documents in</div>'
        f'<div class="stat"><b>{docs["kept"]:,}</b>kept</div>'
        f'<div class="stat"><b>{docs["dropped"]:,}</b>dropped</div>'
        f'<div class="stat"><b>{summary["nodes"]["in"]:,} / {summary["nodes"]["kept"]:,}</b>nodes in / kept</div>'
        f'<div class="stat"><b>{len(shards):,}</b>shards</div></div>'
    )
    # Funnel, in the order the filters apply.
    steps = [("input", docs["in"])]
    left = docs["in"]
    for name, n in plan.in_drop_order(dropped_docs).items():
        if n:
            left -= n
            steps.append((name, left))
    parts.append("<h2>Funnel</h2><p class=\"muted\">Documents left after each filter, in the order they apply.</p>" + funnel_svg(steps))
    if dropped_nodes:
        rows = "".join(f"<tr><td>{_e(k)}</td><td class=n>{v:,}</td></tr>" for k, v in dropped_nodes.items())
        parts.append(f"<h3>Nodes dropped from documents that were kept or filtered later</h3><table><tr><th>filter</th><th>nodes</th></tr>{rows}</table>")
    # Signals with thresholds: histograms and the documents on either side.
    thresholds: dict[str, float] = summary.get("thresholds", {})
    wanted: dict[str, set[int]] = {}
    shown: set[tuple[str, int, int]] = set()  # the nodes cards show (beside first images)
    panels: list[tuple[str, tuple[str, str], list[tuple[str, int, int | None, float]], list[tuple[str, int, int | None, float]]]] = []
    for level, filters in (("node", plan.node_filters), ("doc", plan.doc_filters)):
        for name, f, roots in filters:
            col = f.column if f.top_fraction is not None else next((c for c in roots if plan.column_dtypes.get(c) is not None and (plan.column_dtypes[c].is_numeric() or plan.column_dtypes[c] == pl.Boolean())), None)
            sig = plan.node_columns.get(col) or plan.doc_columns.get(col) if col else None
            if not col or not sig:
                # A rule comparing a label column with values (``language_lang = 'en'``): its
                # commonest values. Free text (``text_kept_text IS NOT NULL``) gets no table.
                labels = [c for c in roots if plan.column_dtypes.get(c) == pl.String() and (plan.node_columns.get(c) or plan.doc_columns.get(c)) and f.expr is not None and re.search(rf"\b{re.escape(c)}\s*(?:=|!=|<>|(?:NOT\s+)?IN\b)", f.expr, re.I)]
                if labels:
                    n_docs, n_nodes = dropped_docs.get(name, 0), dropped_nodes.get(name, 0)
                    docs_here = f"{n_docs:,} document{'s' if n_docs != 1 else ''}"
                    dropped_here = docs_here if level == "doc" else f"{n_nodes:,} node{'s' if n_nodes != 1 else ''} and {docs_here}"
                    head = f"<h3>{_e(name)} <span class=muted>({level} filter: <code>{_e(f.expr)}</code>)</span></h3><p class=muted>{_e(labels[0])}: {dropped_here} dropped here, after the filters before it</p>"
                    panels.append((head + _value_counts(out, plan.node_columns.get(labels[0]) or plan.doc_columns[labels[0]], labels[0], shards), ("", ""), [], []))
                continue
            thr = thresholds.get(name, _threshold_of(f.expr) if f.expr else None)
            # A boolean rule (``image_datacomp_ok``): examples of true (kept) and false (dropped).
            ex_thr = 0.5 if thr is None and plan.column_dtypes.get(col) == pl.Boolean() and f.expr is not None and f.expr.strip() == col else thr
            # The rule on its own, where its columns are all in this signal's table: the share
            # a threshold decides (the drops below are what is left to it after earlier filters).
            columns = plan.node_columns if plan.node_columns.get(col) else plan.doc_columns
            alone = all(columns.get(c) == sig for c in roots) if f.expr is not None else True
            # A document filter aggregating node columns decides per document.
            per_doc = level == "doc" and f.expr is not None and bool(plan.node_columns.get(col)) and not _row_wise(pl.sql_expr(f.expr), {c: plan.column_dtypes[c] for c in roots})
            rule_expr = _nan_as_null(_filter_expr(f, thresholds, name), plan.column_dtypes, grouped=per_doc).fill_null(f.on_null == "keep") if alone and (f.expr is not None or name in thresholds) else None
            svg, scored, failing = _column_histogram(out, sig, col, shards, thr, rule=rule_expr, rule_columns=roots if f.expr is not None else [col], per_document=per_doc)
            n_docs, n_nodes = dropped_docs.get(name, 0), dropped_nodes.get(name, 0)
            docs_here = f"{n_docs:,} document{'s' if n_docs != 1 else ''}"
            dropped_here = docs_here if level == "doc" else f"{n_nodes:,} node{'s' if n_nodes != 1 else ''} and {docs_here}"
            share = f"{dropped_here} dropped here, after the filters before it"
            if failing is not None and failing[1]:
                what = f"documents (over their scored {col})" if per_doc else "scored"
                share = f"{failing[0]:,} of {failing[1]:,} {what} fail the rule ({100 * failing[0] / failing[1]:.1f}%); {share}"
            rule = f.expr if f.expr is not None else f"{f.column} in the top {f.top_fraction:g}"
            head = f"<h3>{_e(name)} <span class=muted>({level} filter: <code>{_e(rule)}</code>)</span></h3><p class=muted>{_e(col)}: {share}</p>"
            above: list[tuple[str, int, int | None, float]] = []
            below: list[tuple[str, int, int | None, float]] = []
            # Which side the rule keeps, and which side a value on the threshold is on.
            op = m.group(1) if f.expr is not None and (m := _SIMPLE_RULE.match(f.expr)) else ">="
            on_below = op in (">", "<=")
            sides = {">=": ("kept", "dropped"), ">": ("kept", "dropped"), "<=": ("dropped", "kept"), "<": ("dropped", "kept")}.get(op, ("", ""))
            if ex_thr is not None and math.isfinite(ex_thr):
                thr_ex = ex_thr
                keyed = plan.node_columns.get(col) is not None
                for s in first:
                    f_path = out / "attributes" / sig / f"{s.name}.parquet"
                    if not f_path.exists():
                        continue
                    cols = [S.DOC_INDEX, S.POS, col] if keyed else [S.DOC_INDEX, col]
                    t = pl.read_parquet(f_path, columns=cols).filter(pl.col(S.DOC_INDEX) < EXAMPLE_DOCS).with_columns(pl.col(col).cast(pl.Float64, strict=False).alias("_v")).filter(pl.col("_v").is_finite())
                    high = pl.col("_v") > thr_ex if on_below else pl.col("_v") >= thr_ex
                    for v in t.filter(high).sort("_v").head(EXAMPLES).iter_rows(named=True):
                        above.append((s.name, v[S.DOC_INDEX], v.get(S.POS), v["_v"]))
                    for v in t.filter(~high).sort("_v", descending=True).head(EXAMPLES).iter_rows(named=True):
                        below.append((s.name, v[S.DOC_INDEX], v.get(S.POS), v["_v"]))
                above = sorted(above, key=lambda x: x[3])[:EXAMPLES]
                below = sorted(below, key=lambda x: -x[3])[:EXAMPLES]
                for sh, di, pos, _ in above + below:
                    wanted.setdefault(sh, set()).add(di)
                    if pos is not None:
                        shown.add((sh, di, pos))
            panels.append((head + svg, sides, above, below))
    # Dedup examples (dataset steps: a duplicate and the document it repeats).
    dedup_rows: list[tuple[str, dict[str, Any]]] = []
    if dropped.height:
        steps_names = [d.name for d in plan.dataset_steps] + [d.name for d in plan.document_steps]
        ex = dropped.filter(pl.col("filter").is_in(steps_names) & pl.col("shard").is_in(sorted(first_names)) & (pl.col(S.DOC_INDEX) < EXAMPLE_DOCS))
        for step in steps_names:
            for row in ex.filter(pl.col("filter") == step).head(EXAMPLES).iter_rows(named=True):
                dedup_rows.append((step, row))
                wanted.setdefault(row["shard"], set()).add(row[S.DOC_INDEX])
                if row[S.POS] is not None:
                    shown.add((row["shard"], row[S.DOC_INDEX], row[S.POS]))
                    if (row.get("detail") or "").startswith(_NEAR):
                        shown.add((row["shard"], row[S.DOC_INDEX], int(row["detail"].rsplit(" ", 1)[1])))
    # Error examples.
    errs = dropped.filter(pl.col("filter") == "error") if dropped.height else pl.DataFrame()
    limits = _image_limits(plan)
    content = _content(first, wanted, read, shown, limits)
    # Representatives by the doc_index their detail names; details of older runs name only the
    # doc_id, looked up in the first shards' documents (read only for those).
    rep_index: dict[tuple[str, str], int] = {}
    reps = [_rep_of(row.get("detail") or "") for _, row in dedup_rows]
    if any(rep is not None and rep[2] is None for rep in reps):
        from interleaf.pipeline import BASE

        for s in first:
            base = pl.read_parquet(out / "attributes" / BASE / f"{s.name}.parquet", columns=[S.DOC_INDEX, S.DOC_ID]).unique(S.DOC_INDEX, keep="first", maintain_order=True)
            for di, doc_id in base.iter_rows():
                rep_index.setdefault((s.name, doc_id), di)
    if dedup_rows:
        more: dict[str, set[int]] = {}
        for rep in reps:
            kept_at = _rep_doc(rep, rep_index)
            if rep and kept_at is not None and rep[1] in first_names and kept_at < EXAMPLE_DOCS:
                more.setdefault(rep[1], set()).add(kept_at)
        content.update(_content(first, {k: v - wanted.get(k, set()) for k, v in more.items()}, read, limits=limits))
    if panels:
        parts.append(f"<h2>Signals and thresholds</h2><p class=muted>Histograms over every scored row; the red line is the threshold. The examples are the rows just above and just below it (each side says whether this filter keeps it), among the first {EXAMPLE_DOCS:,} documents of the first {EXAMPLE_SHARDS} shards.</p>")
        for body, sides, above, below in panels:
            cards = ""
            if above or below:
                up = "".join(_doc_card(content.get((sh, di)), pos, f"{_num(v)} · {sh}") for sh, di, pos, v in above)
                down = "".join(_doc_card(content.get((sh, di)), pos, f"{_num(v)} · {sh}") for sh, di, pos, v in below)
                hi, lo = (f" ({side})" if side else "" for side in sides)
                cards = f'<div><div class="side">just above{hi}</div><div class="cards">{up or "<p class=muted>none</p>"}</div><div class="side">just below{lo}</div><div class="cards">{down or "<p class=muted>none</p>"}</div></div>'
            parts.append(f'<div class="filter"><div>{body}</div>{cards}</div>')
    if dedup_rows:
        parts.append("<h2>Duplicates</h2><p class=muted>Documents (or images) dropped as duplicates, beside what they repeat.</p>")
        for step, row in dedup_rows:
            doc = content.get((row["shard"], row[S.DOC_INDEX]))
            left_card = _doc_card(doc, row[S.POS], f"dropped: {row[S.DOC_ID]} ({step}, {_num(row['value'])})")
            rep = _rep_of(row.get("detail") or "")
            if row[S.POS] is not None and (row.get("detail") or "").startswith(_NEAR):
                other = int(row["detail"].rsplit(" ", 1)[1])
                right_card = _doc_card(doc, other, f"kept: pos {other}")
            elif rep and (kept_at := _rep_doc(rep, rep_index)) is not None:
                right_card = _doc_card(content.get((rep[1], kept_at)), None, f"kept: {rep[0]} ({rep[1]})")
            else:
                right_card = _doc_card(None, None, row.get("detail") or "")
            parts.append(f'<div class="cards">{left_card}{right_card}</div>')
    parts.append("<h2>Errors</h2>")
    if summary.get("errors") or (errs.height if isinstance(errs, pl.DataFrame) else 0):
        rows = "".join(f"<tr><td>{_e(k)}</td><td class=n>{v:,}</td></tr>" for k, v in summary.get("errors", {}).items())
        parts.append(f"<p class=muted>Documents with read or decode errors, by kind:</p><table><tr><th>kind</th><th>documents</th></tr>{rows}</table>")
        if errs.height:
            ex_rows = []
            for kind, part in sorted(errs.partition_by("rule", as_dict=True).items(), key=lambda kv: str(kv[0][0])):
                for row in part.head(3).iter_rows(named=True):
                    ex_rows.append(f"<tr><td>{_e(kind[0])}</td><td>{_e(row[S.DOC_ID])}</td><td>{_e(row['pos'] if row['pos'] is not None else '')}</td><td>{_e((row.get('detail') or '')[:200])}</td></tr>")
            parts.append(f"<p class=muted>Examples of dropped records:</p><table><tr><th>kind</th><th>doc_id</th><th>pos</th><th>message</th></tr>{''.join(ex_rows)}</table>")
    else:
        parts.append("<p class=muted>No read or decode errors.</p>")
    fails = summary.get("signal_failures") or []
    if fails:
        parts.append("<h3>Signal failures</h3><ul>" + "".join(f"<li>{_e(x)}</li>" for x in fails) + "</ul>")
    skipped = {**summary.get("skipped", {}).get("signals", {}), **summary.get("skipped", {}).get("filters", {})}
    if skipped:
        parts.append("<h3>Skipped</h3><ul>" + "".join(f"<li>{_e(v)}</li>" for v in skipped.values()) + "</ul>")
    parts.append("<h2>Recipe</h2><pre>" + _e(yaml.safe_dump(r.model_dump(mode="json"), sort_keys=False), limit=100_000) + "</pre>")
    versions = ", ".join(f"{k} {v}" for k, v in summary.get("versions", {}).items())
    parts.append(f"<p class=muted>{_e(versions)}</p>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">' + CSP_META + f"<title>interleaf run: {_e(r.name)}</title><style>{_CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )


def _rep_of(detail: str) -> tuple[str, str, int | None] | None:
    """(doc_id, shard, doc_index) from a dedup detail ``duplicate of <doc_id> (shard <name>,
    doc_index <i>)``; doc_index None in a detail of an older run, ``(shard <name>)``."""
    if not detail.startswith("duplicate of ") or not detail.endswith(")") or " (shard " not in detail:
        return None
    body = detail[len("duplicate of ") : -1]
    doc_id, shard = body.rsplit(" (shard ", 1)
    name, sep, index = shard.rpartition(", doc_index ")
    if sep and index.isdigit():
        return doc_id, name, int(index)
    return doc_id, shard, None


def _rep_doc(rep: tuple[str, str, int | None] | None, by_id: dict[tuple[str, str], int]) -> int | None:
    """The kept document's doc_index: the detail's own, else (an older run's detail) the first
    document of its shard with its doc_id."""
    if rep is None:
        return None
    return rep[2] if rep[2] is not None else by_id.get((rep[1], rep[0]))


def write(out: Path, plan: Any, shards: list[Any], summary: dict[str, Any], read: dict[str, Any]) -> Path:
    """Writes ``out/report.html`` (atomically) and returns its path."""
    from interleaf.io.atomic import write_text

    return write_text(out / "report.html", render(out, plan, shards, summary, read))
