"""KenLM perplexity, as OBELICS's document filter computes it (``compute_perplexity_score``).

The fixture (``scripts/make_tiny_kenlm.py``) is a 3-gram KenLM model over the pieces of a
SentencePiece tokenizer, in ARPA and KenLM's binary form: the shape of CCNet's
``en.arpa.bin`` + ``en.sp.model`` that OBELICS used. OBELICS's function, transcribed in
``obelics_reference.ref_perplexity`` with its normalisation constants and run on the same files
through the kenlm and sentencepiece packages, is the oracle: interleaf's values must equal it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLE_DIR, batch_of
from obelics_reference import ref_perplexity

import interleaf
from interleaf import models
from interleaf.models.kenlm import KenLM, describe, is_kenlm, model_files, normalize
from interleaf.signals import Context, Perplexity, compute, obelics_paragraphs

kenlm = pytest.importorskip("kenlm", reason="the kenlm package (make install-test installs it)")
spm = pytest.importorskip("sentencepiece")

TINY = Path(__file__).parent / "fixtures" / "models" / "kenlm-tiny"
ARPA, BINARY, TOKENIZER = TINY / "en.arpa", TINY / "en.arpa.bin", TINY / "en.sp.model"

#: Real sentences and paragraphs, and the edge cases of OBELICS's normalisation: digits (ASCII
#: and Arabic-Indic), CCNet's Unicode punctuation, OBELICS's whitespace characters, control
#: characters and newlines (removed: paragraphs run together), one word, one character,
#: punctuation only, other scripts, emoji, a long text.
TEXTS = [
    "The museum opened a new exhibition about the history of the city and its old harbour.",
    "Start with the whole portrait: Eileen Collins stands in an orange launch and entry suit.",
    "A small boat sails across the lake.\n\nTwo children watch it from the shore.",
    "In 1998 the company had 250 employees; by 2024, about ٣٠٠٠.",
    "“Quoted” words — an em dash, an en–dash… and （fullwidth） brackets！",
    "tab\tseparated\u3000ideographic\u00a0no-break\u2009thin\ufffcobject",
    "\x00\x07 control characters \x1b[0m and \x85 C1 ones \x9f",
    "Tea",
    "a",
    "!!! ??? ...",
    "Le chat est assis sur le canapé rouge dans le salon.",
    "東京の公園で遊ぶ子供たちの写真",
    "emoji 🐱🐶 party 🎉",
    "  leading and trailing spaces  ",
    " ".join(["The river flows north through the valley before it reaches the sea."] * 300),
]


@pytest.fixture(scope="module")
def reference():
    return spm.SentencePieceProcessor(model_file=str(TOKENIZER)), kenlm.Model(str(ARPA))


@pytest.mark.parametrize("lm_file", [ARPA, BINARY], ids=["arpa", "binary"])
def test_perplexity_equals_obelicss_function(lm_file, reference):
    """Exactly OBELICS's rounded value on every text, from the ARPA file and from KenLM's
    binary form of it; ``nll`` is the unrounded value (nats per token)."""
    sp, lm = reference
    got = KenLM(lm_file).perplexity(TEXTS)
    want = [ref_perplexity(t, sp, lm) for t in TEXTS]
    assert got.get_column("perplexity").to_list() == want
    assert got.get_column("error").null_count() == len(TEXTS)
    import math

    assert [round(math.exp(v), 1) for v in got.get_column("nll").to_list()] == pytest.approx(want, abs=0.051)
    # tokens: the pieces + 1 (</s>) of the one line normalisation leaves.
    pieces = [len(sp.encode_as_pieces(normalize(t))) + 1 for t in TEXTS]
    assert got.get_column("tokens").to_list() == pieces
    assert got.get_column("perplexity")[0] < got.get_column("perplexity")[11]  # English below Japanese


def test_unknown_pieces_are_scored_as_their_text_as_obelics_reads_them(tmp_path):
    """``encode_as_pieces`` gives the text of a piece SentencePiece does not know ("東京"), not
    ``<unk>``; a KenLM model trained on such pieces knows them. A model that does (the fixture
    with "東京" added as a word) scores them as OBELICS does."""
    arpa = ARPA.read_text(encoding="utf-8").replace("ngram 1=311", "ngram 1=312").replace("\\1-grams:\n", "\\1-grams:\n-1.5\t東京\t0\n", 1)
    (tmp_path / "en.arpa").write_text(arpa, encoding="utf-8")
    shutil.copy(TOKENIZER, tmp_path / "en.sp.model")
    sp, lm = spm.SentencePieceProcessor(model_file=str(TOKENIZER)), kenlm.Model(str(tmp_path / "en.arpa"))
    texts = ["東京 is a city", "a city 東"]
    want = [ref_perplexity(t, sp, lm) for t in texts]
    assert want[0] != ref_perplexity("東 is a city", sp, lm)  # the word is known: it changes the value
    assert KenLM(tmp_path / "en.arpa").perplexity(texts).get_column("perplexity").to_list() == want


def test_normalisation_is_obelicss():
    assert normalize(" In 1998, ٣ “cats”\u3000ran\n\nhome\x00. ") == 'In 0000, 0 "cats" ranhome.'
    assert normalize("\x01\n\t") == ""
    assert normalize("a—b．c") == "a - b. c"


def test_blank_texts_score_as_obelics_and_bad_values_fail_only_their_record(reference):
    """A blank text, or one that normalisation leaves empty, scores as OBELICS scores it
    (``</s>`` alone); a null or a value that is not a valid text has no perplexity and says
    why."""
    sp, lm = reference
    blank = ["", "   ", "\u2028", "\x00\x07", "\u3000"]
    got = KenLM(ARPA).perplexity(["The boat sails.", *blank, None, "caf\udce9", 42])  # type: ignore[list-item]
    assert got.get_column("perplexity").to_list()[:6] == [ref_perplexity(t, sp, lm) for t in ["The boat sails.", *blank]]
    assert got.get_column("perplexity").to_list()[6:] == [None] * 3
    assert [e and e["kind"] for e in got.get_column("error").to_list()] == [None] * 6 + ["missing_text", "bad_argument", "bad_argument"]


def test_a_perplexity_past_a_floats_range_is_inf_for_its_record_only(tmp_path):
    """A model whose <unk> is given log10 probability -20000: 10 ** 20000 overflows a float
    (OBELICS's code raises there); that text's perplexity is inf, the others are scored."""
    arpa = ARPA.read_text(encoding="utf-8")
    line = next(x for x in arpa.splitlines() if x.endswith("\t<unk>"))
    (tmp_path / "en.arpa").write_text(arpa.replace(line, "-20000\t<unk>"), encoding="utf-8")
    shutil.copy(TOKENIZER, tmp_path / "en.sp.model")
    got = KenLM(tmp_path / "en.arpa").perplexity(["The boat sails.", "東"])
    assert got.get_column("perplexity")[0] < 1000 and got.get_column("perplexity")[1] == float("inf")
    assert got.get_column("error").null_count() == 2


def test_arguments_are_checked_and_long_texts_come_in_chunks(reference, monkeypatch):
    import interleaf.models.kenlm as km

    with pytest.raises(ValueError, match="batch_size"):
        KenLM(ARPA).perplexity(["a"], batch_size=-1)
    with pytest.raises(ValueError, match="threads"):
        KenLM(ARPA, threads=-3)
    sp, lm = reference
    monkeypatch.setattr(km, "_CHUNK_CHARS", 100)  # a chunk per long text: same values
    got = KenLM(ARPA).perplexity(TEXTS, batch_size=3)
    assert got.get_column("perplexity").to_list() == [ref_perplexity(t, sp, lm) for t in TEXTS]


def test_a_new_tokenizer_beside_the_file_is_a_new_model(tmp_path):
    """load_shared (a worker's model cache) keys a KenLM file by its tokenizer too: replacing
    en.sp.model gives the new values, not the cached model's."""
    shutil.copy(BINARY, tmp_path / "en.arpa.bin")
    shutil.copy(TOKENIZER, tmp_path / "en.sp.model")
    first = models.load_shared(tmp_path / "en.arpa.bin")
    assert models.load_shared(tmp_path / "en.arpa.bin") is first
    import os

    os.utime(tmp_path / "en.sp.model", ns=(1, 1))
    assert models.load_shared(tmp_path / "en.arpa.bin") is not first


def test_model_files_pairing_and_errors(tmp_path):
    assert model_files(BINARY) == (BINARY, TOKENIZER)  # en.arpa.bin -> en.sp.model beside it
    assert model_files(ARPA) == (ARPA, TOKENIZER)
    assert model_files(TINY) == (BINARY, TOKENIZER)  # en.arpa and en.arpa.bin: the binary form
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(ARPA, two / "a.arpa")
    shutil.copy(ARPA, two / "b.arpa")
    with pytest.raises(ValueError, match="2 KenLM files"):
        model_files(two)  # which one? give the file
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(BINARY, one / "wiki.bin")
    shutil.copy(TOKENIZER, one / "tok.model")
    assert model_files(one) == (one / "wiki.bin", one / "tok.model")  # a folder: its one .model
    (one / "tok.model").unlink()
    with pytest.raises(ValueError, match="SentencePiece"):
        model_files(one)
    with pytest.raises(FileNotFoundError):
        model_files(tmp_path / "nope.arpa.bin")
    (tmp_path / "text.arpa").write_text("not an arpa file\n")
    with pytest.raises(ValueError, match="not a KenLM model"):
        model_files(tmp_path / "text.arpa")
    assert not is_kenlm(tmp_path / "text.arpa") and is_kenlm(BINARY) and is_kenlm(one)


@pytest.mark.parametrize(
    "content",
    [
        ARPA.read_bytes()[:50_000],  # truncated
        b"mmap lm http://kheafield.com/code format version 5\n\x00garbage",  # a broken binary
        b"\\data\\\nngram 1=400000000\n\n\\1-grams:\n-1\ta\n\\end\\\n",  # counts that lie
        ARPA.read_bytes().replace(b"\n-", b"\nnan-", 1),  # a number KenLM cannot read
    ],
    ids=["truncated", "binary", "counts", "number"],
)
def test_damaged_model_files_are_a_clear_error(tmp_path, content):
    bad = tmp_path / "en.arpa"
    bad.write_bytes(content)
    shutil.copy(TOKENIZER, tmp_path / "en.sp.model")
    with pytest.raises(ValueError, match="KenLM could not load it"):
        KenLM(bad)
    (tmp_path / "en.sp.model").write_bytes(b"not a sentencepiece model")
    shutil.copy(ARPA, bad)
    with pytest.raises(ValueError, match="SentencePiece could not load it"):
        KenLM(bad)


def test_without_the_packages_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "kenlm", None)
    with pytest.raises(ImportError, match=r"interleaf\[kenlm\]"):
        KenLM(BINARY)
    with pytest.raises(ImportError, match=r"interleaf\[kenlm\]"):
        interleaf.run("obelics", SAMPLE_DIR / "comm.jsonl", tmp_path / "out", format="comm", models={"lm": str(BINARY)}, progress=False)
    assert not (tmp_path / "out").exists()


def test_models_load_info_and_list(tmp_path, capsys):
    from interleaf.cli import main

    assert isinstance(models.load(BINARY), KenLM)
    assert isinstance(models.load(ARPA, kind="causal-lm"), KenLM)  # the lm slot takes either kind
    assert models.info(ARPA) | {"path": None, "tokenizer": None} == {"path": None, "tokenizer": None, "kind": "kenlm", "format": "arpa", "bytes": ARPA.stat().st_size, "order": 3, "ngrams": [311, 1575, 2051]}
    assert describe(BINARY)["format"] == "binary"
    home = tmp_path / "home"
    (home / "wiki").mkdir(parents=True)
    shutil.copy(BINARY, home / "wiki")
    shutil.copy(TOKENIZER, home / "wiki")
    assert [(r["name"], r["kind"], r["error"]) for r in models.list_models(home)] == [("wiki", "kenlm", None)]
    assert main(["models", "info", str(BINARY)]) == 0
    assert "kenlm" in capsys.readouterr().out


def test_document_level_scores_obelicss_document_text(reference):
    """With a KenLM model the document's perplexity is of its text as OBELICS builds it (the
    surviving paragraphs of its text nodes joined by blank lines), scored as one text; node
    level scores each text node."""
    sp, lm = reference
    english = "The museum opened a new exhibition about the history of the city and its old harbour. It is open every day."
    docs = [
        [("text", f"{english}\n\nBonjour"), ("image", b"x"), ("text", "The garden is open every day from nine in the morning until six in the evening, and the cafe is too.")],
        [("image", b"y")],
        [("text", "zxq vbnm qwpo lkjh asdf, ghjk tyu ertz; wqer zxcv uiop hjkl nmbv cxzq.")],
    ]
    batch = batch_of(docs)
    ctx = Context(lm=str(BINARY))
    nodes, doc = compute(batch, [Perplexity("doc", name="doc_lm", paragraphs=True), Perplexity("node", name="lm")], ctx)
    texts = batch.filter(pl.col("kind") == "text")
    kept = obelics_paragraphs(texts.get_column("text")).get_column("text").to_list()
    want0 = ref_perplexity("\n\n".join(t for t in kept[:2] if t), sp, lm)
    got = doc.get_column("doc_lm_perplexity").to_list()
    assert got[0] == want0 and got[1] is None
    assert doc.get_column("doc_lm_error").to_list()[1]["kind"] == "missing_text"
    assert got[2] is None  # its only paragraph is removed by the paragraph filter
    node_ppl = nodes.get_column("lm_perplexity").drop_nulls().to_list()  # the text nodes (image nodes: null)
    assert node_ppl == [ref_perplexity(t, sp, lm) for t in texts.get_column("text").to_list()]


def test_obelics_preset_with_a_kenlm_model(tmp_path, reference):
    """``--model lm=en.arpa.bin`` runs OBELICS's perplexity rule; the values in the attributes
    are OBELICS's for each document's text; a run asks no GPU for it."""
    sp, lm = reference
    out = tmp_path / "out"
    summary = interleaf.run("obelics", SAMPLE_DIR / "comm.jsonl", out, format="comm", models={"lm": str(BINARY)}, progress=False)
    assert "doc_lm" not in json.dumps(summary.data.get("skipped"))
    got = pl.read_parquet(out / "attributes" / "doc_lm" / "comm.parquet").sort("doc_index")
    batch = pl.concat(list(interleaf.read(SAMPLE_DIR / "comm.jsonl", format="comm")))
    want = []
    for _, d in batch.filter(pl.col("kind") == "text").sort("doc_index", "pos").group_by("doc_index", maintain_order=True):
        kept = obelics_paragraphs(d.get_column("text")).get_column("text").to_list()
        want.append(ref_perplexity("\n\n".join(t for t in kept if t), sp, lm))
    assert got.get_column("doc_lm_perplexity").to_list() == want


def test_a_run_loads_the_model_once_and_a_refilter_never(tmp_path, monkeypatch):
    """The plan checks the files and packages without loading the model (a CCNet binary is
    gigabytes); the scoring loads it once; ``interleaf filter`` runs no model."""
    from interleaf import pipeline
    from interleaf.models import kenlm as km

    loads = []
    real = km.KenLM.__init__

    def counted(self, *a, **kw):
        loads.append(1)
        real(self, *a, **kw)

    monkeypatch.setattr(km.KenLM, "__init__", counted)
    shutil.copy(ARPA, tmp_path / "en.arpa")
    shutil.copy(TOKENIZER, tmp_path / "en.sp.model")  # a model of its own: not in load_shared yet
    interleaf.run("obelics", SAMPLE_DIR / "comm.jsonl", tmp_path / "out", format="comm", models={"lm": str(tmp_path / "en.arpa")}, progress=False)
    assert len(loads) == 1
    pipeline.refilter(tmp_path / "out", progress=False)
    assert len(loads) == 1


def test_a_perplexity_rule_drops_gibberish(tmp_path):
    src = tmp_path / "d.jsonl"
    english = {"id": "en", "texts": ["A small boat sails across the lake while two children watch from the shore."], "images": [None]}
    noise = {"id": "noise", "texts": ["zxq vbnm qwpo lkjh asdf ghjk tyu ertz wqer zxcv uiop hjkl nmbv"], "images": [None]}
    src.write_text(json.dumps(english) + "\n" + json.dumps(noise) + "\n", encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("models: {lm: {}}\nsignals:\n  lm: {type: perplexity, level: doc, max_perplexity: 100}\nfilters:\n  doc:\n    perplexity: \"lm_perplexity <= 100\"\n", encoding="utf-8")
    summary = interleaf.run(recipe, src, tmp_path / "out", format="obelics", models={"lm": str(ARPA)}, progress=False)
    kept = [json.loads(line)["id"] for f in sorted((tmp_path / "out" / "kept").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert kept == ["en"], summary
    # KenLM runs on the CPU whatever --device says: another device does not rescore it.
    again = interleaf.run(recipe, src, tmp_path / "out", format="obelics", models={"lm": str(ARPA)}, device="cpu", progress=False)
    assert again["stages"]["score"]["skipped"] == 1


def test_cli_signals_perplexity_doc(tmp_path):
    from interleaf.cli import main

    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "a", "caption": "Two dogs are running on the beach at sunset."}) + "\n", encoding="utf-8")
    assert main(["signals", str(src), "--format", "pairs", "--out", str(tmp_path / "o"), "--signals", "perplexity-doc", "--lm", str(BINARY)]) == 0
    sp, lm = spm.SentencePieceProcessor(model_file=str(TOKENIZER)), kenlm.Model(str(ARPA))
    assert pl.read_parquet(tmp_path / "o" / "doc_attrs.parquet").get_column("doc_lm_perplexity").to_list() == [ref_perplexity("Two dogs are running on the beach at sunset.", sp, lm)]
