"""The run report in a real headless Chromium: it loads with no console errors and no request
outside the file itself, and the screenshot is not blank; plus its content."""

from __future__ import annotations

import io
import re

import numpy as np
import polars as pl
import pytest
from browser import find_chromium, load
from PIL import Image

from interleaf.cli import main
from interleaf.pipeline import run

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: `apt-get install chromium` (make test installs it when run as root)")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    return out


@needs_chromium
def test_report_loads_offline_without_errors_in_chromium(demo_run):
    page = load((demo_run / "report.html").as_uri())
    assert page.requests and all(u.startswith(("file://", "data:")) for u in page.requests), page.requests
    errors = [(lvl, t) for lvl, t in page.console if lvl in ("error", "warning", "assert")]
    assert not errors and not page.exceptions, (errors, page.exceptions)
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot)).convert("L"), dtype=np.float64)
    assert shot.shape[0] > 100 and shot.std() > 10, "the screenshot is blank"
    assert (shot < 128).mean() > 0.01  # text and bars, not a white page


def test_report_content(demo_run):
    html = (demo_run / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html), "the report must not load anything from the network"
    assert "<script" not in html
    assert "Funnel" in html and "<svg" in html
    # Thresholds are marked and examples carry inline thumbnails.
    assert 'class="threshold"' in html and "data:image/jpeg;base64," in html
    for name in ("caption_words", "image_size", "exact", "phash"):
        assert name in html
    assert "kept: pair-0003 (pairs-000000)" in html  # a duplicate beside what it repeats
    assert "name: pairs-basic" in html  # the recipe


def test_report_gives_each_rules_own_failures_beside_the_funnels_drops(demo_run):
    """Each filter's panel says how many scored rows fail its rule on their own (what a
    threshold decides), checked here on the attribute files, and apart from that the drops the
    funnel credits to it (after the filters before it)."""
    import polars as pl

    html = (demo_run / "report.html").read_text()
    summary = __import__("json").loads((demo_run / "summary.json").read_text())
    for name, signal, rule in (("caption_words", "caption", "caption_words > 2"), ("caption_chars", "caption", "caption_chars > 5"), ("image_size", "image", "image_datacomp_ok")):
        t = pl.read_parquet(demo_run / "attributes" / signal / "*.parquet")
        col = rule.split()[0]
        scored = t.filter(pl.col(col).cast(pl.Float64).is_finite())
        failing = scored.filter(~pl.sql_expr(rule).fill_null(True)).height
        dropped = summary["dropped_documents"].get(name, 0)
        want = f"{failing:,} of {scored.height:,} scored fail the rule ({100 * failing / scored.height:.1f}%); {dropped:,} document{'s' if dropped != 1 else ''} dropped here, after the filters before it"
        assert want in html, (name, want)


def test_report_is_deterministic_and_rewritten_by_filter(demo_run, tmp_path):
    from interleaf.cli import SAMPLE_DIR

    again = tmp_path / "again"
    run("pairs-basic", [str(SAMPLE_DIR / "pairs-000000.tar"), str(SAMPLE_DIR / "pairs.jsonl")], again, progress=False)
    assert (again / "report.html").read_bytes() == (demo_run / "report.html").read_bytes()
    edited = tmp_path / "edited.yaml"
    from interleaf.recipes import preset_text

    edited.write_text(preset_text("pairs-basic").replace('caption_words > 2"', 'caption_words > 15"'))
    assert main(["filter", str(again), "--recipe", str(edited), "--quiet"]) == 0
    html = (again / "report.html").read_text()
    assert "caption_words &gt; 15" in html
    assert (again / "report.html").read_bytes() != (demo_run / "report.html").read_bytes()


def test_report_values_are_escaped_and_cut():
    """Every value a report shows is escaped and at most MAX_SHOWN_CHARS long: a 2 MB doc_id or
    text cannot make the page enormous."""
    from interleaf.report import MAX_SHOWN_CHARS, _e

    assert _e('<img src=x onerror="alert(1)">') == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"
    long = _e("x" * 2_000_000)
    assert len(long) < MAX_SHOWN_CHARS + 100 and long.endswith("(1,996,000 more characters)")
    # Bidirectional controls cannot reorder the report's text around a value.
    assert _e("harmless\u202egpj.exe") == "harmless&lt;U+202E&gt;gpj.exe"
    assert _e("a\u2066b\u2069\u200fc") == "a&lt;U+2066&gt;b&lt;U+2069&gt;&lt;U+200F&gt;c" and _e("שלום") == "שלום"


def test_report_thumbnails_only_the_images_its_cards_can_show(tmp_path):
    # A document of many images made a thumbnail of each; a card shows its first image, or the
    # node it is about.
    import json

    from interleaf.pipeline import plan_shards
    from interleaf.report import _content

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, "PNG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": "d", "texts": ["words"] + [None] * 6, "images": [None] + ["a.png"] * 6}) + "\n")
    shard = plan_shards([str(path)])
    read = {"format": "obelics"}
    got = _content(shard, {shard[0].name: {0}}, read)[(shard[0].name, 0)]
    assert got.filter(got.get_column("thumb").is_not_null()).get_column("pos").to_list() == [1]
    got = _content(shard, {shard[0].name: {0}}, read, {(shard[0].name, 0, 4)})[(shard[0].name, 0)]
    assert got.filter(got.get_column("thumb").is_not_null()).get_column("pos").to_list() == [1, 4]


def test_a_dedup_detail_names_its_keeper_by_doc_index_and_older_details_by_doc_id():
    from interleaf.report import _rep_doc, _rep_of

    new = _rep_of("duplicate of dup (1) (shard a, doc_index 7)")
    assert new == ("dup (1)", "a", 7) and _rep_doc(new, {}) == 7
    old = _rep_of("duplicate of dup (shard a)")
    assert old == ("dup", "a", None) and _rep_doc(old, {("a", "dup"): 3}) == 3 and _rep_doc(old, {}) is None
    assert _rep_of("near-duplicate of the image at pos 2") is None and _rep_doc(None, {}) is None


def _svg_texts(html: str, label: str) -> list[str]:
    """The text elements of the report's SVG with ``aria-label=label``, in document order."""
    import xml.etree.ElementTree as ET

    m = re.search(rf'<svg [^>]*aria-label="{label}">.*?</svg>', html, re.S)
    assert m, f"no {label} SVG in the report"
    return ["".join(t.itertext()) for t in ET.fromstring(m.group(0)).findall(".//{*}text")]


def _kept_nodes(out):
    """Every node row written to ``out / "kept"``, read back."""
    import polars as pl

    import interleaf

    return pl.concat(list(interleaf.read(out / "kept")))


def test_report_funnel_subtracts_each_filters_drops_in_the_order_they_apply(demo_run):
    """The funnel's bars are the documents left after each step that dropped any, in the order
    the filters apply (read errors, then the document filters in the recipe's order, then the
    dataset dedup steps), from summary.json's counts; its last bar is what was kept."""
    import json

    html = (demo_run / "report.html").read_text()
    summary = json.loads((demo_run / "summary.json").read_text())
    spec = summary["recipe_spec"]
    assert not spec["filters"]["node"]  # no node filters: the order below is the whole plan
    order = ["error", *[d["name"] for d in spec["dedup"] if d["scope"] == "document"], "empty", *spec["filters"]["doc"], *[d["name"] for d in spec["dedup"] if d["scope"] == "dataset"]]
    dropped = summary["dropped_documents"]
    assert set(dropped) <= set(order), dropped
    want, left = [("input", summary["documents"]["in"])], summary["documents"]["in"]
    for name in order:
        if dropped.get(name):
            left -= dropped[name]
            want.append((name, left))
    texts = _svg_texts(html, "funnel")
    got = [(label, int(n.replace(",", ""))) for label, n in zip(texts[0::2], texts[1::2], strict=True)]
    assert got == want
    # The demo drops by a document filter and by both dedup steps, so the order is seen.
    assert [n for n, _ in got] == ["input", "image_size", "exact", "phash"] and got[-1][1] == summary["documents"]["kept"] == 9


def test_report_header_stats_equal_the_summary_and_the_kept_output(demo_run):
    import json

    html = (demo_run / "report.html").read_text()
    summary = json.loads((demo_run / "summary.json").read_text())
    stats = {label: n for n, label in re.findall(r'<div class="stat"><b>([^<]*)</b>([^<]*)</div>', html)}
    docs, nodes = summary["documents"], summary["nodes"]
    kept = _kept_nodes(demo_run)
    assert kept.get_column("doc_id").n_unique() == docs["kept"] == 9 and kept.height == nodes["kept"]
    assert docs["in"] - docs["kept"] == docs["dropped"] == sum(summary["dropped_documents"].values()) == 19
    assert stats.pop("nodes in / kept") == f"{nodes['in']:,} / {nodes['kept']:,}"
    want = {"documents in": docs["in"], "kept": docs["kept"], "dropped": docs["in"] - docs["kept"], "shards": len(summary["shards"])}
    assert stats == {k: f"{v:,}" for k, v in want.items()}


@pytest.fixture(scope="module")
def node_drop_run(tmp_path_factory):
    """An interleaved (OBELICS-layout) run whose documents are all kept but lose nodes: a small
    image to a node filter with ``on_null: drop``, a missing image (whose width is null) to the
    read-error rule."""
    import json

    tmp = tmp_path_factory.mktemp("nodes")
    for name, size in (("big.png", (300, 240)), ("small.png", (40, 40)), ("big2.png", (256, 256))):
        buf = io.BytesIO()
        Image.new("RGB", size, (10, 200, 30)).save(buf, "PNG")
        (tmp / name).write_bytes(buf.getvalue())
    docs = [
        {"id": "a", "texts": ["first words here", None, None], "images": [None, "big.png", "small.png"]},
        {"id": "b", "texts": ["second words here", None], "images": [None, "missing.png"]},
        {"id": "c", "texts": ["third words here", None], "images": [None, "big2.png"]},
    ]
    (tmp / "d.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp / "r.yaml").write_text("name: nodes\nsignals:\n  image: {type: image}\nfilters:\n  node:\n    big: {expr: 'image_width >= 100', on_null: drop}\n")
    run(tmp / "r.yaml", [tmp / "d.jsonl"], tmp / "out", progress=False)
    return tmp / "out"


def test_summary_kept_nodes_are_the_nodes_written_to_kept(node_drop_run):
    """Nodes dropped from documents that are kept are not counted as kept: summary.json's and
    the report's kept node count is the number of node rows in kept/."""
    import json

    summary = json.loads((node_drop_run / "summary.json").read_text())
    assert summary["documents"] == {"in": 3, "kept": 3, "dropped": 0}
    assert summary["dropped_nodes"] == {"big": 1, "error": 1}
    kept = _kept_nodes(node_drop_run)
    assert sorted(zip(kept.get_column("doc_id"), kept.get_column("pos"), strict=True)) == [("a", 0), ("a", 1), ("b", 0), ("c", 0), ("c", 1)]
    assert summary["nodes"] == {"in": 7, "kept": kept.height}
    assert '<div class="stat"><b>7 / 5</b>nodes in / kept</div>' in (node_drop_run / "report.html").read_text()


def test_report_rule_failures_count_only_scored_rows(node_drop_run):
    """Under ``on_null: drop`` a row whose value is null fails the rule, but it is not scored:
    "N of M scored fail the rule" counts the failures among the M rows with a finite value."""
    import polars as pl

    t = pl.read_parquet(node_drop_run / "attributes" / "image" / "*.parquet")
    assert t.get_column("image_width").null_count() == 1  # the missing image
    scored = t.filter(pl.col("image_width").cast(pl.Float64).is_finite())
    failing = scored.filter(pl.col("image_width") < 100).height
    assert (failing, scored.height) == (1, 3)
    html = (node_drop_run / "report.html").read_text()
    assert "image_width: 1 of 3 scored fail the rule (33.3%); 1 node and 0 documents dropped here, after the filters before it" in html


def test_a_document_filter_mixing_node_and_document_columns_gets_its_histogram(tmp_path, sample_dir):
    """A rule over a node signal's column and another signal's (``image_width >= 250 AND
    caption_words > 2``) cannot be counted from one table: its panel shows the histogram and the
    drops, without a "fail the rule" share (it raised a missing-column error before)."""
    from interleaf import recipes

    recipe = tmp_path / "mixed.yaml"
    text = recipes.preset_text("pairs-basic")
    assert 'caption_words: "caption_words > 2"' in text
    recipe.write_text(text.replace('caption_words: "caption_words > 2"', 'caption_words: "image_width >= 250 AND caption_words > 2"'))
    out = tmp_path / "out"
    summary = run(recipe, [str(sample_dir / "pairs.jsonl")], out, progress=False)
    html = (out / "report.html").read_text()
    n = summary["dropped_documents"].get("caption_words", 0)
    assert n > 0
    assert f"image_width: {n:,} document{'s' if n != 1 else ''} dropped here, after the filters before it" in html


def test_an_aggregating_document_filter_counts_its_failures_per_document(tmp_path, sample_dir):
    """``AVG(image_width) >= 300`` decides per document, over its nodes: the panel counts the
    documents whose average fails (it took the average over a whole shard's nodes and said 0
    of 14 fail, or all of them, whatever each document's was)."""
    from interleaf import recipes

    recipe = tmp_path / "agg.yaml"
    recipe.write_text(recipes.preset_text("pairs-basic").replace("  doc:\n", '  doc:\n    avg_width: "AVG(image_width) >= 300"\n', 1))
    out = tmp_path / "out"
    summary = run(recipe, [str(sample_dir / "pairs-000000.tar")], out, progress=False)
    t = pl.read_parquet(out / "attributes" / "image" / "*.parquet").group_by("doc_index").agg(pl.col("image_width").mean())
    failing = t.filter(pl.col("image_width") < 300).height
    assert 0 < failing < t.height and summary["dropped_documents"]["avg_width"] == failing
    n = f"{failing:,} document{'s' if failing != 1 else ''}"
    assert f"image_width: {failing:,} of {t.height:,} documents (over their scored image_width) fail the rule ({100 * failing / t.height:.1f}%); {n} dropped here" in (out / "report.html").read_text()


def test_report_thumbnails_keep_to_the_recipes_image_limits(tmp_path, sample_dir):
    """An image the recipe's image signal refuses as too large (max_pixels) is not decoded
    for a thumbnail either (a 9000x9000 PNG was decoded whole for its card)."""
    from interleaf import recipes

    text = recipes.preset_text("pairs-basic")
    assert "  image: {type: image}" in text
    recipe = tmp_path / "small.yaml"
    recipe.write_text(text.replace("  image: {type: image}", "  image: {type: image, max_pixels: 1000}").replace("  drop_errors: true", "  drop_errors: false"))
    run(recipe, [str(sample_dir / "pairs.jsonl")], tmp_path / "small", progress=False)
    run("pairs-basic", [str(sample_dir / "pairs.jsonl")], tmp_path / "plain", progress=False)
    assert 'class="thumb"' in (tmp_path / "plain" / "report.html").read_text()
    small = (tmp_path / "small" / "report.html").read_text()
    assert 'class="card"' in small and 'class="thumb"' not in small


def test_the_examples_of_an_at_most_rule_say_the_side_above_is_dropped(tmp_path, sample_dir):
    """``image_aspect_ratio <= 1.2`` keeps the rows below the line: the cards above it are
    labelled dropped, those below kept, and a value on the line is below (kept)."""
    from interleaf import recipes

    recipe = tmp_path / "narrow.yaml"
    recipe.write_text(recipes.preset_text("pairs-basic").replace("  doc:\n", '  doc:\n    narrow: "image_aspect_ratio <= 1.2"\n', 1))
    out = tmp_path / "out"
    run(recipe, [str(sample_dir / "pairs.jsonl")], out, progress=False)
    html = (out / "report.html").read_text()
    panel = html[html.index("<h3>narrow ") :]
    panel = panel[: panel.index('<div class="filter">')] if '<div class="filter">' in panel else panel
    above = panel[panel.index("just above (dropped)") : panel.index("just below (kept)")]
    below = panel[panel.index("just below (kept)") :]
    values = lambda part: [float(v) for v in re.findall(r"([0-9.]+) · pairs", part)]  # noqa: E731
    assert values(above) and all(v > 1.2 for v in values(above))
    assert values(below) and all(v <= 1.2 for v in values(below))
