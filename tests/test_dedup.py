"""Dedup core: exact keys against xxhash/blake3, MinHash bit-identical to datasketch (both
schemes) on real English text, LSH parameters as datasketch chooses them, LSH recall and
false clusters on planted duplicates, bad input."""

from __future__ import annotations

import importlib
import inspect
import json
import random

import blake3 as blake3_ref
import datasketch
import numpy as np
import polars as pl
import pytest
import xxhash
from datasketch.lsh import _optimal_param

import interleaf
import interleaf.polars as ilp
from interleaf.dedup import (
    MinHasher,
    blake3,
    datasketch_permutations,
    lsh_clusters,
    lsh_params,
    normalized_text_hash,
    shingles,
    xxh3_128,
)

STDLIB_MODULES = (
    "argparse asyncio bisect calendar collections configparser contextlib csv dataclasses datetime "
    "decimal difflib email enum fractions functools gzip hashlib heapq http.client inspect io "
    "ipaddress itertools json locale logging math operator os pathlib pickle pprint queue random re "
    "sched selectors shutil smtplib socket sqlite3 statistics string struct subprocess tarfile "
    "tempfile textwrap threading time timeit traceback types typing unittest urllib.request uuid "
    "warnings weakref xml.etree.ElementTree zipfile"
).split()


def english_paragraphs(limit: int = 400) -> list[str]:
    """Real English prose found on every machine with CPython: docstrings of standard library
    modules and their functions and classes, split into paragraphs of at least 12 words."""
    out: list[str] = []
    for name in STDLIB_MODULES:
        mod = importlib.import_module(name)
        docs = [inspect.getdoc(mod) or ""]
        docs += [inspect.getdoc(obj) or "" for _, obj in sorted(vars(mod).items()) if inspect.isfunction(obj) or inspect.isclass(obj)]
        for d in docs:
            for para in d.split("\n\n"):
                if len(para.split()) >= 12 and para not in out:
                    out.append(para)
        if len(out) >= limit:
            break
    return out[:limit]


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    texts = english_paragraphs()
    assert len(texts) >= 200
    return texts


# ---------------------------------------------------------------------------- exact keys


def test_xxh3_128_and_blake3_match_their_reference_packages(sample_images):
    items = [b"", b"abc", "naïve café".encode(), *sample_images.values()]
    assert xxh3_128(items).to_list() == [xxhash.xxh3_128_hexdigest(i) for i in items]
    assert blake3(items).to_list() == [blake3_ref.blake3(i).hexdigest() for i in items]
    assert xxh3_128(["naïve café"]).to_list() == [xxhash.xxh3_128_hexdigest("naïve café".encode())]
    # Columns in, columns out: a Binary Series is read in place; null stays null.
    col = pl.Series("b", [*items, None], dtype=pl.Binary)
    assert xxh3_128(col).to_list() == [xxhash.xxh3_128_hexdigest(i) for i in items] + [None]


def test_normalized_text_hash_folds_width_case_space_and_optionally_punctuation():
    a, b, c = normalized_text_hash(["Ｔｈｅ  Cat\n sat.", "the cat sat.", "the cat sat"])
    assert a == b != c
    a, c = normalized_text_hash(["Ｔｈｅ  Cat\n sat.", "the cat sat"], strip_punctuation=True)
    assert a == c


def test_normalized_text_hash_equals_python_nfkc_lower_split(paragraphs):
    """Against Python's own NFKC, lower() and split() (ASCII, text already in NFKC and text that
    is not take different paths), on real paragraphs and the hard cases."""
    import unicodedata

    hard = ["Ｔｈｅ  Cat", "ﬁne ﬂour", "Ⅻ o'clock", "ǅemal", "İstanbul", "ΣΊΣΥΦΟΣ", "café crème", "Straße", "e\u0301te\u0301", "①②", "a\x1fb\u00a0c\u3000d", "", "   ", "one", "ÅNGSTRÖM ＡＢＣ", "ΣΑΣ ΣΑΣ. ΟΔΟΣ", "a\u3000\u0301b \u0301", "x ¨y ﬁ\u00a0ﬂ", "ᄀ ᅡ 가", "\u00a8\u0301 İ\u0307"]
    # And random strings of the characters where word-by-word NFKC and lower-casing could
    # differ from the whole text's: blanks, combining marks, compatibility forms, sigma, jamo.
    import random

    rng = random.Random(7)
    alphabet = list("aZ Σσς.'") + ["\u00a0", "\u3000", "\x1f", "\u2028", "\u0301", "\u0308", "\u0345", "\u00a8", "ﬁ", "Ⅻ", "Ｔ", "İ", "ᄀ", "ᅡ", "ᆨ", "\u0f73", "㍱", "ǅ"]
    randoms = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(5000)]
    texts = paragraphs[:300] + hard + randoms
    want = [xxhash.xxh3_128_hexdigest(" ".join(unicodedata.normalize("NFKC", t).lower().split()).encode()) for t in texts]
    got = normalized_text_hash(texts).to_list()
    assert [t for t, g, w in zip(texts, got, want, strict=True) if g != w] == []


# ---------------------------------------------------------------------------- shingles


def python_word_shingles(text: str, n: int) -> list[str]:
    w = text.split()
    grams = [" ".join(w[i : i + n]) for i in range(len(w) - n + 1)] if len(w) >= n else ([" ".join(w)] if w else [])
    return list(dict.fromkeys(grams))


def test_word_shingles_match_python_split_and_join(paragraphs):
    for t in paragraphs[:100] + ["a\x1fb\u00a0c d e f", "one", "", "  \n "]:
        assert shingles(t, 5) == python_word_shingles(t, 5)
        assert shingles(t, 3) == python_word_shingles(t, 3)


def test_char_shingles_are_code_point_ngrams():
    assert shingles("naïve", 3, unit="char") == ["naï", "aïv", "ïve"]
    assert shingles("ab", 3, unit="char") == ["ab"]
    assert shingles("", 3, unit="char") == []


# ---------------------------------------------------------------------------- datasketch identity


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_permutations_equal_datasketch(scheme):
    for num_perm, seed in ((128, 1), (64, 42), (256, 7)):
        ref = datasketch.MinHash(num_perm=num_perm, seed=seed, scheme=scheme).permutations
        a, b = datasketch_permutations(num_perm, seed, scheme)
        assert np.array_equal(np.asarray(ref[0]), a) and np.array_equal(np.asarray(ref[1]), b)


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("n,unit", [(5, "word"), (3, "char"), (40, "char")])
def test_datasketch_mode_is_bit_identical(paragraphs, scheme, n, unit):
    # Repeated shingles (each hashed once per window now, not once per distinct shingle) and
    # texts shorter than n, multi-byte code points included.
    texts = paragraphs[:150] + ["", "word", "two words", "ab" * 300, "naïve café " * 20, "日本語のテキスト"]
    sigs = MinHasher(num_perm=128, n=n, unit=unit, seed=1, mode="datasketch", scheme=scheme, threads=2).signatures(texts)
    assert sigs.shape == (len(texts), 128) and sigs.dtype == np.uint32
    for text, row in zip(texts, sigs):
        m = datasketch.MinHash(num_perm=128, seed=1, scheme=scheme)
        m.update_batch([s.encode("utf-8") for s in shingles(text, n, unit)])
        assert np.array_equal(m.hashvalues, row), text[:60]


def test_threads_do_not_change_signatures(paragraphs):
    one = MinHasher(threads=1).signatures(paragraphs)
    two = MinHasher(threads=2).signatures(paragraphs)
    assert np.array_equal(one, two)


def test_fast_mode_estimates_jaccard_like_datasketch(paragraphs):
    rng = random.Random(0)
    pairs, exact = [], []
    for t in paragraphs[:120]:
        words = t.split()
        for i in rng.sample(range(len(words)), k=max(1, len(words) // 10)):
            words[i] = "zzz" + str(rng.random())
        u = " ".join(words)
        a, b = set(shingles(t, 3)), set(shingles(u, 3))
        pairs.append((t, u))
        exact.append(len(a & b) / len(a | b))
    m = MinHasher(num_perm=256, n=3)
    sa = m.signatures([p[0] for p in pairs])
    sb = m.signatures([p[1] for p in pairs])
    est = (sa == sb).mean(axis=1)
    err = np.abs(est - np.array(exact))
    assert err.mean() < 0.03  # standard error of a 256-permutation estimate is <= 0.031


# ---------------------------------------------------------------------------- LSH


@pytest.mark.parametrize("num_perm", [16, 64, 128])
def test_lsh_params_equal_datasketch(num_perm):
    for t in (0.3, 0.5, 0.7, 0.8, 0.9):
        assert lsh_params(t, num_perm) == _optimal_param(t, num_perm, 0.5, 0.5), (t, num_perm)
    assert lsh_params(0.8, 128, 0.3, 0.7) == _optimal_param(0.8, 128, 0.3, 0.7)


def plant(paragraphs, seed=0):
    """Base documents plus near-duplicates with one word in ``k`` replaced (known Jaccard) and
    the exact Jaccard of every planted pair."""
    rng = random.Random(seed)
    texts, planted = list(paragraphs), []
    for i, t in enumerate(paragraphs[:150]):
        words = t.split()
        for j in range(0, len(words), 25):  # ~4% of the words -> Jaccard of 5-shingles ~0.8
            words[j] = f"planted{rng.random():.6f}"
        texts.append(" ".join(words))
        a, b = set(shingles(t)), set(shingles(texts[-1]))
        planted.append((i, len(texts) - 1, len(a & b) / len(a | b)))
    return texts, planted


def test_lsh_recall_and_false_clusters_on_planted_duplicates(paragraphs):
    texts, planted = plant(paragraphs)
    sigs = MinHasher(num_perm=128).signatures(texts)
    reps, stats = lsh_clusters(sigs, threshold=0.7)
    high = [(i, j) for i, j, jac in planted if jac >= 0.85]
    assert len(high) >= 30
    recall = np.mean([reps[i] == reps[j] for i, j in high])
    assert recall >= 0.95, recall
    # False clusters: base paragraphs (all distinct) put together with each other.
    base = reps[: len(paragraphs)]
    sets = [set(shingles(t)) for t in paragraphs]
    false = sum(
        1
        for i in range(len(paragraphs))
        if base[i] != i and len(sets[i] & sets[base[i]]) / len(sets[i] | sets[base[i]]) < 0.5
    )
    assert false / len(paragraphs) <= 0.01
    assert stats["bands"] * stats["rows"] <= 128


def test_exact_verification_rejects_pairs_below_threshold(paragraphs):
    texts, planted = plant(paragraphs)
    sigs = MinHasher(num_perm=128).signatures(texts)
    loose, _ = lsh_clusters(sigs, threshold=0.5, bands=32, rows=2)
    strict, _ = lsh_clusters(sigs, threshold=0.5, bands=32, rows=2, verify="exact", texts=texts)
    sets = [set(shingles(t)) for t in texts]
    joined_loose = int((loose != np.arange(len(texts))).sum())
    joined_strict = int((strict != np.arange(len(texts))).sum())
    assert joined_strict <= joined_loose
    for i, j, jac in planted:
        if jac >= 0.5:
            assert strict[i] == strict[j]
    lonely = [i for i, r in enumerate(strict) if r != i and len(sets[i] & sets[r]) / len(sets[i] | sets[r]) < 0.5]
    # Chains can join i to r through a third document; each direct pair passed the bar.
    assert len(lonely) <= 2


def test_ranking_chooses_the_representative():
    sigs = MinHasher(num_perm=64).signatures(["a b c d e f g h"] * 3 + ["x y z"])
    assert lsh_clusters(sigs)[0].tolist() == [0, 0, 0, 3]
    # The highest score is kept, as semantic() keeps the best-ranked; ties: the first row.
    assert lsh_clusters(sigs, ranking=[1.0, 3.0, 2.0, 9.0])[0].tolist() == [1, 1, 1, 3]
    assert lsh_clusters(sigs, ranking=[2.0, 2.0, -np.inf, 0.0])[0].tolist() == [0, 0, 0, 3]


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="num_perm"):
        MinHasher(num_perm=0)
    with pytest.raises(ValueError, match="mode"):
        MinHasher(mode="quick")
    with pytest.raises(ValueError, match="unit"):
        shingles("a b", 2, unit="byte")
    with pytest.raises(ValueError, match="2-D"):
        lsh_clusters(np.zeros(5, dtype=np.uint32))
    with pytest.raises(ValueError, match="bands \\* rows"):
        lsh_clusters(np.zeros((2, 8), dtype=np.uint32), bands=4, rows=4)
    with pytest.raises(ValueError, match="needs texts"):
        lsh_clusters(np.zeros((2, 8), dtype=np.uint32), verify="exact")


def test_empty_and_one_word_texts():
    sigs = MinHasher(num_perm=32).signatures(["", "word", "word", ""])
    assert (sigs[0] == 2**32 - 1).all()
    assert np.array_equal(sigs[1], sigs[2])
    reps, _ = lsh_clusters(sigs, threshold=0.8)
    assert reps[2] == 1 and reps[3] == 0  # empty texts cluster together, as in datasketch
    # Against datasketch's MinHashLSH itself: each text's candidates there are its cluster here.
    texts = ["", "word", "word", "", "two words", "two words", "three words here", "one"]
    sigs = MinHasher(num_perm=128, seed=1, mode="datasketch").signatures(texts)
    reps, _ = lsh_clusters(sigs, threshold=0.8)
    lsh = datasketch.MinHashLSH(threshold=0.8, num_perm=128)
    mins = []
    for i, t in enumerate(texts):
        m = datasketch.MinHash(num_perm=128, seed=1)
        m.update_batch([x.encode("utf-8") for x in shingles(t, 5, "word")])
        assert np.array_equal(m.hashvalues, sigs[i])
        lsh.insert(str(i), m)
        mins.append(m)
    for i, m in enumerate(mins):
        assert {int(k) for k in lsh.query(m)} == {j for j in range(len(texts)) if reps[j] == reps[i]}, texts[i]


# ---------------------------------------------------------------------------- polars


def test_polars_minhash_equals_minhasher_in_streaming(paragraphs):
    df = pl.DataFrame({"t": paragraphs[:50] + [None]})
    out = df.lazy().select(ilp.minhash("t", num_perm=64, mode="datasketch", scheme="legacy")).collect(engine="streaming")
    ref = MinHasher(num_perm=64, mode="datasketch", scheme="legacy").signatures(paragraphs[:50])
    assert np.array_equal(np.array(out.get_column("t").to_list()[:50], dtype=np.uint32), ref)
    assert out.get_column("t")[50] is None


def test_polars_hamming():
    df = pl.DataFrame({"a": [0b1011, 0, None], "b": [0b0001, 2**64 - 1, 1]}, schema={"a": pl.UInt64, "b": pl.UInt64})
    assert df.select(ilp.hamming("a", "b")).to_series().to_list() == [2, 64, None]


# ---------------------------------------------------------------------------- dataset level


def test_dedup_command_finds_planted_duplicates_and_writes_the_rest(tmp_path, paragraphs):
    import json as _json

    from interleaf.cli import main

    texts, planted = plant(paragraphs[:60])
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(_json.dumps({"id": f"d{i}", "caption": t, "image": "https://e/x.jpg"}) + "\n" for i, t in enumerate(texts)))
    assert main(["dedup", str(src), "--out", str(tmp_path / "mh"), "--threshold", "0.7", "--write", "jsonl", "--quiet"]) == 0
    dup = pl.read_parquet(tmp_path / "mh" / "duplicates.parquet")
    summary = _json.loads((tmp_path / "mh" / "summary.json").read_text())
    pairs = {(f"d{i}", f"d{j}") for i, j, jac in planted if jac >= 0.85}
    found = {(r["representative"], r["doc_id"]) for r in dup.iter_rows(named=True) if r["representative"] != r["doc_id"]}
    assert len(pairs & found) >= 0.95 * len(pairs)
    assert set(dup.columns) == {"doc_id", "doc_index", "cluster_id", "representative", "method", "score"}
    assert (dup.get_column("score") > 0.5).all()
    kept = pl.concat(list(interleaf.read(tmp_path / "mh" / "dedup")))
    assert kept.get_column("doc_id").n_unique() == summary["kept_documents"] == len(texts) - summary["duplicate_documents"]
    assert not set(kept.get_column("doc_id")) & {r["doc_id"] for r in dup.iter_rows(named=True) if r["representative"] != r["doc_id"]}


def test_exact_dedup_on_images_of_the_sample(sample_dir, tmp_path):
    from interleaf.dedup import deduplicate

    s = deduplicate(sample_dir / "pairs.jsonl", tmp_path / "ex", "exact", on="image")
    dup = pl.read_parquet(tmp_path / "ex" / "duplicates.parquet")
    # pair-dup-1 and pair-dup-2 reuse the images of pair-0003 and pair-0002.
    assert set(dup.filter(pl.col("doc_id") != pl.col("representative")).get_column("doc_id")) == {"pair-dup-1", "pair-dup-2"}
    assert s["duplicate_documents"] == 2


def test_documents_with_nothing_to_hash_duplicate_nothing(sample_dir, tmp_path):
    # On text, documents without text have no key (they are not one cluster of "empty text"),
    # blank texts (whitespace only) included, and punctuation-only ones with strip_punctuation;
    # on image, documents without an image with bytes have none (an empty file, what a failed
    # download leaves, included); minhash likewise. The images are read (under the file's
    # folder), so the image keys are real.
    import shutil

    from interleaf.dedup import deduplicate

    for name, src_name in (("coffee.jpg", "coffee.jpg"), ("coffee-copy.jpg", "coffee.jpg"), ("chelsea.jpg", "chelsea.jpg")):
        shutil.copy(sample_dir / "images" / src_name, tmp_path / name)
    for name in ("zero-1.jpg", "zero-2.jpg"):
        (tmp_path / name).write_bytes(b"")
    recs = [
        {"id": "img-a", "image": "coffee.jpg", "caption": ""},
        {"id": "img-b", "image": "chelsea.jpg", "caption": " "},
        {"id": "img-a2", "image": "coffee-copy.jpg", "caption": "\n\t"},
        {"id": "txt-a", "caption": "a tabby cat with green eyes and long white whiskers sitting on a mat"},
        {"id": "txt-b", "caption": "an espresso in a red cup on a wooden table next to a silver spoon today"},
        {"id": "txt-a2", "caption": "a tabby cat with green eyes and long white whiskers sitting on a mat"},
        {"id": "blank-1", "caption": "\u3000 "},
        {"id": "blank-2", "caption": "  "},
        {"id": "zero-1", "image": "zero-1.jpg", "caption": "the first caption of an empty image file here"},
        {"id": "zero-2", "image": "zero-2.jpg", "caption": "another caption, of the second empty image file"},
        {"id": "punct-1", "caption": "..."},
        {"id": "punct-2", "caption": "?!"},
    ]
    src = tmp_path / "mixed.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    texts, images = {("txt-a2", "txt-a")}, {("img-a2", "img-a")}
    cases = [("exact", "text", False, texts), ("minhash", "text", False, texts), ("exact", "image", False, images), ("exact", "all", False, texts | images), ("exact", "text", True, texts)]
    for method, on, strip, expected in cases:
        out = tmp_path / f"{method}-{on}-{strip}"
        s = deduplicate(src, out, method, on=on, **({"strip_punctuation": True} if strip else {}))
        dup = pl.read_parquet(out / "duplicates.parquet")
        pairs = {(r["doc_id"], r["representative"]) for r in dup.iter_rows(named=True) if r["doc_id"] != r["representative"]}
        assert pairs == expected, (method, on, strip, pairs)
        assert s["duplicate_documents"] == len(expected), (method, on)


def test_deduplicate_refuses_an_input_named_twice(sample_dir, tmp_path):
    """Every record of a file named twice would be its own exact duplicate (the CLI refused
    it; the API reported the whole file as duplicating itself)."""
    from interleaf.dedup import deduplicate

    src = str(sample_dir / "pairs.jsonl")
    with pytest.raises(ValueError, match="is named twice"):
        deduplicate([src, src], tmp_path / "out", "exact")
    assert not (tmp_path / "out").exists()
