"""The run report in a real headless Chromium: it loads with no console errors and no request
outside the file itself, and the screenshot is not blank; plus its content."""

from __future__ import annotations

import io
import re

import numpy as np
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
        want = f"{failing:,} of {scored.height:,} scored fail the rule ({100 * failing / scored.height:.1f}%); {dropped:,} documents dropped here, after the filters before it"
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
