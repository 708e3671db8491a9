"""OBELICS's common-word ratio with a word list the user gives (OBELICS's ``common_words.json``
is not in its repository): ``compute_common_word_ratio`` (words as OBELICS splits them, looked
up with ``in`` in the ``json.load``-ed list) and ``check_common_word_ratio`` at paragraph level
(>= 0.8, after the punctuation check) and document level (>= 0.9), against the transcription in
``obelics_reference`` on real prose."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pickle
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLE_DIR, batch_of
from obelics_reference import ref_paragraph_filter, ref_ratio, ref_words

import interleaf
from interleaf import _native
from interleaf.pipeline import plan
from interleaf.recipes import RecipeError, load
from interleaf.signals import Context, TextStats, compute, load_common_words, obelics_paragraphs, text_stats


@pytest.fixture(scope="module")
def prose() -> list[str]:
    """Real English paragraphs (standard-library docstrings) and edge cases."""
    out = []
    for name in ("argparse", "collections", "json", "os", "pathlib", "textwrap", "logging", "tarfile"):
        mod = importlib.import_module(name)
        objs = [mod, *[v for _, v in inspect.getmembers(mod) if inspect.isfunction(v) or inspect.isclass(v)]]
        for obj in objs:
            out.extend(p for p in (inspect.getdoc(obj) or "").split("\n\n") if p.strip())
    out = list(dict.fromkeys(out))
    return out + ["", "word", "2024 !!!", "The \"cat\". THE cat!", "Café CAFÉ café.", "İstanbul istanbul", "don't DON'T", "🙂 the 🙂"]


@pytest.fixture(scope="module")
def common(prose) -> dict[str, int]:
    """A list shaped as OBELICS's file (a JSON object of word -> count): the most frequent
    words of the prose, enough that the 0.8 cutoff both keeps and removes paragraphs."""
    counts = Counter(w for p in prose for w in ref_words(p))
    return dict(counts.most_common(400))


def test_the_ratio_equals_obelicss_function_on_real_prose(prose, common):
    for level in ("paragraph", "document"):
        got = text_stats(prose, level=level, common_words=common).get_column("common_word_ratio").to_list()
        want = [float(ref_ratio(p, common)) for p in prose]
        assert got == want  # the same counts divided the same way: exactly equal
    # The other statistics are unchanged by the list.
    plain = text_stats(prose)
    assert text_stats(prose, common_words=common).drop("common_word_ratio").equals(plain)
    assert "common_word_ratio" not in plain.columns


def test_the_paragraph_filter_checks_common_words_after_punctuation(prose, common):
    docs = ["\n\n".join(prose[i : i + 5]) for i in range(0, len(prose), 5)] + ["END_OF_DOCUMENT_TOKEN_TO_BE_REPLACED"]
    got = obelics_paragraphs(docs, common_words=common)
    for i, d in enumerate(docs):
        kept, removed = ref_paragraph_filter(d, common)
        assert got.get_column("text")[i] == kept, i
        assert list(zip(got.get_column("removed")[i].to_list(), got.get_column("reasons")[i].to_list(), strict=True)) == removed, i
    reasons = Counter(r for rs in got.get_column("reasons").to_list() for r in rs)
    assert reasons["common_words"] > 20 and reasons["words"] > 0
    kept_any = sum(t is not None for t in got.get_column("text").to_list())
    assert kept_any > 20
    # Without a list, no common-word check: OBELICS's other rules alone.
    plain = obelics_paragraphs(docs)
    assert [ref_paragraph_filter(d)[0] for d in docs] == plain.get_column("text").to_list()
    # The whole-node statistics from the filter's pass carry the ratio too.
    fused = obelics_paragraphs(docs, common_words=common, node_stats=(10, 5))
    assert fused.get_column("common_word_ratio").to_list() == text_stats(docs, common_words=common).get_column("common_word_ratio").to_list()


def test_words_match_as_obelics_splits_them_and_entries_as_written():
    with pytest.warns(UserWarning, match=r"1 of 6 common words can never match .*\['The'\]"):
        w = load_common_words(["the", "cat", "café", "i̇stanbul", "don't", "The"])
    t = text_stats(["The \"cat\". THE cat!", "Café CAFÉ", "İstanbul", "DON'T", "Katze", "", "2024 !!!", "one"], common_words=w)
    # "İstanbul".lower() is "i̇stanbul" (with a combining dot), as in Python.
    assert t.get_column("common_word_ratio").to_list() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    # A list nothing can match (words are lower-cased and stripped first) is refused.
    for never in (["The", "CAT"], [""], ["etc.", "2024"], ["the 10", "cat 4"]):
        with pytest.raises(ValueError, match="no entry a text can match"):
            load_common_words(never)
    assert text_stats([None], common_words=w).row(0) == (None,) * 9


def test_word_list_files(tmp_path):
    obj = tmp_path / "common_words.json"
    obj.write_text(json.dumps({"the": 10, "cat": 3}))
    arr = tmp_path / "list.json"
    arr.write_text(json.dumps(["the", "cat"]))
    txt = tmp_path / "words.txt"
    txt.write_bytes("\ufeffthe\r\n\n  cat \n".encode())
    for f in (obj, arr, txt, str(txt), {"the": 1, "cat": 1}, {"the", "cat"}):
        w = load_common_words(f)
        assert len(w) == 2 and "the" in w and "cat" in w and "dog" not in w, f
    assert load_common_words(obj) is load_common_words(obj)  # loaded once
    os.utime(obj, ns=(1, 1))
    obj.write_text(json.dumps({"dog": 1}))  # a changed file is read again
    assert "dog" in load_common_words(obj)
    w = load_common_words(arr)
    assert load_common_words(w) is w
    assert sorted(pickle.loads(pickle.dumps(w)).__reduce__()[1][0]) == ["cat", "the"]
    assert isinstance(w, _native.WordSet) and repr(w) == "WordSet(2 words)"
    bad, lines = tmp_path / "bad.json", tmp_path / "bad.txt"
    for f, content, match in [
        (bad, "[1, 2]", "must be strings"),
        (bad, '["a", ["b"]]', "must be strings"),
        (bad, '{"a"', "not valid JSON"),
        (bad, "", "not valid JSON"),
        (bad, '"the"', "not a str"),
        (bad, "[]", "no words"),
        (lines, "\n \n", "no words"),
        (lines, "the\t120\ncat\t7\n", "a word-count file"),
    ]:
        f.write_text(content)
        with pytest.raises(ValueError, match=match):
            load_common_words(f)
    # A word per line may start with a bracket; JSON may hold lone surrogates (not matchable).
    lines.write_text("[citation]\nthe\n")
    with pytest.warns(UserWarning, match="1 of 2"):
        assert "the" in load_common_words(lines)
    bad.write_text('["\\ud800", "the"]')
    with pytest.warns(UserWarning, match="1 of 2"):
        assert len(load_common_words(bad)) == 1
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_common_words(bad)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_common_words(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_common_words(tmp_path)
    with pytest.raises(TypeError, match="iterable of words"):
        load_common_words(b"the")
    with pytest.raises(ValueError, match="no words"):
        load_common_words([])


def test_signals_and_context_share_one_paragraph_filter():
    good = "The cat sat on the mat and it was a very good day for all of us, as we went to the park."
    other = "A completely different sentence about weather, rivers and mountains far away from here today."
    batch = batch_of([[("text", f"{good}\n\n{other}"), ("image", b"x")], [("text", other)]])
    words = load_common_words(ref_words(good))
    node, doc = compute(batch, [TextStats(paragraphs=True, common_words=words), TextStats("doc", name="doc_text", paragraphs=True, common_words=words)], Context(words=words))
    texts = node.filter(pl.col("text_n_words").is_not_null())
    assert texts.get_column("text_kept_text").to_list() == [good, None]
    assert texts.get_column("text_removed_reasons").to_list() == [["common_words"], ["common_words"]]
    assert texts.get_column("text_common_word_ratio").to_list() == [float(ref_ratio(f"{good}\n\n{other}", words)), float(ref_ratio(other, words))]
    assert doc.get_column("doc_text_common_word_ratio").to_list() == [1.0, 0.0]  # the surviving text only (none: 0)
    # The language and perplexity signals read the context's paragraphs: its list by default.
    ctx = Context(words=words)
    assert ctx.obelics_paragraphs(batch).get_column("text").to_list() == [good, None]
    assert ctx.obelics_paragraphs(batch, common_words=None).get_column("text").to_list() == [f"{good}\n\n{other}", other]
    assert Context().obelics_paragraphs(batch).get_column("text").to_list() == [f"{good}\n\n{other}", other]
    # Without a list a text signal makes no ratio column.
    assert "text_common_word_ratio" not in TextStats().columns() and "text_common_word_ratio" in TextStats(common_words=words).columns()


def test_obelics_preset_with_and_without_a_word_list(tmp_path):
    """Without a list the check is skipped with a notice; with one every paragraph and
    document is checked; a list of every word the data has keeps what the run without one
    keeps; a changed list file scores the run again."""
    data = SAMPLE_DIR / "comm.jsonl"
    plain = interleaf.run("obelics", data, tmp_path / "plain", format="comm", progress=False)
    assert "common_words" in plain.data["skipped"]["filters"]
    p = plan(load("obelics"))
    assert any("common-word check of paragraphs skipped" in n for n in p.notices)
    batch = pl.concat(list(interleaf.read(data, format="comm")))
    every = sorted({w for t in batch.filter(pl.col("kind") == "text").get_column("text").to_list() for w in ref_words(t)})
    lst = tmp_path / "common_words.json"
    lst.write_text(json.dumps(dict.fromkeys(every, 1)))
    full = interleaf.run("obelics", data, tmp_path / "full", format="comm", models={"words": str(lst)}, progress=False)
    assert "common_words" not in full.data["skipped"].get("filters", {})
    assert full.data["documents"] == plain.data["documents"]
    ratios = pl.read_parquet(tmp_path / "full" / "attributes" / "doc_text" / "comm.parquet").get_column("doc_text_common_word_ratio")
    assert ratios.len() == 4 and ratios.min() == 1.0
    # A short list: every document's text fails OBELICS's document rule (or loses all paragraphs).
    lst.write_text(json.dumps(["the", "a", "and"]))
    os.utime(lst, ns=(1, 1))
    out = tmp_path / "full"
    short = interleaf.run("obelics", data, out, format="comm", models={"words": str(lst)}, progress=False)
    assert short.data["documents"]["kept"] == 0
    dropped = pl.read_parquet(out / "dropped" / "comm.parquet")
    assert set(dropped.get_column("filter").to_list()) & {"paragraphs", "common_words"}
    node = pl.read_parquet(out / "attributes" / "text" / "comm.parquet")
    assert "common_words" in node.get_column("text_removed_reasons").explode().to_list()


def test_cli_and_recipe_errors(tmp_path, capsys):
    from interleaf.cli import main

    lst = tmp_path / "words.txt"
    lst.write_text("the\ncat\n")
    out = tmp_path / "sig"
    assert main(["signals", str(SAMPLE_DIR / "comm.jsonl"), "--format", "comm", "--out", str(out), "--signals", "text,text-doc", "--paragraphs", "--common-words", str(lst)]) == 0
    assert "doc_text_common_word_ratio" in pl.read_parquet(out / "doc_attrs.parquet").columns
    assert "text_common_word_ratio" in pl.read_parquet(out / "node_attrs.parquet").columns
    assert main(["run", "obelics", str(SAMPLE_DIR / "comm.jsonl"), "--format", "comm", "--out", str(tmp_path / "run"), "--model", f"words={lst}", "--quiet"]) == 0
    assert "doc_text_common_word_ratio" in pl.read_parquet(tmp_path / "run" / "attributes" / "doc_text" / "comm.parquet").columns
    recipe = tmp_path / "r.yaml"
    recipe.write_text("signals:\n  doc_text: {type: text, level: doc}\nfilters:\n  doc:\n    cw: 'doc_text_common_word_ratio >= 0.9'\n")
    with pytest.raises(RecipeError, match=r"add `words: \{\}` under models"):
        plan(load(recipe))
    with pytest.raises(FileNotFoundError, match="no such file"):
        plan(load("obelics"), {"words": str(tmp_path / "missing.json")})
    assert Path(lst).exists()


def test_a_list_given_in_memory_resumes_and_refilters(tmp_path):
    """Words given as a list identify the run by their content: the same list again skips the
    scoring; run.json keeps them, so `interleaf filter` plans with them."""
    from interleaf.cli import main

    out = tmp_path / "out"
    words = ["the", "of", "and", "a"]
    first = interleaf.run("obelics", SAMPLE_DIR / "comm.jsonl", out, format="comm", models={"words": words}, progress=False)
    again = interleaf.run("obelics", SAMPLE_DIR / "comm.jsonl", out, format="comm", models={"words": list(reversed(words))}, progress=False)
    assert again.data["stages"]["score"]["skipped"] == 1
    # The folder keeps the list (sorted) and names it: `interleaf filter` reads it there.
    assert json.loads((out / ".interleaf" / "run.json").read_text())["models"]["words"] == "common_words.json"
    assert json.loads((out / ".interleaf" / "common_words.json").read_text()) == sorted(words)
    assert main(["filter", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["documents"] == first.data["documents"]
    # Worker processes get the list with the plan (it pickles as its words).
    two = interleaf.run("obelics", SAMPLE_DIR / "comm.jsonl", tmp_path / "two", format="comm", models={"words": words}, workers=2, progress=False)
    assert two.data["documents"] == first.data["documents"]
    assert pl.read_parquet(tmp_path / "two" / "attributes" / "text" / "comm.parquet").equals(pl.read_parquet(out / "attributes" / "text" / "comm.parquet"))


def test_interleaf_filter_uses_the_runs_own_copy_of_the_list(tmp_path):
    """The run folder keeps its list: `interleaf filter` works after the original is edited,
    deleted or the folder moved; a folder of a recipe without the words slot (written before
    the preset had it) re-filters with today's preset."""
    from interleaf.cli import main

    data = SAMPLE_DIR / "comm.jsonl"
    lst = tmp_path / "words.txt"
    lst.write_text("the\nof\nand\na\n")
    out = tmp_path / "out"
    first = interleaf.run("obelics", data, out, format="comm", models={"words": str(lst)}, progress=False)
    lst.write_text("zebra\n")
    assert main(["filter", str(out), "--quiet"]) == 0
    lst.unlink()
    moved = tmp_path / "moved"
    out.rename(moved)
    assert main(["filter", str(moved), "--quiet"]) == 0
    assert json.loads((moved / "summary.json").read_text())["documents"] == first.data["documents"]
    # An older folder: its stored recipe has no words slot and it ran without a list.
    old = tmp_path / "old"
    interleaf.run("obelics", data, old, format="comm", progress=False)
    state = json.loads((old / ".interleaf" / "run.json").read_text())
    del state["recipe"]["models"]["words"]
    assert "words" not in state["models"]
    (old / ".interleaf" / "run.json").write_text(json.dumps(state))
    assert main(["filter", str(old), "--recipe", "obelics", "--quiet"]) == 0
    summary = json.loads((old / "summary.json").read_text())
    assert "common_words (paragraphs)" in summary["skipped"]["filters"] and "common_words" in summary["skipped"]["filters"]
