"""The bundled presets carry the published numbers (/work/shared/METHODS.md §6 and §8): each
filter expression is parsed from the loaded recipe and evaluated, as the pipeline does
(``pl.sql_expr``), on values at and just past its bound."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import batch_of

from interleaf.pipeline import build_signal
from interleaf.recipes import FilterSpec, load
from interleaf.signals import COMMON_WORD_RULES, DOCUMENT_RULES, compute


def passes(f: FilterSpec, **columns: list) -> list[bool | None]:
    """The filter's verdict on each row of ``columns`` (the pipeline compiles ``expr`` with
    ``pl.sql_expr``)."""
    assert f.expr is not None and f.top_fraction is None
    return pl.DataFrame(columns).select(pl.sql_expr(f.expr).alias("ok")).get_column("ok").to_list()


def roots(f: FilterSpec) -> list[str]:
    assert f.expr is not None
    return list(dict.fromkeys(pl.sql_expr(f.expr).meta.root_names()))


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


def above(x: float) -> float:
    return float(np.nextafter(x, np.inf))


def test_obelics_document_filters_are_the_document_rules_and_1_to_30_images():
    """METHODS §8: the document checks (words 10-2000, char repetition <= 0.1, word repetition
    <= 0.2, special characters <= 0.275, stop words >= 0.35, flagged words <= 0.01, punctuation
    >= 0.03), 1-30 images, common words >= 0.9 and perplexity <= 1500, bounds inclusive."""
    r = load("obelics")
    assert r.name == "obelics"
    doc = r.filters.doc
    by_column = {tuple(roots(f)): name for name, f in doc.items()}
    assert DOCUMENT_RULES == {
        "n_words": (10, 2000),
        "char_repetition": (None, 0.1),
        "word_repetition": (None, 0.2),
        "special_char_ratio": (None, 0.275),
        "stopword_ratio": (0.35, None),
        "flagged_word_ratio": (None, 0.01),
        "punctuation_ratio": (0.03, None),
    }
    for stat, (lo, hi) in DOCUMENT_RULES.items():
        col = f"doc_text_{stat}"
        f = doc[by_column[(col,)]]
        step_down, step_up = (lambda v: v - 1, lambda v: v + 1) if stat == "n_words" else (below, above)
        if lo is not None:
            assert passes(f, **{col: [step_down(lo), lo]}) == [False, True], (stat, f.expr)
        if hi is not None:
            assert passes(f, **{col: [hi, step_up(hi)]}) == [True, False], (stat, f.expr)
    assert passes(doc["images"], doc_images=[0, 1, 30, 31]) == [False, True, True, False]
    assert passes(doc["perplexity"], doc_lm_perplexity=[1500.0, above(1500.0)]) == [True, False]
    # OBELICS's config: common_word_ratio_doc_level_min_cutoff 0.90 (paragraphs 0.8, in Rust).
    assert COMMON_WORD_RULES == {"paragraph": 0.8, "document": 0.9}
    assert passes(doc["common_words"], doc_text_common_word_ratio=[0.9, below(0.9)]) == [True, False]
    assert "words" in r.models
    assert r.signals["doc_lm"].max_perplexity == 1500.0
    # The document language id: fastText's label of the lower-cased surviving paragraphs is
    # English with probability >= 0.8 (OBELICS's check_lang_id; optional, needs a model).
    assert passes(doc["language"], doc_lang_lang=["en", "en", "fr"], doc_lang_score=[0.8, below(0.8), 0.99]) == [True, False, False]
    lang = r.signals["doc_lang"]
    assert (lang.type, lang.level, lang.paragraphs, lang.lowercase, lang.optional) == ("language", "doc", True, True, True)
    # OBELICS's order: the image count, then the text checks in the order of DOCUMENT_RULES,
    # then the common words, the language id and the perplexity.
    assert list(doc) == ["images", *[by_column[(f"doc_text_{s}",)] for s in DOCUMENT_RULES], "common_words", "language", "perplexity"]
    assert roots(r.filters.node["image_rules"]) == ["image_obelics_ok"]
    assert r.signals["image"].type == "image" and r.signals["text"].paragraphs and r.signals["doc_text"].paragraphs


@pytest.mark.parametrize(("name", "radius"), [("mmc4", 5), ("mmc4-core", 10)])
def test_mmc4_presets_use_phash_per_document_and_clip_threshold_0_15(name, radius):
    """METHODS §6 (MMC4): png/jpeg, min side 150, aspect [0.5, 2], pHash radius 5 within a
    document (the core subset's stricter dedup: findimagedupes at 10, the paper's footnote 14);
    an image below 0.15 at best is dropped (exactly 0.15 is kept)."""
    r = load(name)
    clip = r.signals["clip_alignment"]
    assert (clip.type, clip.method, clip.threshold) == ("clip_alignment", "mmc4", 0.15)
    assert [(d.name, d.method, d.scope, d.radius, d.before_filters) for d in r.dedup] == [("phash", "phash", "document", radius, True)]
    assert roots(r.filters.node["image_rules"]) == ["image_mmc4_ok"]
    assignment = r.filters.node["assignment"]
    assert assignment.on_null == "drop"
    assert passes(assignment, clip_alignment_score=[0.15, below(0.15), below(0.15)], clip_alignment_text_pos=[None, None, 3]) == [True, False, True]


def test_mmc4_core_keeps_4_to_40_sentences_2_to_15_images_and_75_percent_strong():
    """METHODS §6: MMC4 core: 4-40 sentences, 2-15 images, >= 75% of the assigned images with
    similarity > 0.25 (bounds inclusive)."""
    doc = load("mmc4-core").filters.doc
    assert passes(doc["sentences"], doc_texts=[3, 4, 40, 41]) == [False, True, True, False]
    assert passes(doc["images"], doc_images=[1, 2, 15, 16]) == [False, True, True, False]
    assert passes(doc["strong_images"], clip_alignment_score=[0.26, 0.26, 0.26, 0.25, None]) == [True]
    assert passes(doc["strong_images"], clip_alignment_score=[0.26, 0.26, 0.25, 0.25, None]) == [False]


@pytest.mark.parametrize("name", ["datacomp", "pairs", "pairs-basic"])
def test_pair_presets_apply_datacomps_basic_filter(name):
    """METHODS §6 (DataComp): ``len(caption.split()) > 2``, ``len(caption) > 5``, min side >=
    200, max/min <= 3; CLIP score >= 0.28 where a CLIP model is part of the recipe."""
    r = load(name)
    doc = r.filters.doc
    assert passes(doc["caption_words"], caption_words=[2, 3]) == [False, True]
    assert passes(doc["caption_chars"], caption_chars=[5, 6]) == [False, True]
    assert roots(doc["image_size"]) == ["image_datacomp_ok"]
    assert passes(doc["pair"], doc_images=[1, 1, 2, 0], doc_texts=[1, 0, 1, 1]) == [True, False, False, False]
    if name == "pairs-basic":
        assert "clip_score" not in doc and "clip_alignment" not in r.signals
    else:
        assert passes(doc["clip_score"], clip_alignment_score=[0.28, below(0.28)]) == [True, False]
        assert r.signals["clip_alignment"].method == "pair"
    # fastText's top label English, no confidence cutoff, on the caption as written (optional:
    # skipped without a language-id model).
    assert passes(doc["english"], language_lang=["en", "fr", None]) == [True, False, None]
    lang = r.signals["language"]
    assert (lang.type, lang.level, lang.paragraphs, lang.lowercase, lang.optional) == ("language", "doc", False, False, True)
    if name != "datacomp":
        assert [(d.name, d.method, d.radius) for d in r.dedup] == [("exact", "exact", 5), ("phash", "phash", 5)]
        assert r.dedup[1].scope == "dataset"
    # The recipe's own caption signal on real captions: "A man" (2 words), "Ab cd" and "A b c"
    # (5 characters) are dropped, "A tall man" is kept.
    caps = ["A man", "A tall man", "Ab cd", "A b c"]
    sig = build_signal("caption", r.signals["caption"])
    _, docs = compute(batch_of([[("text", c)] for c in caps]), [sig])
    words, chars = docs.get_column("caption_words").to_list(), docs.get_column("caption_chars").to_list()
    assert (words, chars) == ([2, 3, 2, 3], [5, 10, 5, 5])
    ok = [a and b for a, b in zip(passes(doc["caption_words"], caption_words=words), passes(doc["caption_chars"], caption_chars=chars), strict=True)]
    assert ok == [False, True, False, False]


def test_comm_drops_step_pairs_below_0_10():
    """METHODS §1 (CoMM): image-text alignment pairs below 0.10 are dropped."""
    r = load("comm")
    assert r.signals["clip_alignment"].method == "step"
    assert passes(r.filters.node["alignment"], clip_alignment_score=[0.10, below(0.10)]) == [True, False]
