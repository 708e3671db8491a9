"""Signal kernels against their references: OBELICS's text statistics (its functions,
transcribed below as the oracle), MMC4's assignment and the linear assignment against scipy,
CoMM's F and text coherence against numpy transcriptions of their formulas."""

from __future__ import annotations

import importlib
import inspect
from collections import Counter

import numpy as np
import polars as pl
import pytest
from obelics_reference import FLAGGED, STOPWORDS, ref_char_repetition, ref_paragraph_filter, ref_punctuation, ref_ratio, ref_special, ref_word_repetition, ref_words
from scipy.optimize import linear_sum_assignment

from interleaf.signals import linear_assignment, mmc4_assign, mmc4_assign_documents, obelics_paragraphs, sequence_consistency, text_coherence, text_stats


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    """Real English prose: the docstrings of the standard library's best documented modules,
    split into paragraphs, plus the edge cases."""
    out = []
    for name in ("argparse", "collections", "json", "os", "re", "subprocess", "textwrap", "pathlib", "inspect", "email.message", "http.client", "logging", "unittest", "functools", "tarfile", "zipfile"):
        mod = importlib.import_module(name)
        objs = [mod, *[v for _, v in inspect.getmembers(mod) if inspect.isfunction(v) or inspect.isclass(v)]]
        objs += [m for c in objs if inspect.isclass(c) for _, m in inspect.getmembers(c, inspect.isfunction)]
        for obj in objs:
            doc = inspect.getdoc(obj) or ""
            out.extend(p for p in doc.split("\n\n") if p.strip())
    out = list(dict.fromkeys(out))
    edge = ["", "word", "2024", "!!!", "a b c d", "Hello,\tWorld!\nagain…", "日本語のテキストです。", "Café au lait, s'il vous plaît!", "🙂🙂 emoji 🙂 text",
            "buy buy buy buy buy buy buy buy buy buy", "x" * 50, "don't won't can't shan't", "½ ² ³ numbers 12,345.67", "e\u0301clair is a word", "İstanbul ΣΊΣΥΦΟΣ"]
    return out + edge


def test_text_statistics_equal_obelicss_functions_on_real_prose(paragraphs):
    assert len(paragraphs) > 1200
    got = text_stats(paragraphs, level="paragraph")
    doc = text_stats(paragraphs, level="document")
    want = pl.DataFrame(
        {
            "n_words": [len(ref_words(p)) for p in paragraphs],
            "n_chars": [len(p) for p in paragraphs],
            "char_repetition": [float(ref_char_repetition(p)) for p in paragraphs],
            "word_repetition": [float(ref_word_repetition(p)) for p in paragraphs],
            "special_char_ratio": [float(ref_special(p)) for p in paragraphs],
            "stopword_ratio": [float(ref_ratio(p, STOPWORDS)) for p in paragraphs],
            "flagged_word_ratio": [float(ref_ratio(p, FLAGGED)) for p in paragraphs],
            "punctuation_ratio": [float(ref_punctuation(p, 12)) for p in paragraphs],
        },
        schema_overrides={"n_words": pl.UInt64, "n_chars": pl.UInt64},
    )
    for col in want.columns:
        a, b = got.get_column(col).to_list(), want.get_column(col).to_list()
        differ = [(paragraphs[i][:60], x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if not (x == y or abs(x - y) < 1e-12)]
        assert not differ, (col, differ[:5])
    assert doc.get_column("punctuation_ratio").to_list() == pytest.approx([ref_punctuation(p) for p in paragraphs], abs=1e-12)
    # The sets are OBELICS's: ordinary English scores about 0.2 special characters.
    assert 0.1 < got.get_column("special_char_ratio").median() < 0.3


def test_null_and_empty_texts(paragraphs):
    t = text_stats(pl.Series([None, "", "one"], dtype=pl.String))
    assert t.row(0) == (None,) * 8
    assert t.row(1) == (0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(TypeError, match="String"):
        text_stats(pl.Series([1, 2]))
    with pytest.raises(ValueError, match="level"):
        text_stats(["x"], level="sentence")


def test_paragraph_filter_equals_obelicss_node_level_rules(paragraphs):
    docs = ["\n\n".join(paragraphs[i : i + 7]) for i in range(0, len(paragraphs), 7)]
    docs.append("Click here!!!\n\nThe quick brown fox jumps over the lazy dog, and then it runs away into the woods.\u00a0Again.")
    got = obelics_paragraphs(docs)
    for i, d in enumerate(docs):
        kept, removed = ref_paragraph_filter(d)
        assert got.get_column("text")[i] == kept, i
        assert list(zip(got.get_column("removed")[i].to_list(), got.get_column("reasons")[i].to_list(), strict=True)) == removed, i
    reasons = Counter(r for rs in got.get_column("reasons").to_list() for r in rs)
    assert reasons["words"] > 0 and len(reasons) >= 3  # the real prose exercises several checks


def test_linear_assignment_reaches_scipys_optimum():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 7), (7, 1), (5, 5), (4, 9), (9, 4), (30, 30), (17, 40)]:
        for _ in range(10):
            cost = rng.normal(size=shape)
            for maximize in (False, True):
                got = linear_assignment(cost, maximize=maximize)
                r, c = linear_sum_assignment(cost, maximize=maximize)
                rows = np.flatnonzero(got >= 0)
                assert len(set(got[rows])) == len(rows) == min(shape)
                assert cost[rows, got[rows]].sum() == pytest.approx(cost[r, c].sum(), abs=1e-9)
                want = np.full(shape[0], -1)
                want[r] = c
                assert np.array_equal(got, want)  # continuous random costs: the optimum is unique
    with pytest.raises(ValueError, match="NaN"):
        linear_assignment(np.array([[np.nan]]))


def ref_mmc4(sim, threshold=0.15):
    """MMC4's published procedure, with scipy in place of lapjv."""
    n_img, n_txt = sim.shape
    out = np.full(n_img, -1)
    if n_txt == 0:
        return out
    keep = np.flatnonzero(sim.max(axis=1) >= threshold)
    if not len(keep):
        return out
    r, c = linear_sum_assignment(sim[keep], maximize=True)
    out[keep[r]] = c
    for i in keep:
        if out[i] == -1:
            out[i] = int(np.argmax(sim[i]))
    return out


def test_mmc4_assignment_equals_the_published_procedure():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (3, 30), (6, 30), (12, 4), (5, 1), (1, 6), (15, 15)]:
        for _ in range(20):
            sim = rng.uniform(-0.1, 0.45, size=shape).astype(np.float32)
            assert np.array_equal(mmc4_assign(sim), ref_mmc4(sim)), shape
    # Ties: identical sentences; the leftover image goes to the first best.
    sim = np.array([[0.3, 0.3], [0.3, 0.3], [0.3, 0.3]], dtype=np.float32)
    got = mmc4_assign(sim)
    # Two images take one sentence each (which two is the solver's tie-break); the third goes
    # to its argmax, the first of the equal sentences: sentence 0 twice, sentence 1 once.
    assert sorted(got.tolist()) == [0, 0, 1]
    assert mmc4_assign(np.array([[0.15, 0.1]], dtype=np.float32)).tolist() == [0]  # exactly 0.15 is kept
    assert mmc4_assign(np.array([[0.1499, 0.1]], dtype=np.float32)).tolist() == [-1]
    assert mmc4_assign(np.zeros((2, 0), dtype=np.float32)).tolist() == [-1, -1]
    # An unknown (NaN) similarity is never matched; the rest of the matrix is assigned as
    # MMC4 would assign it over the known cells (scipy with NaN as a prohibitive loss).
    for _ in range(50):
        sim = rng.uniform(-0.1, 0.45, size=(6, 5)).astype(np.float32)
        sim[rng.uniform(size=sim.shape) < 0.2] = np.nan
        got = mmc4_assign(sim)
        assigned = got >= 0
        assert not np.isnan(sim[assigned, got[assigned]]).any()
        best = np.nanmax(np.where(np.isnan(sim), -np.inf, sim), axis=1)
        assert np.array_equal(assigned, best >= 0.15)
        keep = np.flatnonzero(best >= 0.15)
        r, c = linear_sum_assignment(np.where(np.isnan(sim[keep]), -1e3, sim[keep]), maximize=True)
        ok = ~np.isnan(sim[keep][r, c])
        assert np.array_equal(got[keep[r[ok]]], c[ok]) or sim[keep[r[ok]], got[keep[r[ok]]]].sum() == pytest.approx(sim[keep[r[ok]], c[ok]].sum(), abs=1e-6)


def test_mmc4_over_documents_equals_one_document_at_a_time():
    rng = np.random.default_rng(2)
    n_img, n_txt = rng.integers(0, 8, 50), rng.integers(0, 30, 50)
    io, to = np.concatenate([[0], np.cumsum(n_img)]), np.concatenate([[0], np.cumsum(n_txt)])
    img = rng.normal(size=(io[-1], 16)).astype(np.float32)
    txt = (rng.normal(size=(to[-1], 16)) + 0.3).astype(np.float32)
    idx, score = mmc4_assign_documents(img, io, txt, to)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    for d in range(50):
        a, b = unit(img[io[d] : io[d + 1]].astype(np.float64)), unit(txt[to[d] : to[d + 1]].astype(np.float64))
        sim = (a @ b.T).astype(np.float32)
        # The kernel's cosines are float32 products (within 1e-6 of these): the same
        # assignment, or one of the same total where two are that close.
        got, want = idx[io[d] : io[d + 1]], mmc4_assign(sim)
        total = lambda a, sim=sim: sum(float(sim[k, j]) for k, j in enumerate(a) if j >= 0)
        assert np.array_equal(got, want) or ((got >= 0) == (want >= 0)).all() and total(got) == pytest.approx(total(want), abs=1e-5), d
        for k, j in enumerate(got):
            expect = sim[k, j] if j >= 0 else (sim[k].max() if sim.shape[1] else np.nan)
            assert score[io[d] + k] == pytest.approx(expect, abs=1e-6, nan_ok=True)
    with pytest.raises(ValueError, match="offsets"):
        mmc4_assign_documents(img, io[:-1], txt, to)


def test_sequence_consistency_follows_comms_formula():
    rng = np.random.default_rng(3)
    sizes = [0, 1, 2, 3, 4, 10, 2]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    emb = rng.normal(size=(offsets[-1], 32)).astype(np.float32)
    got = sequence_consistency(emb, offsets)
    for d, n in enumerate(sizes):
        if n < 3:
            assert np.isnan(got[d])
            continue
        x = emb[offsets[d] : offsets[d + 1]].astype(np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        cos = x @ x.T
        adjacent = np.mean([cos[i, i - 1] for i in range(1, n)])
        far = np.mean([cos[i, j] for i in range(n) for j in range(i - 1)])
        assert got[d] == pytest.approx(adjacent - far, abs=1e-9)


def test_text_coherence_mean_min_and_a_seeded_margin():
    rng = np.random.default_rng(4)
    sizes = [1, 2, 5, 12]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    emb = rng.normal(size=(offsets[-1], 8)).astype(np.float32)
    emb[offsets[3] : offsets[4]] = np.cumsum(rng.normal(scale=0.2, size=(12, 8)), axis=0) + 3  # a drifting sequence
    t = text_coherence(emb, offsets, shuffles=16, seed=5)
    assert t.row(0) == (None, None, None)
    for d in (1, 2, 3):
        x = emb[offsets[d] : offsets[d + 1]].astype(np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        c = [x[i] @ x[i + 1] for i in range(len(x) - 1)]
        assert t["mean_cos"][d] == pytest.approx(np.mean(c), abs=1e-9) and t["min_cos"][d] == pytest.approx(min(c), abs=1e-9)
    # Two steps: every order has the same neighbours, so there is no order test (it was 0 +- one
    # ulp, which a `margin > 0` filter read as a verdict, dropping most 2-step documents).
    assert t["margin"][1] is None and t["mean_cos"][1] is not None
    assert t["margin"][3] > 0  # the drifting sequence beats its shuffles
    assert text_coherence(emb, offsets, shuffles=16, seed=5, threads=1).equals(t)
    assert not text_coherence(emb, offsets, shuffles=16, seed=6).equals(t)
