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
from conftest import batch_of
from obelics_reference import FLAGGED, STOPWORDS, ref_char_repetition, ref_paragraph_filter, ref_punctuation, ref_ratio, ref_special, ref_word_repetition, ref_words
from scipy.optimize import linear_sum_assignment
from test_models import EMBEDDER_DIR, LM_DIR

from interleaf import models
from interleaf import schema as S
from interleaf.signals import (
    CaptionStats,
    ClipAlignment,
    Context,
    Perplexity,
    TextCoherence,
    TextStats,
    compute,
    linear_assignment,
    mmc4_assign,
    mmc4_assign_documents,
    obelics_paragraphs,
    sequence_consistency,
    size_rules,
    text_coherence,
    text_stats,
)


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
    # OBELICS's end-of-document marker paragraph is kept without checks, alone or at the end.
    docs += ["END_OF_DOCUMENT_TOKEN_TO_BE_REPLACED", docs[0] + "\n\nEND_OF_DOCUMENT_TOKEN_TO_BE_REPLACED", "END_OF_DOCUMENT_TOKEN_TO_BE_REPLACED "]
    got = obelics_paragraphs(docs)
    assert got.get_column("text")[-3] == "END_OF_DOCUMENT_TOKEN_TO_BE_REPLACED" and got.get_column("text")[-1] is None
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
    # A float64 matrix is used as given: threshold and assignment in float64, not rounded.
    for shape in [(3, 30), (12, 4), (15, 15)]:
        for _ in range(10):
            sim = rng.uniform(-0.1, 0.45, size=shape)
            assert np.array_equal(mmc4_assign(sim), ref_mmc4(sim)), shape
    assert mmc4_assign(np.array([[0.149999999, 0.0]])).tolist() == [-1]
    assert mmc4_assign(np.array([[0.149999999, 0.0]], dtype=np.float32)).tolist() == [0]  # float32 rounds it to 0.15
    assert mmc4_assign(np.array([[0.3, 0.30000001], [0.30000001, 0.3]])).tolist() == [1, 0]
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


def test_size_rules_sit_exactly_on_the_published_bounds():
    """METHODS §6/§8: MMC4 png/jpeg, min side 150, aspect in [0.5, 2]; OBELICS each side in
    [150, 20000], aspect in [0.5, 2], jpeg/png/webp; DataComp min side >= 200, max/min <= 3.
    Every bound is inclusive; an unknown or zero size gives null."""
    rows = [
        # (width, height, format, mmc4_ok, obelics_ok, datacomp_ok)
        (150, 150, "PNG", True, True, False),
        (149, 150, "PNG", False, False, False),
        (150, 149, "JPEG", False, False, False),
        (300, 150, "JPEG", True, True, False),  # aspect exactly 2
        (301, 150, "JPEG", False, False, False),
        (150, 300, "PNG", True, True, False),  # aspect exactly 0.5
        (150, 301, "PNG", False, False, False),
        (200, 200, "PNG", True, True, True),  # DataComp's min side exactly 200
        (199, 199, "PNG", True, True, False),
        (600, 200, "PNG", False, False, True),  # DataComp's max/min exactly 3
        (601, 200, "PNG", False, False, False),
        (200, 600, "PNG", False, False, True),
        (20000, 10000, "PNG", True, True, True),  # OBELICS's max side exactly 20000
        (20001, 10001, "PNG", True, False, True),
        (300, 300, "WEBP", False, True, True),  # MMC4: png/jpeg only
        (300, 300, "MPO", True, True, True),  # a multi-picture JPEG counts as JPEG
        (300, 300, "GIF", False, False, True),
        (300, 300, None, False, False, True),
        (0, 150, "PNG", None, None, None),
        (None, 150, "PNG", None, None, None),
    ]
    df = pl.DataFrame([r[:3] for r in rows], schema={"w": pl.UInt32, "h": pl.UInt32, "f": pl.String}, orient="row")
    got = df.select(**size_rules(pl.col("w"), pl.col("h"), pl.col("f")))
    assert got.columns == ["mmc4_ok", "obelics_ok", "datacomp_ok"]
    assert [(*r[:3], *g) for r, g in zip(rows, got.rows(), strict=True)] == rows


def test_caption_measures_are_pythons_len_and_split():
    """METHODS §6 (DataComp): ``len(caption.split()) > 2``, ``len(caption) > 5``: code points,
    not bytes, and every separator Python's ``str.split()`` splits on (U+001C-U+001F too)."""
    caps = ["日本語の文", "a\x1cb c", "A man", "x\x1fy\x1dz\u3000w\x85v\xa0u", "a\x1eb"]
    nodes, docs = compute(batch_of([[("text", c), ("image", b"x")] for c in caps]), [CaptionStats(), CaptionStats("node", name="node")])
    assert docs.get_column("caption_words").to_list() == [len(c.split()) for c in caps] == [1, 3, 2, 6, 2]
    assert docs.get_column("caption_chars").to_list() == [len(c) for c in caps] == [5, 5, 5, 11, 3]
    texts = nodes.filter(pl.col(S.POS) == 0)
    assert texts.get_column("node_words").to_list() == [1, 3, 2, 6, 2]
    assert texts.get_column("node_chars").to_list() == [5, 5, 5, 11, 3]


def test_document_text_stats_get_no_short_paragraph_punctuation_pass():
    """METHODS §8: only a paragraph with fewer than 12 tokens gets punctuation ratio 1.0; the
    document text of the same 11 words without punctuation scores 0 (and fails >= 0.03)."""
    text = "one two three four five six seven eight nine ten eleven"
    nodes, docs = compute(batch_of([[("text", text), ("image", b"x")]]), [TextStats(), TextStats("doc", name="doc_text")])
    assert nodes.get_column("text_punctuation_ratio").to_list() == [1.0, None]
    assert docs.get_column("doc_text_punctuation_ratio").to_list() == [0.0]
    assert docs.get_column("doc_text_n_words").to_list() == [11]


def test_clip_alignment_assigns_from_mmc4s_threshold_of_0_15_by_default():
    """METHODS §6 (MMC4): an image whose best similarity is below 0.15 is dropped before the
    assignment; the default threshold is that number."""
    assert ClipAlignment().threshold == 0.15
    n = "clip_alignment"
    nodes = pl.DataFrame(
        {
            S.DOC_INDEX: [0, 0, 1, 1],
            S.POS: [0, 1, 0, 1],
            S.KIND: ["text", "image", "text", "image"],
            f"{n}_score": [None] * 4,
            f"{n}_text_pos": [None] * 4,
            f"{n}_error": S.error_column([None] * 4),
            f"{n}_sentence_cos": [None, [0.12], None, [0.2]],
            f"{n}_sentence_pos": [None, [0], None, [0]],
        },
        schema_overrides={f"{n}_score": pl.Float32, f"{n}_text_pos": pl.Int32, f"{n}_sentence_cos": pl.List(pl.Float32), f"{n}_sentence_pos": pl.List(pl.Int32)},
    )
    got = ClipAlignment().reassign(nodes)
    assert got.get_column(f"{n}_text_pos").to_list() == [None, None, None, 0]
    assert got.get_column(f"{n}_error").struct.field("kind").to_list() == [None, "below_threshold", None, None]


def test_a_two_step_document_has_a_coherence_and_one_step_is_too_few():
    """METHODS §1 (CoMM): consecutive step cosines exist from 2 steps, so 2 steps give the
    cosines, no error, and a null margin (every order has the same neighbours); 1 is too few."""
    emb = models.load(EMBEDDER_DIR, device="cpu")
    docs = [[("text", "Mix the flour and the eggs.", 0), ("text", "Bake it for an hour.", 1)], [("text", "Only one step.", 0)], [("text", "a", 0), ("text", "b", 1), ("text", "c", 2)]]
    _, out = compute(batch_of(docs), [TextCoherence()], Context(text_embedder=emb))
    assert out.get_column("coherence_steps").to_list() == [2, 1, 3]
    assert out.get_column("coherence_error").struct.field("kind").to_list() == [None, "too_few_steps", None]
    assert out.get_column("coherence_mean_cos")[0] is not None and out.get_column("coherence_margin")[0] is None


def test_perplexity_exactly_at_its_maximum_passes():
    """METHODS §8: max limits fail on ``>`` (OBELICS's perplexity <= 1500, the default)."""
    assert Perplexity().max_perplexity == Perplexity("doc").max_perplexity == 1500.0
    lm = models.load(LM_DIR, device="cpu")
    b = batch_of([[("text", "The cat sat on the mat."), ("text", "It was warm.")]])
    nodes, docs = compute(b, [Perplexity(name="n"), Perplexity("doc", name="d")], Context(lm=lm))
    pn, pd = nodes.get_column("n_perplexity")[0], docs.get_column("d_perplexity")[0]
    below_n, below_d = float(np.nextafter(pn, 0)), float(np.nextafter(pd, 0))
    sigs = [Perplexity(name="at", max_perplexity=pn), Perplexity(name="below", max_perplexity=below_n), Perplexity("doc", name="dat", max_perplexity=pd), Perplexity("doc", name="dbelow", max_perplexity=below_d)]
    nodes, docs = compute(b, sigs, Context(lm=lm))
    assert nodes.get_column("at_perplexity")[0] == pn and docs.get_column("dat_perplexity")[0] == pd
    assert (nodes.get_column("at_ok")[0], nodes.get_column("below_ok")[0]) == (True, False)
    assert docs.get_column("dat_ok").to_list() == [True] and docs.get_column("dbelow_ok").to_list() == [False]
