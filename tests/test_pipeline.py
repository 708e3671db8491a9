"""The main job: recipes, ``interleaf run`` / ``score`` / ``filter``, resumability and
determinism, on the bundled images with planted bad documents (duplicates, a corrupt image, a
missing file, a malformed line, invalid UTF-8, a small image, a short caption).

The tiny CLIP fixture is random, so its scores mean nothing: tests that need every document
to reach the dedup stage edit the CLIP threshold to -1, and the CLIP filter itself is checked
against scores computed independently with the same model. The planted mismatched images are
checked with clip-sample, the same architecture trained on the bundled sample's pairs (it knows
which caption goes with which of those images), at the presets' own thresholds."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

import interleaf
from interleaf import models, recipes
from interleaf.cli import main
from interleaf.pipeline import run

FIXTURES = Path(__file__).parent / "fixtures" / "models"
CLIP_DIR = FIXTURES / "clip-tiny"
CLIP_SAMPLE_DIR = FIXTURES / "clip-sample"
EMBEDDER_DIR = FIXTURES / "embedder-tiny"
LM_DIR = FIXTURES / "lm-tiny"
SAMPLE_IMAGES = Path(interleaf.__file__).parent / "data" / "sample" / "images"

CAPTIONS = {
    "astronaut.jpg": "Smiling astronaut in an orange flight suit beside a flag and a shuttle model.",
    "coffee.jpg": "An espresso in a red-brown cup on a saucer with a silver teaspoon.",
    "chelsea.jpg": "Close-up of a tabby cat's face with green eyes and striped fur.",
    "rocket.jpg": "A rocket on its launch pad under a clear sky before lift-off.",
    "camera.jpg": "A man with a camera on a tripod in a grassy field, in black and white.",
    "hubble_deep_field.jpg": "Hundreds of faint galaxies of every shape in the Hubble deep field.",
    "retina.jpg": "A photograph of the retina with its blood vessels and the optic disc.",
}


def _line(d: dict) -> bytes:
    return json.dumps(d).encode() + b"\n"


@pytest.fixture
def planted(tmp_path) -> dict:
    """Two jsonl shards of pairs with planted cases; returns the paths and what each planted
    document should be dropped for."""
    root = tmp_path / "data"
    img = root / "images"
    img.mkdir(parents=True)
    for name in (*CAPTIONS, "astronaut_face.jpg"):
        shutil.copy(SAMPLE_IMAGES / name, img / name)
    # A near duplicate: the astronaut re-encoded at a lower quality.
    buf = io.BytesIO()
    Image.open(SAMPLE_IMAGES / "astronaut.jpg").save(buf, "JPEG", quality=55)
    (img / "astronaut_q55.jpg").write_bytes(buf.getvalue())
    (img / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(7, 23)) + b"not a jpeg at all" * 20)
    a = root / "a.jsonl"
    with open(a, "wb") as f:
        f.write(_line({"id": "p01", "image": "images/astronaut.jpg", "caption": CAPTIONS["astronaut.jpg"]}))
        f.write(_line({"id": "p02", "image": "images/coffee.jpg", "caption": CAPTIONS["coffee.jpg"]}))
        f.write(_line({"id": "p03", "image": "images/chelsea.jpg", "caption": CAPTIONS["chelsea.jpg"]}))
        f.write(_line({"id": "p04", "image": "images/rocket.jpg", "caption": CAPTIONS["rocket.jpg"]}))
        f.write(_line({"id": "p05-exact", "image": "images/coffee.jpg", "caption": CAPTIONS["coffee.jpg"]}))
        f.write(_line({"id": "p06-near", "image": "images/astronaut_q55.jpg", "caption": "The same astronaut portrait, saved again at a lower JPEG quality."}))
        f.write(_line({"id": "p07-corrupt", "image": "images/corrupt.jpg", "caption": "A picture whose file is damaged beyond repair."}))
        f.write(_line({"id": "p08-missing", "image": "images/nowhere.jpg", "caption": "A picture whose file was never downloaded."}))
        f.write(_line({"id": "p09-small", "image": "images/astronaut_face.jpg", "caption": "A small crop of the astronaut's smiling face."}))
        f.write(_line({"id": "p10-short", "image": "images/camera.jpg", "caption": "A man"}))
        f.write(b'{"id": "p11-malformed", "image": "images/retina.jpg", "capt\n')
        f.write(b'{"id": "p12-utf8", "image": "images/retina.jpg", "caption": "bad \xff\xfe bytes in this caption here"}\n')
    b = root / "b.jsonl"
    with open(b, "wb") as f:
        f.write(_line({"id": "q01", "image": "images/hubble_deep_field.jpg", "caption": CAPTIONS["hubble_deep_field.jpg"]}))
        f.write(_line({"id": "q02-exact", "image": "images/chelsea.jpg", "caption": CAPTIONS["chelsea.jpg"]}))
        f.write(_line({"id": "q03", "image": "images/retina.jpg", "caption": CAPTIONS["retina.jpg"]}))
    expect = {
        "p05-exact": "exact",
        "p06-near": "phash",
        "p07-corrupt": "pair",
        "p08-missing": "pair",
        "p09-small": "image_size",
        "p10-short": "caption_words",
        "a.jsonl:11": "error",
        "p12-utf8": "error",
        "q02-exact": "exact",
    }
    return {"root": root, "inputs": [str(a), str(b)], "expect": expect, "good": ["p01", "p02", "p03", "p04", "q01", "q03"]}


def pairs_recipe(tmp_path: Path, clip: float = -1.0, name: str = "pairs.yaml") -> Path:
    """The pairs preset with its CLIP threshold set to ``clip``."""
    text = recipes.preset_text("pairs")
    assert "clip_alignment_score >= 0.28" in text
    p = tmp_path / name
    p.write_text(text.replace("clip_alignment_score >= 0.28", f"clip_alignment_score >= {clip}"))
    return p


def digests(out: Path) -> dict[str, str]:
    """sha256 of every output file (the markers and the timing-bearing summary aside)."""
    res = {}
    for f in sorted(out.rglob("*")):
        rel = f.relative_to(out)
        if f.is_file() and rel.parts[0] != ".interleaf" and f.name != "summary.json" and not f.name.endswith(".lock"):
            res[str(rel)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return res


def stable_summary(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    for k in ("stages", "seconds", "outputs", "dedup"):
        s.pop(k, None)
    return s


def dropped(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for f in sorted((out / "dropped").glob("*.parquet"))])


# --- recipes --------------------------------------------------------------------------------


def test_presets_load_and_cite_their_sources():
    names = recipes.presets()
    assert list(names) == ["comm", "datacomp", "mmc4", "mmc4-core", "obelics", "pairs", "pairs-basic"]
    for name in names:
        r = recipes.load(name)
        text = recipes.preset_text(name)
        # Sources a user can open: the papers (arXiv ids), not a file outside the package.
        assert text.startswith("#") and re.search(r"arXiv \d{4}\.\d{5}", text) and "METHODS" not in text, name
        assert r.description
        # Every filter parses as polars SQL.
        for f in [*r.filters.node.values(), *r.filters.doc.values()]:
            if f.expr:
                pl.sql_expr(f.expr)


def test_recipe_errors_name_the_key_and_line(tmp_path):
    bad = "name: x\nsignals:\n  clip_alignment: {type: clip_alignment, methd: pair}\n  img: {type: image, max_pixels: -3}\nmodels:\n  clip: {}\nfilters:\n  node:\n    a: 3\n  bogus: 1\n"
    with pytest.raises(recipes.RecipeError) as e:
        recipes.parse(bad, "x.yaml")
    msg = str(e.value)
    assert "x.yaml: line 3: signals.clip_alignment.methd: unknown key" in msg
    assert "line 4: signals.img.max_pixels" in msg
    assert "line 9: filters.node.a" in msg
    assert "line 10: filters.bogus: unknown key" in msg
    with pytest.raises(recipes.RecipeError, match="not valid YAML"):
        recipes.parse("a: [1,", "y.yaml")
    with pytest.raises(recipes.RecipeError, match="needs the model 'clip'"):
        recipes.parse("signals:\n  c: {type: clip_alignment}\n")
    # Block style: the key's line, not its value's; the whole-recipe checks name their key.
    cases = {
        "name: t\nfilters:\n  dco:\n    x: {expr: a > 1}\n": "line 3: filters.dco: unknown key",
        "name: t\nsignals:\n  s: {type: text}\nmodles:\n  clip: {}\n": "line 4: modles: unknown key",
        "name: t\nmodels: {}\nsignals:\n  cs:\n    type: clip_alignment\n": "line 5: signals.cs.type: Value error, signal cs (clip_alignment) needs the model 'clip'",
        "signals:\n  exact: {type: text}\ndedup:\n  - {name: other, method: exact}\n  - name: exact\n    method: exact\n": "line 5: dedup.1.name: Value error, signal and dedup step names must be distinct",
        "name: t\nsignals:\n  my signal: {type: text}\n": "line 3: signals.my signal: Value error, signal name 'my signal'",
        "filters:\n  node:\n    a: {expr: x > 1}\n  doc:\n    a: {expr: y > 1}\n": "line 5: filters.doc.a: Value error, node and doc filters share the names ['a']",
        # Types are not coerced: a boolean or a quoted number is not an int, a number not a name.
        "signals:\n  t: {type: text, char_ngram: true}\n": "line 2: signals.t.char_ngram: Input should be a valid integer",
        "dedup:\n  - {name: p, method: phash, radius: '5'}\n": "line 2: dedup.0.radius: Input should be a valid integer",
        "name: 2024\n": "line 1: name: Input should be a valid string",
        # Bounds that the code behind them can hold.
        "dedup:\n  - {name: p, method: phash, draft: 100000000000000000000}\n": "line 2: dedup.0.draft: Input should be less than or equal to 65535",
        "signals:\n  i: {type: image, max_pixels: 100000000000000000000000}\n": "line 2: signals.i.max_pixels: Input should be less than or equal to 281474976710656",
        # An option the step's method does not read is refused, not ignored.
        "dedup:\n  - {name: m, method: minhash, by: image}\n": "line 2: dedup.0: Value error, by: not read by minhash steps (minhash steps hash the text, phash steps the images)",
        "dedup:\n  - {name: p, method: phash, threshold: 0.1}\n": "line 2: dedup.0: Value error, threshold: not read by phash steps; their options: before_filters, draft, max_pixels, radius, scope",
        "dedup:\n  - {name: m, method: minhash, radius: 0}\n": "line 2: dedup.0: Value error, radius: not read by minhash steps; their options: ngram, num_perm, seed, threshold, unit",
    }
    for text, want in cases.items():
        with pytest.raises(recipes.RecipeError) as e:
            recipes.parse(text, "r.yaml")
        assert f"r.yaml: {want}" in str(e.value), (text, str(e.value))
    with pytest.raises(recipes.RecipeError, match="exactly one of expr and top_fraction"):
        recipes.parse("filters:\n  doc:\n    a: {on_null: drop}\n")
    with pytest.raises(ValueError, match="no preset named"):
        recipes.load("nope")
    with pytest.raises(FileNotFoundError):
        recipes.load(tmp_path / "missing.yaml")
    for empty in ("", "# only a comment\n"):
        with pytest.raises(recipes.RecipeError, match="the recipe is empty"):
            recipes.parse(empty)
    # Where models run is the run's choice: a recipe that pins a device is refused (it was
    # accepted and ignored); "auto", what old runs stored, reads as nothing.
    with pytest.raises(recipes.RecipeError, match=r"line 1: models.clip: Value error, device: 'cuda': a recipe does not choose where its models run .*--device cuda"):
        recipes.parse("models: {clip: {device: cuda}}\n")
    assert recipes.parse("models: {clip: {device: auto}}\n").models["clip"] == recipes.schema.ModelSpec()
    # A section or a model written with nothing under it is an empty one.
    r = recipes.parse("models:\n  clip:\nsignals:\n  c: {type: clip_alignment}\nfilters:\n  doc:\ndedup:\n")
    assert r.models["clip"] == recipes.schema.ModelSpec() and r.filters.doc == {} and r.dedup == []
    assert recipes.parse("dedup:\n  - {name: p, method: phash, by: image, radius: 3}\n").dedup[0].radius == 3


def test_filters_are_checked_before_any_data_is_read(tmp_path, planted):
    r = tmp_path / "r.yaml"
    r.write_text("signals:\n  image: {type: image}\nfilters:\n  doc:\n    x: 'image_widht >= 3'\n")
    out = tmp_path / "out"
    with pytest.raises(recipes.RecipeError, match=r"filter x reads \['image_widht'\], which no signal"):
        run(r, planted["inputs"], out, progress=False)
    assert not out.exists()
    r.write_text("signals:\n  t: {type: text, level: doc}\nfilters:\n  node:\n    x: 't_n_words > 3'\n")
    with pytest.raises(recipes.RecipeError, match="move it under filters.doc"):
        run(r, planted["inputs"], out, progress=False)
    r.write_text("signals:\n  t: {type: text}\nfilters:\n  node:\n    x: 't_n_words >'\n")
    with pytest.raises(recipes.RecipeError, match="not a polars SQL expression"):
        run(r, planted["inputs"], out, progress=False)
    # Type errors and expressions that are no condition: found before scoring, not after it.
    for expr, why in (
        ("t_n_words > 'abc'", "cannot compare string"),
        ("t_n_words[1] > 1", "expected List"),
        ("t_n_words", "gives UInt64, not a true/false condition"),
        ("LENGTH(LPAD('a', 3000000000)) > t_n_words", "pads or repeats text"),  # 11 GB if evaluated
        ("LENGTH(LPAD('a', 200 * 1000000)) > t_n_words", "the length must be a number up to 1,000,000 or a column"),
    ):
        r.write_text(f'signals:\n  t: {{type: text}}\nfilters:\n  node:\n    x: "{expr}"\n')
        with pytest.raises(recipes.RecipeError, match=f"filter x: .*{why}"):
            run(r, planted["inputs"], out, progress=False)
    # Other numbers beside a padding call are no reason to refuse a recipe.
    from interleaf.pipeline import _check_expr_types

    _check_expr_types("x", "LENGTH(RPAD(t, 10)) > 1 AND n < 2000000", {"t": pl.String(), "n": pl.Int64()})
    # Aggregates outside a document filter over nodes would be taken over a whole shard.
    for level, expr in (("node", "t_n_words >= AVG(t_n_words)"), ("doc", "COUNT(*) >= 7"), ("doc", "d_n_words >= avg(d_n_words)")):
        r.write_text(f'signals:\n  t: {{type: text}}\n  d: {{type: text, level: doc}}\nfilters:\n  {level}:\n    x: "{expr}"\n')
        with pytest.raises(recipes.RecipeError, match="filter x: .* aggregates rows .* would be taken over a whole shard"):
            run(r, planted["inputs"], out, progress=False)
    # No node has both a text signal's and an image signal's columns: a row-wise rule over both
    # would apply to no node (an aggregate over each document's nodes takes each over its own).
    both = "signals:\n  t: {type: text}\n  image: {type: image}\nfilters:\n  LEVEL:\n    x: \"EXPR\"\n"
    for level, expr in (("node", "t_n_words >= 3 AND image_width >= 100"), ("node", "t_n_words >= 3 OR image_width >= 100"), ("doc", "t_n_words >= 3 AND image_width >= 100"), ("doc", "MIN(t_n_words) >= 3 AND image_width >= 100")):
        r.write_text(both.replace("LEVEL", level).replace("EXPR", expr))
        with pytest.raises(recipes.RecipeError, match=r"filter x: .* reads image_width of image nodes and t_n_words of text nodes: no node has both"):
            run(r, planted["inputs"], out, progress=False)
    from interleaf.pipeline import plan as plan_of

    for level, expr in (("doc", "MIN(t_n_words) >= 3 AND AVG(image_width) >= 100"), ("node", "t_n_words >= 3 AND pos > 0"), ("node", "image_width >= 3 AND image_height >= 3")):
        assert plan_of(recipes.parse(both.replace("LEVEL", level).replace("EXPR", expr)))
    from interleaf.pipeline import _aggregates

    assert _aggregates("t_kind = 'MAX(' OR AVG(t_n_words) > 3") == ["AVG"] and _aggregates("GREATEST(a, b) > 1") == []
    # top_fraction ranks by a numeric column of a signal.
    for column, level in (("image_format", "node"), ("pos", "node"), ("doc_nodes", "doc")):
        r.write_text(f"signals:\n  image: {{type: image}}\nfilters:\n  {level}:\n    x: {{top_fraction: 0.5, column: {column}}}\n")
        with pytest.raises(recipes.RecipeError, match=f"filter x: top_fraction ranks by '{column}'"):
            run(r, planted["inputs"], out, progress=False)
    # Dedup runs after the filters; ids are no scores.
    r.write_text("signals:\n  image: {type: image}\ndedup:\n  - {name: phash, method: phash}\nfilters:\n  doc:\n    x: 'phash_cluster >= 0'\n")
    with pytest.raises(recipes.RecipeError, match=r"filter x reads \['phash_cluster'\]: dedup steps run after the filters"):
        run(r, planted["inputs"], out, progress=False)
    r.write_text("signals:\n  image: {type: image}\nfilters:\n  doc:\n    x: \"doc_id != 'p01'\"\n")
    with pytest.raises(recipes.RecipeError, match=r"filter x reads \['doc_id'\]: ids are not filtered on"):
        run(r, planted["inputs"], out, progress=False)
    # YAML keeps the last of two equal keys: a recipe that says a filter twice is refused.
    r.write_text("signals:\n  c: {type: caption, level: doc}\nfilters:\n  doc:\n    a: 'c_words > 2'\n    a: 'c_words > 5'\n")
    with pytest.raises(recipes.RecipeError, match="line 6: 'a' is given twice \\(first on line 5\\)"):
        run(r, planted["inputs"], out, progress=False)
    # Nested aliases (YAML's "billion laughs": 10^10 paths in 600 bytes) are walked once per
    # node, and refused for what they are, not expanded.
    bomb = ['l0: &l0 ["x","x","x","x","x","x","x","x","x","x"]'] + [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)]
    refused = {
        "x:\n" + "".join(f"  {line}\n" for line in bomb) + "description: *l9\nfilters: {node: *l9}\n": "line 12: description: Input should be a valid string",
        # A signal's columns may not shadow a built-in column or another signal's.
        "models: {clip: {}}\nsignals:\n  doc: {type: sequence, optional: true}\n": "signal doc makes the column 'doc_images', which is a built-in document column: rename the signal",
        "signals:\n  t: {type: text}\n  t_n: {type: caption}\n": "signals t and t_n both make the column 't_n_words': rename one",
        # YAML 1.1 reads an unquoted on/off/yes/no key as a boolean: named, with the fix.
        "signals:\n  image: {type: image}\ndedup:\n  - {method: exact,\n     on: text}\n": "line 5: the key 'on' is read by YAML as true, not as a name: quote it ('on':) or use another (a dedup step names its field with `by`)",
    }
    for text, why in refused.items():
        r.write_text(text)
        with pytest.raises(recipes.RecipeError, match=re.escape(why)):
            run(r, planted["inputs"], out, progress=False)
    for column in ("image_format", "nowhere", "pos"):
        r.write_text(f"signals:\n  image: {{type: image}}\noutput:\n  images_to: {column}\n")
        with pytest.raises(recipes.RecipeError, match=f"output.images_to: '{column}' is not a numeric node column"):
            run(r, planted["inputs"], out, progress=False)
    assert not out.exists()


def test_output_columns_of_a_skipped_optional_signal_are_skipped_too():
    from interleaf.pipeline import plan

    text = recipes.preset_text("mmc4").replace("type: clip_alignment, method: mmc4,", "type: clip_alignment, method: mmc4, optional: true,")
    p = plan(recipes.parse(text))
    assert "clip_alignment" in p.skipped and p.images_to is None
    assert any(n.startswith("output.images_to skipped: it reads clip_alignment_text_pos of the skipped signal clip_alignment") for n in p.notices)
    p = plan(recipes.parse(text), {"clip": CLIP_DIR})
    assert p.images_to == "clip_alignment_text_pos" and not any(n.startswith("output.") for n in p.notices)


def test_a_missing_model_fails_first_and_says_how_to_get_one(tmp_path, planted, capsys):
    out = tmp_path / "out"
    assert main(["run", "comm", *planted["inputs"], "--out", str(out), "--model", f"clip={CLIP_DIR}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs the text model" in err and "--model text=DIR" in err and "interleaf models export text-embedder" in err
    assert not out.exists()
    assert main(["run", "pairs", *planted["inputs"], "--out", str(out), "--model", f"clip={EMBEDDER_DIR}", "--quiet"]) == 2
    assert "not a clip model" in capsys.readouterr().err
    assert main(["run", "pairs", *planted["inputs"], "--out", str(out), "--model", "clip", "--quiet"]) == 2
    assert "NAME=PATH (clip=DIR" in capsys.readouterr().err


def test_recipe_files_read_relative_model_paths_from_their_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    shutil.copytree(CLIP_DIR, folder / "models" / "clip")
    text = "name: r\nmodels:\n  clip: {path: PATH}\nsignals:\n  a: {type: clip_alignment}\n"
    (folder / "recipe.yaml").write_text(text.replace("PATH", "models/clip"))
    (folder / "other.yaml").write_text(text.replace("PATH", "not-here"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = recipes.load(folder / "recipe.yaml")
    assert r.models["clip"].path == str((folder / "models" / "clip").resolve())
    assert interleaf.pipeline.plan(r).models["clip"] == str((folder / "models" / "clip").resolve())
    assert recipes.load(folder / "other.yaml").models["clip"].path == "not-here"  # not next to the recipe: as written


def test_recipes_cli_lists_and_shows(capsys):
    assert main(["recipes", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("comm", "mmc4", "mmc4-core", "obelics", "datacomp", "pairs"):
        assert f"\n{name} " in "\n" + out
    assert main(["recipes", "show", "mmc4"]) == 0
    shown = capsys.readouterr().out
    assert recipes.parse(shown).name == "mmc4"
    assert main(["recipes", "show", "nope"]) == 2


# --- the pairs preset end to end ------------------------------------------------------------


def test_pairs_planted_cases_are_dropped_for_their_reason(tmp_path, planted):
    out = tmp_path / "out"
    s = run(pairs_recipe(tmp_path), planted["inputs"], out, models={"clip": str(CLIP_DIR)}, device="cpu", progress=False)
    d = dropped(out)
    docs = d.filter(pl.col("pos").is_null())
    by_id = dict(zip(docs.get_column("doc_id"), docs.get_column("filter"), strict=True))
    assert by_id == planted["expect"]
    # Reasons carry the detail a person needs.
    nodes = d.filter(pl.col("pos").is_not_null())
    errs = dict(zip(nodes.get_column("doc_id"), nodes.get_column("rule"), strict=True))
    assert errs["p07-corrupt"] in ("corrupt_image", "truncated_image", "unknown_image_format")
    assert errs["p08-missing"] == "missing_image"
    assert docs.filter(pl.col("doc_id") == "a.jsonl:11").get_column("rule").item() == "malformed_json"
    assert docs.filter(pl.col("doc_id") == "p12-utf8").get_column("rule").item() == "invalid_utf8"
    exact = docs.filter(pl.col("doc_id") == "q02-exact").row(0, named=True)
    assert exact["detail"] == "duplicate of p03 (shard a, doc_index 2)"
    near = docs.filter(pl.col("doc_id") == "p06-near").row(0, named=True)
    assert near["threshold"] == 5.0 and near["value"] <= 5 and near["detail"] == "duplicate of p01 (shard a, doc_index 0)"
    small = docs.filter(pl.col("doc_id") == "p09-small").row(0, named=True)
    assert small["value"] == 0.0 and small["rule"] == "image_datacomp_ok"
    short = docs.filter(pl.col("doc_id") == "p10-short").row(0, named=True)
    assert short["value"] == 2.0 and short["threshold"] == 2.0
    # kept + dropped = input, and the kept documents are the good ones, in the input's order.
    # Kept documents are written in the input's layout (pairs jsonl), images by reference.
    assert sorted(p.name for p in (out / "kept").glob("*.jsonl")) == ["a.jsonl", "b.jsonl"]
    first = json.loads((out / "kept" / "a.jsonl").read_text().splitlines()[0])
    assert first == {"id": "p01", "image": "images/astronaut.jpg", "caption": CAPTIONS["astronaut.jpg"]}
    kept = pl.concat(list(interleaf.read(out / "kept", image_root=planted["root"])))
    kept_ids = kept.get_column("doc_id").unique(maintain_order=True).to_list()
    assert kept_ids == planted["good"]
    assert s["documents"] == {"in": 15, "kept": 6, "dropped": 9}
    assert s["dropped_documents"] == {"caption_words": 1, "error": 2, "exact": 2, "image_size": 1, "pair": 2, "phash": 1}
    # In the order the filters apply (errors first, dataset dedup last), as the report's funnel.
    assert list(s["dropped_documents"]) == ["error", "pair", "caption_words", "image_size", "exact", "phash"]
    # A record that could not be read has no node: it is dropped as a document only, and the
    # node counts add up (nodes in = kept + dropped from kept documents + in dropped documents).
    assert "a.jsonl:11" not in nodes.get_column("doc_id").to_list()
    assert s["dropped_nodes"] == {"error": 4} and s["nodes"] == {"in": 28, "kept": 12}
    # The timing table's dedup row: the documents its steps clustered, from all shards.
    assert {k: s["stages"]["dedup"][k] for k in ("documents", "shards", "skipped")} == {"documents": 15, "shards": 2, "skipped": 0}
    # Documents per kind of read or decode error (the corrupt image is a decode error).
    assert s["errors"] == {"invalid_utf8": 1, "malformed_json": 1, "missing_image": 1, errs["p07-corrupt"]: 1}
    # Kept documents are the input's documents, node for node.
    source = pl.concat(list(interleaf.read(planted["inputs"])))
    for doc_id in kept_ids:
        a = kept.filter(pl.col("doc_id") == doc_id).select("kind", "text", "image", "image_ref", "meta")
        assert a.filter(pl.col("kind") == "image").get_column("image").null_count() == 0
        b = source.filter(pl.col("doc_id") == doc_id).select("kind", "text", "image", "image_ref", "meta")
        assert a.equals(b), doc_id
    # The attribute files are keyed by doc_index, doc_id (and pos), one folder per signal.
    for sig in ("caption", "image", "clip_alignment", "exact", "phash"):
        assert sorted(p.name for p in (out / "attributes" / sig).iterdir()) == ["a.parquet", "b.parquet"], sig
    img = pl.read_parquet(out / "attributes" / "image" / "a.parquet")
    assert img.columns[:3] == ["doc_index", "doc_id", "pos"] and "image_width" in img.columns
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe_spec"]["name"] == "pairs" and "interleaf" in summary["versions"]
    assert set(summary["stages"]) == {"score", "dedup", "filter", "write", "report"}


def test_clip_filter_drops_exactly_the_low_scores_and_refilter_equals_a_fresh_run(tmp_path, planted):
    from interleaf import models
    from interleaf.signals import clip_scores

    out = tmp_path / "out"
    run(pairs_recipe(tmp_path), planted["inputs"], out, models={"clip": str(CLIP_DIR)}, device="cpu", progress=False)
    # Scores computed independently with the same model.
    clip = models.load(CLIP_DIR, device="cpu")
    # The documents that reach the CLIP filter: the good ones and the duplicates (dedup runs last).
    reach = [*planted["good"], "p05-exact", "p06-near", "q02-exact"]
    source = pl.concat(list(interleaf.read(planted["inputs"])))
    rows = source.filter(pl.col("doc_id").is_in(reach))
    imgs = rows.filter(pl.col("kind") == "image")
    txts = rows.filter(pl.col("kind") == "text")
    score = clip_scores(clip, imgs.get_column("image"), txts.get_column("text")).get_column("clip_score")
    scores = dict(zip(imgs.get_column("doc_id"), score.to_list(), strict=True))
    # A threshold halfway between two neighbouring scores, so float rounding cannot flip a case.
    ordered = sorted(set(scores.values()))
    t = round((ordered[2] + ordered[3]) / 2, 6)
    edited = pairs_recipe(tmp_path, clip=t, name="edited.yaml")
    assert main(["filter", str(out), "--recipe", str(edited), "--quiet"]) == 0
    clip_dropped = set(dropped(out).filter(pl.col("filter") == "clip_score").get_column("doc_id"))
    assert clip_dropped == {d for d, s in scores.items() if s < t}
    assert 3 <= len(clip_dropped) < len(reach)
    # A fresh run with the edited threshold writes the same bytes.
    fresh = tmp_path / "fresh"
    run(edited, planted["inputs"], fresh, models={"clip": str(CLIP_DIR)}, device="cpu", progress=False)
    assert digests(out) == digests(fresh)
    assert stable_summary(out) == stable_summary(fresh)
    # The refiltered summary keeps the run's dedup counts (the clusters were not made again).
    dedup_of = lambda o: json.loads((o / "summary.json").read_text())["dedup"]  # noqa: E731
    assert dedup_of(out) == {k: {**v, "skipped": True} for k, v in dedup_of(fresh).items()} and set(dedup_of(out)) == {"exact", "phash"}
    # filter refuses a recipe whose signals changed.
    changed = tmp_path / "changed.yaml"
    changed.write_text(edited.read_text().replace("method: pair", "method: auto"))
    with pytest.raises(ValueError, match="signals differ"):
        from interleaf.pipeline import refilter

        refilter(out, changed, progress=False)


def test_filter_refuses_scores_a_stopped_rerun_left_from_another_configuration(tmp_path, planted):
    """A rerun with another signal setting stopped after one shard leaves the other with the
    old scores: `interleaf filter` refuses (it filtered on the mix and marked the run done),
    and refuses a missing signal file with the same message (it was an os error after the
    summary and the report were gone)."""
    from interleaf.pipeline import refilter

    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("signals:\n  t: {type: text, char_ngram: 10}\n  caption: {type: caption}\nfilters:\n  doc:\n    words: 'caption_words > 2'\n")
    new.write_text(old.read_text().replace("char_ngram: 10", "char_ngram: 4"))
    out = tmp_path / "out"
    run(old, planted["inputs"], out, progress=False)
    markers = out / ".interleaf" / "markers" / "score" / "t"
    kept_b = {p.name: p.read_bytes() for p in (out / "attributes" / "t" / "b.parquet", markers / "b.json")}
    run(new, planted["inputs"], out, progress=False)
    # As if the rerun was killed after shard a: b still holds the old scores and marker.
    (out / "attributes" / "t" / "b.parquet").write_bytes(kept_b["b.parquet"])
    (markers / "b.json").write_bytes(kept_b["b.json"])
    with pytest.raises(ValueError, match=r"the scores of t in 1 shard\(s\) \(b\) are missing or not the run's configuration's .*run `interleaf run` again"):
        refilter(out, progress=False)
    assert (out / "summary.json").exists()
    run(new, planted["inputs"], out, progress=False)
    refilter(out, progress=False)
    (out / "attributes" / "caption" / "a.parquet").unlink()
    with pytest.raises(ValueError, match=r"the scores of caption in 1 shard\(s\) \(a\) are missing"):
        refilter(out, progress=False)


def sample_pairs() -> list[dict]:
    """The bundled pairs, one per image (the first caption of each)."""
    rows = [json.loads(line) for line in (SAMPLE_IMAGES.parent / "pairs.jsonl").read_text().splitlines() if line.strip()]
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["image"], r)
    return list(first.values())


def test_pairs_drops_mismatched_images_at_the_preset_threshold_with_a_trained_clip(tmp_path):
    pairs = sample_pairs()
    caption = {r["image"]: r["caption"] for r in pairs}
    src = tmp_path / "pairs.jsonl"
    with open(src, "wb") as f:
        for r in pairs:
            f.write(_line({"id": r["id"], "image": r["image"], "caption": r["caption"]}))
        # Real captions on the wrong photographs.
        f.write(_line({"id": "mismatch-cat", "image": "images/rocket.jpg", "caption": caption["images/chelsea.jpg"]}))
        f.write(_line({"id": "mismatch-galaxies", "image": "images/camera.jpg", "caption": caption["images/hubble_deep_field.jpg"]}))
    out = tmp_path / "out"
    run("pairs", [str(src)], out, models={"clip": str(CLIP_SAMPLE_DIR)}, image_root=SAMPLE_IMAGES.parent, device="cpu", progress=False)
    docs = dropped(out).filter(pl.col("pos").is_null())
    clip_dropped = docs.filter(pl.col("filter") == "clip_score")
    assert sorted(clip_dropped.get_column("doc_id")) == ["mismatch-cat", "mismatch-galaxies"]
    assert (clip_dropped.get_column("threshold") == 0.28).all() and (clip_dropped.get_column("value") < 0.0).all()
    scores = pl.read_parquet(out / "attributes" / "clip_alignment" / "pairs.parquet")
    matched = scores.filter(~pl.col("doc_id").str.starts_with("mismatch"))
    assert len(matched) == len(pairs) and matched.get_column("clip_alignment_score").min() > 0.28
    # The fixture learned the photographs as convert("RGB") gives them; the one transparent
    # image (retina_disc.png, a quarter transparent) is composited over white as transformers
    # does, which the fixture never saw: lower, still kept.
    transparent = [r["id"] for r in pairs if r["image"].endswith("retina_disc.png")]
    assert len(transparent) == 1
    assert matched.filter(~pl.col("doc_id").is_in(transparent)).get_column("clip_alignment_score").min() > 0.5


def test_mmc4_assignment_drops_the_image_no_sentence_describes_with_a_trained_clip(tmp_path):
    caption = {r["image"].split("/")[-1]: r["caption"] for r in sample_pairs()}
    src = tmp_path / "mmc4.jsonl"
    # Sentences describe the coffee, the cat and the rocket, in that order; the images come in
    # another order, and the camera photograph matches no sentence.
    sentences = [caption["coffee.jpg"], caption["chelsea.jpg"], caption["rocket.jpg"]]
    images = [("rocket.jpg", 0), ("camera.jpg", 1), ("coffee.jpg", 2), ("chelsea.jpg", 2)]
    with open(src, "wb") as f:
        f.write(_mmc4_doc("d1", sentences, images))
    out = tmp_path / "out"
    run("mmc4", [str(src)], out, models={"clip": str(CLIP_SAMPLE_DIR)}, image_root=SAMPLE_IMAGES, device="cpu", progress=False)
    d = dropped(out)
    nodes = {r["pos"]: r for r in d.filter(pl.col("pos").is_not_null()).iter_rows(named=True)}
    # Node positions: rocket 0, sentence 1, camera 2, sentence 3, coffee 4, chelsea 5, sentence 6.
    assert list(nodes) == [2] and nodes[2]["filter"] == "assignment" and nodes[2]["value"] < 0.15
    # Each kept image is assigned the sentence that describes it (sentence k is at pos 1, 3, 6).
    att = pl.read_parquet(out / "attributes" / "clip_alignment" / "mmc4.parquet").sort("pos")
    assert att.get_column("clip_alignment_text_pos").to_list() == [6, None, 1, 3]
    assert att.get_column("clip_alignment_error").to_list()[1]["kind"] == "below_threshold"
    assert (att.get_column("clip_alignment_score").to_numpy()[[0, 2, 3]] > 0.5).all()
    # The kept record carries the assignment: each image before the sentence describing it.
    rec = json.loads((out / "kept" / "mmc4.jsonl").read_text().splitlines()[0])
    assert rec["text_list"] == sentences
    assert sorted((i["matched_text_index"], i["image_name"]) for i in rec["image_info"]) == [(0, "coffee.jpg"), (1, "chelsea.jpg"), (2, "rocket.jpg")]


class ChosenClip:
    """A stand-in CLIP whose cosines the test chooses: an image is identified by its solid red
    channel (read from the bytes, or from the preprocessed pixels), a text by its string."""

    def __init__(self, images: dict[int, np.ndarray], texts: dict[str, np.ndarray]):
        unit = lambda v: np.asarray(v, np.float32) / np.linalg.norm(v)  # noqa: E731
        self.images, self.texts = {k: unit(v) for k, v in images.items()}, {k: unit(v) for k, v in texts.items()}
        self.dim, self.batch_size = len(next(iter(texts.values()))), 64
        self.preprocess_config = models.load(CLIP_DIR, "cpu").preprocess_config

    def embed_images(self, images, *, batch_size=None, threads=None, **kw):
        if isinstance(images, np.ndarray):  # preprocessed: undo CLIP's normalisation of red
            reds = [round((float(x[0].mean()) * 0.26862954 + 0.48145466) * 255) for x in images]
        else:
            reds = [Image.open(io.BytesIO(b)).convert("RGB").getpixel((0, 0))[0] for b in images]
        return np.stack([self.images[r] for r in reds]), interleaf.schema.error_column([None] * len(reds))

    def embed_texts(self, texts, *, batch_size=None):
        return np.stack([self.texts[t] for t in texts]), interleaf.schema.error_column([None] * len(texts))


def _red_png(red: int, side: int = 300, pattern: int | None = None) -> bytes:
    """A ``side`` x ``side`` PNG, solid red channel ``red``, with a coarse random green pattern
    seeded by ``pattern`` (default ``red``: two of them are not pHash near-duplicates)."""
    rng = np.random.default_rng(red if pattern is None else pattern)
    g = np.asarray(Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).resize((side, side), Image.NEAREST))
    buf = io.BytesIO()
    Image.fromarray(np.stack([np.full(g.shape, red, np.uint8), g, np.full(g.shape, 200, np.uint8)], -1)).save(buf, "PNG")
    return buf.getvalue()


def test_mmc4_keeps_every_image_it_assigns_even_below_the_threshold_at_its_sentence(tmp_path):
    # Cosines (images x sentences) [[0.30, 0.10], [0.29, 0.12]]: both images pass the 0.15 rule
    # on their best cosine; the assignment gives image 0 sentence 0 and image 1 sentence 1 at
    # 0.12. MMC4 (compute_assignments.py) keeps both, with matched_sim 0.12 for the second.
    sim = np.array([[0.30, 0.10], [0.29, 0.12]])
    sentences = ["A red kite over the beach.", "A note about the weather."]
    vec = lambda s0, s1: [s0, s1, (1 - s0 * s0 - s1 * s1) ** 0.5, 0.0]  # noqa: E731
    clip = ChosenClip({10: vec(*sim[0]), 20: vec(*sim[1]), 30: vec(0.14, 0.05)}, {sentences[0]: [1, 0, 0, 0], sentences[1]: [0, 1, 0, 0]})
    img = tmp_path / "images"
    img.mkdir()
    for red in (10, 20, 30):
        (img / f"{red}.png").write_bytes(_red_png(red))
    src = tmp_path / "mmc4.jsonl"
    with open(src, "wb") as f:
        f.write(_mmc4_doc("d1", sentences, [("10.png", 0), ("20.png", 1), ("30.png", 1)]))
        f.write(_line({"url": "http://example.com/n", "doc_id": "no-sentences", "text_list": [None], "image_info": [{"image_name": "10.png", "matched_text_index": 0}]}))
    out = tmp_path / "out"
    run("mmc4", [str(src)], out, models={"clip": clip}, image_root=img, device="cpu", progress=False)
    d = dropped(out)
    # Image 30 is below 0.15 everywhere (its value: its best cosine); the document without a
    # sentence keeps no image, so it goes.
    nodes = d.filter(pl.col("pos").is_not_null()).sort("doc_id", "pos")
    assert nodes.select("doc_id", "filter").rows() == [("d1", "assignment"), ("no-sentences", "assignment")]
    assert nodes.get_column("value")[0] == pytest.approx(0.14, abs=1e-6)
    rec = json.loads((out / "kept" / "mmc4.jsonl").read_text().splitlines()[0])
    assert sorted((i["image_name"], i["matched_text_index"]) for i in rec["image_info"]) == [("10.png", 0), ("20.png", 1)]
    # mmc4-core's share of strong images counts the assigned cosines: 0.30 > 0.25, 0.12 is not.
    att = pl.read_parquet(out / "attributes" / "clip_alignment" / "mmc4.parquet").filter(pl.col("doc_id") == "d1").sort("pos")
    assert att.get_column("clip_alignment_score").to_list() == pytest.approx([0.30, 0.12, 0.14], abs=1e-6)


def test_mmc4_assigns_only_the_images_its_image_rules_and_phash_keep(tmp_path):
    # MMC4 built its similarity matrix from the images that passed its filters: a small image
    # (100 px) or a later near-duplicate must not take a sentence from a kept image.
    sentences = ["A kite over the beach.", "Notes on the weather."]
    vec = lambda s0, s1: [s0, s1, (1 - s0 * s0 - s1 * s1) ** 0.5, 0.0]  # noqa: E731
    clip = ChosenClip(
        {40: vec(0.5, 0.2), 10: vec(0.4, 0.2), 20: vec(0.4, 0.1), 21: vec(0.9, 0.35)},
        {sentences[0]: [1, 0, 0, 0], sentences[1]: [0, 1, 0, 0]},
    )
    img = tmp_path / "images"
    img.mkdir()
    (img / "small.png").write_bytes(_red_png(40, side=100))
    (img / "good.png").write_bytes(_red_png(10))
    (img / "first.png").write_bytes(_red_png(20))
    (img / "again.png").write_bytes(_red_png(21, pattern=20))  # the same picture, red 1 apart
    src = tmp_path / "mmc4.jsonl"
    with open(src, "wb") as f:
        f.write(_mmc4_doc("small", sentences, [("small.png", 0), ("good.png", 0)]))
        f.write(_mmc4_doc("dup", sentences, [("first.png", 0), ("again.png", 0)]))
    out = tmp_path / "out"
    run("mmc4", [str(src)], out, models={"clip": clip}, image_root=img, device="cpu", progress=False)
    d = dropped(out).filter(pl.col("pos").is_not_null())
    assert sorted(d.select("doc_id", "filter").rows()) == [("dup", "phash"), ("small", "image_rules")]
    recs = {json.loads(line)["url"].rsplit("/", 1)[1]: json.loads(line) for line in (out / "kept" / "mmc4.jsonl").read_text().splitlines()}
    # Among all images the small one would take sentence 0 (0.5 + 0.2 > 0.4 + 0.2) and the
    # copy would leave the first image sentence 1 at 0.1 (dropped): MMC4 gives neither.
    assert [(i["image_name"], i["matched_text_index"]) for i in recs["small"]["image_info"]] == [("good.png", 0)]
    assert [(i["image_name"], i["matched_text_index"]) for i in recs["dup"]["image_info"]] == [("first.png", 0)]
    # The attributes keep the signal's own values, over every image (sentences at pos 2, 3),
    # and each image's cosines with the sentences, from which the filter stage assigned again.
    att = pl.read_parquet(out / "attributes" / "clip_alignment" / "mmc4.parquet").sort("doc_index", "pos")
    assert att.get_column("clip_alignment_text_pos").to_list() == [2, 3, 3, 2]
    assert att.get_column("clip_alignment_sentence_pos").to_list() == [[2, 3]] * 4
    cos = att.get_column("clip_alignment_sentence_cos").to_list()
    assert [pytest.approx(c, abs=1e-6) for c in ([0.5, 0.2], [0.4, 0.2], [0.4, 0.1], [0.9, 0.35])] == cos


def test_mmc4_assignment_with_a_float64_model_no_image_signal_and_old_attributes(tmp_path):
    # A model object that returns float64 vectors, with no image signal sharing the decode:
    # every row was signal_failed (the kernel takes float32). A run folder whose attributes
    # predate the sentence columns: the filter and write stages keep the stored assignment.
    sentences = ["A kite over the beach.", "Notes on the weather."]
    vec = lambda s0, s1: [s0, s1, (1 - s0 * s0 - s1 * s1) ** 0.5, 0.0]  # noqa: E731
    clip = ChosenClip({10: vec(0.4, 0.2), 20: vec(0.3, 0.35)}, {sentences[0]: [1, 0, 0, 0], sentences[1]: [0, 1, 0, 0]})
    img = tmp_path / "images"
    img.mkdir()
    for red in (10, 20):
        (img / f"{red}.png").write_bytes(_red_png(red))
    src = tmp_path / "mmc4.jsonl"
    src.write_bytes(_mmc4_doc("d", sentences, [("10.png", 0), ("20.png", 0)]))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "models:\n  clip: {}\nsignals:\n  clip_alignment: {type: clip_alignment, method: mmc4}\nfilters:\n  node:\n"
        "    assignment: {expr: 'clip_alignment_score >= 0.15 OR clip_alignment_text_pos IS NOT NULL', on_null: drop}\n"
        "output:\n  images_to: clip_alignment_text_pos\n"
    )
    out = tmp_path / "out"
    run(recipe, [str(src)], out, models={"clip": clip}, image_root=img, device="cpu", progress=False)
    att = pl.read_parquet(out / "attributes" / "clip_alignment" / "mmc4.parquet").sort("pos")
    assert att.get_column("clip_alignment_error").null_count() == 2 and att.get_column("clip_alignment_text_pos").to_list() == [2, 3]
    kept = (out / "kept" / "mmc4.jsonl").read_text()
    att.drop("clip_alignment_sentence_cos", "clip_alignment_sentence_pos").write_parquet(out / "attributes" / "clip_alignment" / "mmc4.parquet")
    marker = out / ".interleaf" / "markers" / "score" / "clip_alignment" / "mmc4.json"
    old = json.loads(marker.read_text())
    old.pop("outputs")  # as an older interleaf wrote it: no stamps of the files it vouches for
    marker.write_text(json.dumps(old))
    recipe.write_text(recipe.read_text().replace("  node:\n", "  node:\n    any_pos: 'pos >= 0'\n"))  # the filter stage runs again
    (out / "kept" / "mmc4.jsonl").unlink()  # and the write stage
    summary = run(recipe, [str(src)], out, models={"clip": clip}, image_root=img, device="cpu", progress=False)
    assert summary["stages"]["score"]["skipped"] == 1 and summary["stages"]["write"]["skipped"] == 0
    assert (out / "kept" / "mmc4.jsonl").read_text() == kept


def test_auto_alignment_keeps_the_recipes_filter_order_and_taken_filter_names_are_refused(tmp_path):
    from interleaf.pipeline import plan

    text = "models:\n  clip: {}\nsignals:\n  a: {type: clip_alignment, method: METHOD}\ndedup:\n  - {name: phash, method: phash, scope: document, radius: 5}\nfilters:\n  node:\n    low: 'a_score >= 0.1'\n    other: 'pos >= 0'\n"
    for method, late in (("auto", []), ("step", []), ("mmc4", ["low"])):
        p = plan(recipes.parse(text.replace("METHOD", method)), {"clip": str(CLIP_DIR)})
        early, after = p.split_node_filters()
        assert [f[0] for f in after] == late, method
        assert [f[0] for f in early] == [n for n in ("low", "other") if n not in late]
    for clash in ("error", "phash", "empty"):
        with pytest.raises(recipes.RecipeError, match="are taken"):
            plan(recipes.parse(text.replace("METHOD", "mmc4").replace("    other:", f"    {clash}:")), {"clip": str(CLIP_DIR)})
    both = text.replace("METHOD", "auto") + "  doc:\n    low: 'doc_images >= 1'\n"
    with pytest.raises(recipes.RecipeError, match=r"share the names \['low'\]"):
        plan(recipes.parse(both), {"clip": str(CLIP_DIR)})


def test_move_images_puts_each_image_before_its_target_text():
    from interleaf.pipeline import move_images

    # doc 0: t0 i1 t2 i3 i4 t5 (i3 -> t0, i4 -> t0, i1 -> t5); doc 1: i0 t2 (t1 dropped; i0 -> t1)
    df = pl.DataFrame({"doc_index": [0, 0, 0, 0, 0, 0, 1, 1], "pos": [0, 1, 2, 3, 4, 5, 0, 2], "kind": ["text", "image", "text", "image", "image", "text", "image", "text"], "text": ["a", None, "b", None, None, "c", None, "d"]})
    targets = pl.DataFrame({"doc_index": [0, 0, 0, 1], "pos": [1, 3, 4, 0], "to": [5.0, 0.0, 0.0, 1.0]})
    got = move_images(df, targets, "to")
    assert got.columns == df.columns
    assert got.get_column("pos").to_list() == [0, 1, 2, 3, 4, 5, 0, 2]
    # i3, i4 (in their order) before t0; i1 before t5; doc 1's target is gone, so i0 stays.
    order = [(r["doc_index"], r["kind"], r["text"]) for r in got.iter_rows(named=True)]
    assert [o[1] + (o[2] or "") for o in order] == ["image", "image", "texta", "textb", "image", "textc", "image", "textd"]
    assert move_images(df, targets.clear(), "to").equals(df)


def test_workers_share_the_default_thread_count_not_the_hosts_cores(tmp_path, monkeypatch):
    """Workers without --threads each get the default thread count (set_threads, else
    INTERLEAF_THREADS, else the cores this process may use) divided among them; os.cpu_count()
    counts the host's cores (32 threads a worker on a 64-core host pinned to 2 cores)."""
    import interleaf.pipeline as pipeline

    class Planned(Exception):
        pass

    seen = []

    def options(*args, **kwargs):
        seen.append(kwargs.get("threads"))
        raise Planned

    monkeypatch.setattr(pipeline, "RunOptions", options)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    before = interleaf.get_threads()
    interleaf.set_threads(3)
    try:
        for workers in (2, 4):
            with pytest.raises(Planned):
                run("pairs-basic", SAMPLE_IMAGES.parent / "pairs.jsonl", tmp_path / f"w{workers}", workers=workers, progress=False)
    finally:
        interleaf.set_threads(before)
    assert seen == [1, 1]


def test_outputs_do_not_depend_on_workers_and_a_rerun_skips_everything(tmp_path, planted, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    recipe = pairs_recipe(tmp_path)
    run(recipe, planted["inputs"], a, workers=1, **kw)
    run(recipe, planted["inputs"], b, workers=2, **kw)
    assert digests(a) == digests(b)
    assert stable_summary(a) == stable_summary(b)
    before = {f: f.stat().st_mtime_ns for f in a.rglob("*.parquet")}
    s = run(recipe, planted["inputs"], a, **kw)
    assert s["stages"]["score"]["skipped"] == 2 and s["stages"]["write"]["skipped"] == 2
    assert {f: f.stat().st_mtime_ns for f in a.rglob("*.parquet")} == before
    # Changing one signal recomputes only its folder.
    edited = tmp_path / "edited.yaml"
    edited.write_text(recipe.read_text().replace("image: {type: image}", "image: {type: image, max_pixels: 100000000}"))
    run(edited, planted["inputs"], a, **kw)
    changed = {str(f.relative_to(a)) for f, t in before.items() if f.stat().st_mtime_ns != t}
    assert changed == {"attributes/image/a.parquet", "attributes/image/b.parquet"}
    # So does a new version of a signal's values (TextCoherence's seeding became version 2).
    from interleaf.signals import ImageStats

    before = {f: f.stat().st_mtime_ns for f in a.rglob("*.parquet")}
    monkeypatch.setattr(ImageStats, "version", 2, raising=False)
    run(edited, planted["inputs"], a, **kw)
    assert {str(f.relative_to(a)) for f, t in before.items() if f.stat().st_mtime_ns != t} == {"attributes/image/a.parquet", "attributes/image/b.parquet"}


def test_a_signal_failure_is_reported_and_scored_again_by_a_rerun(tmp_path, planted, monkeypatch):
    """A failed batch is kept with its shard's scores and reported; a rerun scores the failed
    signal again (only it: the shard's other outputs stay), so a rerun after the fix (a model
    that would not load, a missing package) completes the run, and one without it reports the
    same failures."""
    from interleaf.signals import ImageStats

    def crashes(self, batch, ctx):
        raise RuntimeError("the decoder crashed")

    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    recipe, out = pairs_recipe(tmp_path), tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(ImageStats, "compute", crashes)
        first = run(recipe, planted["inputs"], out, **kw)
        fails = first["signal_failures"]
        assert fails and all("signal image failed on a batch (RuntimeError: the decoder crashed)" in f for f in fails)
        assert {f.split(":")[0] for f in fails} == {"a", "b"}
        kept = {f: f.stat().st_mtime_ns for f in (out / "attributes" / "clip_alignment").glob("*.parquet")}
        again = run(recipe, planted["inputs"], out, **kw)
        assert again["stages"]["score"]["skipped"] == 0 and again["signal_failures"] == fails
        assert json.loads((out / "summary.json").read_text())["signal_failures"] == fails
        assert {f: f.stat().st_mtime_ns for f in kept} == kept  # the signal that worked is not redone
    fixed = run(recipe, planted["inputs"], out, **kw)
    assert fixed["signal_failures"] == [] and fixed["stages"]["score"]["skipped"] == 0
    image = pl.read_parquet(out / "attributes" / "image" / "*.parquet")
    assert image.get_column("image_error").drop_nulls().struct.field("kind").is_in(["signal_failed"]).sum() == 0
    assert run(recipe, planted["inputs"], out, **kw)["stages"]["score"]["skipped"] == 2


def test_a_rerun_with_another_limit_read_option_dedup_setting_or_model_redoes_what_depends_on_it(tmp_path, planted):
    """Each of these is part of the keys: a rerun into the same folder equals a fresh run of
    the new command (and another model rescores only the signals that use it)."""
    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    recipe, out, inputs = pairs_recipe(tmp_path), tmp_path / "out", planted["inputs"]

    def equals_fresh(name: str, r: Path = recipe, **more: object) -> None:
        run(r, inputs, out, **kw, **more)
        run(r, inputs, tmp_path / name, **kw, **more)
        assert digests(out) == digests(tmp_path / name), name

    run(recipe, inputs, out, limit=13, **kw)
    equals_fresh("no-limit")
    by_text = tmp_path / "by-text.yaml"
    by_text.write_text(recipe.read_text().replace("{name: exact, method: exact, by: all}", "{name: exact, method: exact, by: text}"))
    equals_fresh("exact-by-text", by_text)
    equals_fresh("small-members", by_text, max_member_bytes=30_000)  # the astronaut (35,677 bytes) becomes an error
    before = {f: f.stat().st_mtime_ns for f in out.rglob("attributes/*/*.parquet")}
    other = tmp_path / "clip-copy"
    shutil.copytree(CLIP_DIR, other)
    run(by_text, inputs, out, max_member_bytes=30_000, **{**kw, "models": {"clip": str(other)}})
    changed = {str(f.relative_to(out)) for f, t in before.items() if f.stat().st_mtime_ns != t}
    assert changed == {"attributes/clip_alignment/a.parquet", "attributes/clip_alignment/b.parquet"}


def test_a_rerun_scores_again_the_shards_whose_image_files_changed(tmp_path, planted):
    """The shard files are the same, but an image they name was replaced, or a missing one
    appeared: the rerun scores those shards again (and only those), and its outputs equal a
    fresh run's."""
    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    recipe, out = pairs_recipe(tmp_path), tmp_path / "out"
    img = planted["root"] / "images"
    run(recipe, planted["inputs"], out, **kw)
    assert sorted(p.name for p in (out / ".interleaf" / "image_files").iterdir()) == ["a.parquet", "b.parquet"]
    s = run(recipe, planted["inputs"], out, **kw)
    assert s["stages"]["score"]["skipped"] == 2 and s["stages"]["write"]["skipped"] == 2
    # b.jsonl's hubble image becomes another picture (its size and mtime change).
    (img / "hubble_deep_field.jpg").write_bytes((img / "rocket.jpg").read_bytes())
    s = run(recipe, planted["inputs"], out, **kw)
    assert s["stages"]["score"]["skipped"] == 1 and s["stages"]["write"]["skipped"] == 1
    fresh = tmp_path / "fresh"
    run(recipe, planted["inputs"], fresh, **kw)
    assert digests(out) == digests(fresh)
    assert stable_summary(out) == stable_summary(fresh)
    # a.jsonl's missing image is downloaded after all: p08 is no longer a broken pair.
    assert "p08-missing" in pl.read_parquet(out / "dropped" / "a.parquet").get_column("doc_id").to_list()
    shutil.copy(img / "camera.jpg", img / "nowhere.jpg")
    s = run(recipe, planted["inputs"], out, **kw)
    assert s["stages"]["score"]["skipped"] == 1
    assert "p08-missing" not in pl.read_parquet(out / "dropped" / "a.parquet").get_column("doc_id").to_list()
    # A file touched (same bytes, new mtime) counts as changed: interleaf does not hash images.
    os.utime(img / "retina.jpg", ns=(1, 1))
    s = run(recipe, planted["inputs"], out, **kw)
    assert s["stages"]["score"]["skipped"] == 0
    s = run(recipe, planted["inputs"], out, **kw)
    assert s["stages"]["score"]["skipped"] == 2


def test_refilter_refuses_shards_that_changed_since_they_were_scored(tmp_path, planted):
    """`interleaf filter` reads the shards again to write what its stored scores keep: a shard
    edited, or one whose images changed, since the run would be written with another's verdicts."""
    from interleaf.pipeline import refilter

    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    out = tmp_path / "out"
    run(pairs_recipe(tmp_path), planted["inputs"], out, limit=14, **kw)
    refilter(out, progress=False)
    before = digests(out)
    img = planted["root"] / "images" / "hubble_deep_field.jpg"  # b.jsonl's q01 (within the limit)
    os.utime(img, ns=(1, 1))
    with pytest.raises(ValueError, match=r"1 input shard\(s\) changed since they were scored \(b: .*run `interleaf run` again"):
        refilter(out, progress=False)
    assert digests(out) == before and json.loads((out / ".interleaf" / "run.json").read_text())["recipe"]["name"] == "pairs"
    assert run(pairs_recipe(tmp_path), planted["inputs"], out, limit=14, **kw)["stages"]["score"]["skipped"] == 1
    refilter(out, progress=False)
    with open(planted["inputs"][0], "a") as f:
        f.write(json.dumps({"id": "late", "image": "images/coffee.jpg", "caption": "A late addition."}) + "\n")
    with pytest.raises(ValueError, match=r"\(a: "):
        refilter(out, progress=False)


def test_a_filter_failing_on_the_data_names_itself_and_refilter_keeps_the_runs_recipe(tmp_path, sample_dir):
    """``CAST(image_format AS INTEGER)`` passes the check on no rows and fails on "JPEG": the
    error names the filter, and `interleaf filter` with that recipe leaves the folder's recipe
    (a plain `interleaf filter` still works). top_fraction 1.0 (every row) writes strict JSON."""
    from interleaf.pipeline import refilter

    out = tmp_path / "out"
    run("pairs-basic", [str(sample_dir / "pairs.jsonl")], out, progress=False)
    text = recipes.preset_text("pairs-basic")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  doc:\n", "  node:\n    m: \"CAST(image_format AS INTEGER) > 0\"\n  doc:\n", 1))
    with pytest.raises(ValueError, match=r"filter m \('CAST\(image_format AS INTEGER\) > 0'\) failed on the scored values: InvalidOperationError"):
        refilter(out, bad, progress=False)
    assert json.loads((out / ".interleaf" / "run.json").read_text())["recipe"]["filters"]["node"] == {}
    refilter(out, progress=False)
    top = tmp_path / "top.yaml"
    top.write_text(text.replace("  doc:\n", "  doc:\n    all: {top_fraction: 1.0, column: caption_words}\n", 1))
    refilter(out, top, progress=False)
    summary = json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert "all" not in summary["thresholds"]


def test_image_file_tracking_keeps_reruns_no_ops_on_odd_paths_roots_and_limits(tmp_path, planted, monkeypatch):
    """A path with a NUL, an empty path (the root itself) and a folder do not break a run or
    make every rerun score again (a folder counts by what it is: its mtime moves with every
    download). A relative image root means the folder it names from where the run starts. A
    limited read keeps the files of what it used. A folder scored before files were kept is not
    scored again for that."""
    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    recipe, root = pairs_recipe(tmp_path), planted["root"]
    odd = root / "odd.jsonl"
    odd.write_text("".join(json.dumps({"id": f"o{i}", "image": im, "caption": "A picture that is not there at all."}) + "\n" for i, im in enumerate(["bad\u0000.jpg", "", "images", "images/rocket.jpg"])))
    out = tmp_path / "out"
    run(recipe, [odd], out, **kw)
    kept = pl.read_parquet(out / ".interleaf" / "image_files" / "odd.parquet")
    assert kept.get_column("size").to_list() == [-1, -2, -2, (root / "images" / "rocket.jpg").stat().st_size]
    (root / "images" / "new-download.jpg").write_bytes(b"x")
    (root / "another-shard.jsonl").write_text("")
    s = run(recipe, [odd], out, **kw)
    assert s["stages"]["score"]["skipped"] == 1 and s["stages"]["write"]["skipped"] == 1
    # The same command from two folders, each with its own imgs/ of other pictures.
    shard = tmp_path / "rel.jsonl"
    shard.write_text(json.dumps({"id": "r", "image": "a.jpg", "caption": "A picture named by a relative path."}) + "\n")
    for d, src in (("x", "rocket.jpg"), ("y", "coffee.jpg")):
        (tmp_path / d / "imgs").mkdir(parents=True)
        shutil.copy(root / "images" / src, tmp_path / d / "imgs" / "a.jpg")
    widths = []
    for d in ("x", "y"):
        monkeypatch.chdir(tmp_path / d)
        s = run(recipe, [shard], tmp_path / "rel-out", image_root="imgs", **kw)
        assert s["stages"]["score"]["skipped"] == 0, d
        widths.append(pl.read_parquet(tmp_path / "rel-out" / "attributes" / "image" / "rel.parquet").select("image_width", "image_height").row(0))
    assert widths == [Image.open(root / "images" / name).size for name in ("rocket.jpg", "coffee.jpg")]
    monkeypatch.chdir(tmp_path)
    # --limit 1, one document a batch: the files of that document only.
    run(recipe, planted["inputs"][:1], tmp_path / "limited", limit=1, batch_size=1, **kw)
    assert pl.read_parquet(tmp_path / "limited" / ".interleaf" / "image_files" / "a.parquet").get_column("path").to_list() == [str(root / "images" / "astronaut.jpg")]
    # A folder whose kept files were lost is scored again, and keeps them again.
    shutil.rmtree(out / ".interleaf" / "image_files")
    assert run(recipe, [odd], out, **kw)["stages"]["score"]["skipped"] == 0
    assert (out / ".interleaf" / "image_files" / "odd.parquet").exists()
    # An output folder of a version that kept no files: not scored again, not tracked either.
    from interleaf import pipeline

    old = tmp_path / "old"
    with monkeypatch.context() as m:
        m.setattr(pipeline, "_names_image_files", lambda opts, shard: False)
        run(recipe, [odd], old, **kw)
    assert not (old / ".interleaf" / "image_files").exists()
    s = run(recipe, [odd], old, **kw)
    assert s["stages"]["score"]["skipped"] == 1


def test_limit_takes_the_first_documents_in_read_order(tmp_path, planted):
    out = tmp_path / "out"
    s = run(pairs_recipe(tmp_path), planted["inputs"], out, models={"clip": str(CLIP_DIR)}, device="cpu", limit=13, progress=False)
    assert s["documents"]["in"] == 13
    base = pl.read_parquet(out / "attributes" / "_base" / "b.parquet")
    assert base.get_column("doc_id").unique(maintain_order=True).to_list() == ["q01"]


def test_shards_past_the_limit_are_not_part_of_the_run(tmp_path, planted):
    """A preview with ``limit`` writes nothing for the shards it never reached, and a rerun
    with a limit into a folder of a full run removes what that run wrote for them."""
    from interleaf.pipeline import refilter

    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    s = run(pairs_recipe(tmp_path), planted["inputs"], fresh, limit=5, **kw)
    assert s["shards"] == ["a"] and s["documents"]["in"] == 5
    assert not [f for f in fresh.rglob("b.*")], "outputs of a shard past the limit"
    run(pairs_recipe(tmp_path), planted["inputs"], out, **kw)
    assert (out / "dropped" / "b.parquet").exists()
    s = run(pairs_recipe(tmp_path), planted["inputs"], out, limit=5, **kw)
    assert s["shards"] == ["a"] and not [f for f in out.rglob("b.*")]
    assert digests(out) == digests(fresh) and stable_summary(out) == stable_summary(fresh)
    assert refilter(out, progress=False)["shards"] == ["a"]
    assert digests(out) == digests(fresh)


def test_output_folder_checks(tmp_path, planted):
    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    with pytest.raises(ValueError, match="holds the input"):
        run(pairs_recipe(tmp_path), planted["inputs"], planted["root"], **kw)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an interleaf run folder"):
        run(pairs_recipe(tmp_path), planted["inputs"], other, **kw)
    assert (other / "keep.txt").read_text() == "mine"
    out = tmp_path / "out"
    run(pairs_recipe(tmp_path), planted["inputs"][:1], out, **kw)
    with pytest.raises(ValueError, match="run over other inputs"):
        run(pairs_recipe(tmp_path), planted["inputs"], out, **kw)
    run(pairs_recipe(tmp_path), planted["inputs"], out, overwrite=True, **kw)
    assert sorted(p.name for p in (out / "dropped").iterdir()) == ["a.parquet", "b.parquet"]


def test_a_second_command_writing_the_folder_at_once_is_refused(tmp_path, planted):
    """run, filter and dedup take the output folder's lock: two of them writing one folder at
    once would delete and rewrite each other's files (a folder of wrong counts, exit 0)."""
    from interleaf.dedup import deduplicate
    from interleaf.io.atomic import FolderLock
    from interleaf.pipeline import refilter

    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    out = tmp_path / "out"
    with FolderLock(out, "a test"):
        with pytest.raises(ValueError, match="being written by another interleaf command"):
            run(pairs_recipe(tmp_path), planted["inputs"], out, **kw)
        with pytest.raises(ValueError, match="being written by another interleaf command"):
            deduplicate(planted["inputs"], out, "exact")
    assert list(out.iterdir()) == []  # the lock file goes with the lock; the refused wrote nothing
    run(pairs_recipe(tmp_path), planted["inputs"], out, **kw)
    with FolderLock(out, "a test"), pytest.raises(ValueError, match="being written by another interleaf command"):
        refilter(out, progress=False)
    assert not (out / ".interleaf.lock").exists() and (out / "summary.json").exists()


def test_a_rerun_in_another_format_or_config_leaves_one_consistent_folder(tmp_path, planted, monkeypatch):
    """A rerun writing another output format replaces the kept files (no second copy of each
    document); its summary keeps the dedup numbers of the steps it skipped and gives no rate for
    stages it skipped; a rerun of another recipe that fails leaves no summary or report of the
    earlier one."""
    from interleaf import pipeline

    kw = {"models": {"clip": str(CLIP_DIR)}, "device": "cpu", "progress": False}
    out = tmp_path / "out"
    recipe = pairs_recipe(tmp_path)
    first = run(recipe, planted["inputs"], out, **kw)
    shown = lambda: sorted(p.name for p in (out / "kept").iterdir() if not p.name.startswith("."))  # noqa: E731
    assert shown() == ["a.jsonl", "b.jsonl"]
    second = run(recipe, planted["inputs"], out, output_format="parquet", **kw)
    assert shown() == ["a.parquet", "b.parquet"]
    kept = pl.concat(list(interleaf.read(out / "kept")))
    assert kept.get_column("doc_index").n_unique() == second["documents"]["kept"] == first["documents"]["kept"]
    assert first["dedup"]["exact"] == {"documents": 15, "signed": 14, "skipped": False}
    assert second["dedup"]["exact"] == {"documents": 15, "signed": 14, "skipped": True}
    assert second["stages"]["score"]["skipped"] == 2 and second["stages"]["score"]["docs_per_s"] is None
    assert first["stages"]["score"]["docs_per_s"] > 0

    def fails(*a, **k):
        raise RuntimeError("interrupted")

    # What a killed writer leaves (a partial shard under its temporary name, its lock file) is
    # swept by the next run of the folder.
    left = [out / "kept" / ".a.jsonl.4242-0.tmp", out / "kept" / ".a.jsonl.lock", out / "attributes" / "_base" / ".a.parquet.4242.0123456789ab.tmp"]
    for f in left:
        f.write_bytes(b"partial")
    run(recipe, planted["inputs"], out, **kw)
    assert not any(f.exists() for f in left)
    monkeypatch.setattr(pipeline, "filter_all", fails)
    with pytest.raises(RuntimeError, match="interrupted"):
        run(pairs_recipe(tmp_path, clip=0.1, name="other.yaml"), planted["inputs"], out, **kw)
    assert not (out / "summary.json").exists() and not (out / "report.html").exists()


def test_dedup_refuses_an_output_inside_its_input_and_a_rerun_replaces_its_files(tmp_path, planted):
    from interleaf.dedup import deduplicate

    root = planted["root"]
    with pytest.raises(ValueError, match="inside the input folder"):
        deduplicate(str(root), root / "dd", "exact")
    assert not (root / "dd").exists()
    out = tmp_path / "dd"
    deduplicate(planted["inputs"], out, "exact", write_format="jsonl")
    assert (out / "dedup").is_dir() and json.loads((out / "summary.json").read_text())["method"] == "exact"
    (out / ".duplicates.parquet.4242.0123456789ab.tmp").write_bytes(b"partial")  # a killed run's
    deduplicate(planted["inputs"], out, "minhash")
    assert not (out / "dedup").exists() and not list(out.glob(".*.tmp"))
    # A folder named dedup that no dedup wrote is the user's; another command's summary.json
    # is refused, not overwritten; a failed dedup into a new folder leaves none behind.
    mine = tmp_path / "proj"
    (mine / "dedup").mkdir(parents=True)
    (mine / "dedup" / "notes.py").write_text("mine")
    deduplicate(planted["inputs"], mine, "exact")
    assert (mine / "dedup" / "notes.py").read_text() == "mine"
    # ... and writing into it, or over a duplicates.parquet no dedup wrote, needs overwrite.
    with pytest.raises(ValueError, match="already holds dedup, which no finished dedup wrote: pass --overwrite"):
        deduplicate(planted["inputs"], mine, "exact", write_format="jsonl")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "duplicates.parquet").write_text("mine")
    with pytest.raises(ValueError, match="already holds duplicates.parquet, which no finished dedup wrote"):
        deduplicate(planted["inputs"], theirs, "exact")
    assert (theirs / "duplicates.parquet").read_text() == "mine"
    deduplicate(planted["inputs"], theirs, "exact", overwrite=True)
    assert pl.read_parquet(theirs / "duplicates.parquet").height
    (tmp_path / "ran").mkdir()
    (tmp_path / "ran" / "summary.json").write_text('{"recipe": "pairs"}')
    with pytest.raises(ValueError, match="summary.json that no dedup wrote"):
        deduplicate(planted["inputs"], tmp_path / "ran", "exact")
    assert (tmp_path / "ran" / "summary.json").read_text() == '{"recipe": "pairs"}'
    with pytest.raises(ValueError, match="format='webdataset' but the file is"):
        deduplicate(planted["inputs"], tmp_path / "new" / "deeper", "exact", format="webdataset")
    assert not (tmp_path / "new").exists() and json.loads((out / "summary.json").read_text())["method"] == "minhash"


def test_a_dedup_that_stopped_writing_is_rerun_without_overwrite(tmp_path, planted, monkeypatch):
    """A dedup --write whose disk filled while writing dedup/ left duplicates.parquet and a
    partial dedup/, and the same command was then refused ("which no finished dedup wrote:
    pass --overwrite"). What it had begun writing is its own: the rerun replaces it."""
    import errno

    from interleaf.dedup import dataset, deduplicate

    out = tmp_path / "dd"
    real_write = interleaf.write

    def full(batches, dest, *a, **k):
        os.makedirs(dest, exist_ok=True)
        (Path(dest) / "shard-000000.jsonl").write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dataset.interleaf, "write", full)
    with pytest.raises(OSError, match="No space left"):
        deduplicate(planted["inputs"], out, "exact", write_format="jsonl")
    assert (out / "duplicates.parquet").exists() and not (out / "summary.json").exists()
    monkeypatch.setattr(dataset.interleaf, "write", real_write)
    deduplicate(planted["inputs"], out, "exact", write_format="jsonl")
    clean = tmp_path / "clean"
    deduplicate(planted["inputs"], clean, "exact", write_format="jsonl")
    assert json.loads((out / "summary.json").read_text())["kept_documents"] == json.loads((clean / "summary.json").read_text())["kept_documents"]
    assert sorted(p.name for p in (out / "dedup").iterdir()) == sorted(p.name for p in (clean / "dedup").iterdir())
    assert all((out / "dedup" / p.name).read_bytes() == p.read_bytes() for p in (clean / "dedup").iterdir())
    assert not (out / dataset._PENDING).exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has died; its new parent may not reap it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_worker_processes_die_with_a_killed_run():
    """A run killed by SIGKILL (an OOM kill, a scheduler) takes its worker processes with it:
    none is left holding its memory, models or GPU."""
    script = (
        "import sys, time\n"
        "from interleaf.pipeline import _Pool\n"
        "pool = _Pool(2)\n"
        "futures = [pool.get().submit(time.sleep, 120) for _ in range(2)]\n"
        "time.sleep(1)\n"
        "print(*pool.get()._processes, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers = [int(x) for x in proc.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(w) for w in workers)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)


def test_ctrl_c_stops_the_workers_shards_at_once():
    """Ctrl-C reaches the run, not the workers (no traceback from each); the run stops them at
    once instead of waiting for the shards they are on."""
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, whoever started the tests\n"
        "from interleaf.pipeline import _Pool, _StageLog, _run_jobs\n"
        "pool = _Pool(2)\n"
        "pool.get().submit(time.sleep, 0).result()\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    _run_jobs(time.sleep, [(300,), (300,)], 2, 'score', _StageLog(False), pool=pool)\n"
        "except KeyboardInterrupt:\n"
        "    pool.close(kill=True)\n"
        "    print('interrupted', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to the run and its workers
    out, err = proc.communicate(timeout=120)  # the shards would take 300 s
    assert out.strip() == "interrupted" and proc.returncode == 0 and "Traceback" not in err


def test_a_run_that_fails_before_any_work_leaves_no_run_behind(tmp_path, planted):
    """A model that does not load, or input of another format, fails the new run: the corrected
    command, over other inputs, then runs in the same folder (a stale run.json refused it)."""
    kw = {"device": "cpu", "progress": False}
    bad = tmp_path / "bad-clip"
    shutil.copytree(CLIP_DIR, bad)
    (bad / "onnx" / "vision_model.onnx").write_bytes(b"not onnx")
    for out in (tmp_path / "new", tmp_path / "empty", tmp_path / "new2" / "deeper"):
        if out.name == "empty":
            out.mkdir()
        with pytest.raises(Exception, match="vision_model.onnx|ONNX|onnx"):
            run(pairs_recipe(tmp_path), planted["inputs"], out, models={"clip": str(bad)}, **kw)
        assert not out.exists() if out.name != "empty" else list(out.iterdir()) == []
        assert not (tmp_path / "new2").exists()  # nor the parents it made
        with pytest.raises(ValueError, match="format='webdataset' but the file is"):
            run(pairs_recipe(tmp_path), planted["inputs"], out, models={"clip": str(CLIP_DIR)}, format="webdataset", **kw)
        run(pairs_recipe(tmp_path), planted["inputs"][:1], out, models={"clip": str(CLIP_DIR)}, **kw)
        assert (out / "summary.json").exists()
    # A folder of the user's given with overwrite: the failed start takes only what it made.
    theirs = tmp_path / "theirs"
    (theirs / "e1" / "e2").mkdir(parents=True)
    (theirs / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(Exception, match="vision_model.onnx|ONNX|onnx"):
        run(pairs_recipe(tmp_path), planted["inputs"], theirs, models={"clip": str(bad)}, overwrite=True, **kw)
    assert sorted(p.name for p in theirs.iterdir()) == ["e1", "gone"] and (theirs / "e1" / "e2").is_dir()
    with pytest.raises(ValueError, match=r"stages must be some of"):
        run(pairs_recipe(tmp_path), planted["inputs"], tmp_path / "s", stages=("scor",), **kw)
    assert not (tmp_path / "s").exists()


def kill_at_stage(cmd: list[str], stage: str) -> None:
    """Runs the CLI command ``cmd`` and kills it (SIGKILL) at the first progress line of
    ``stage``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(interleaf.__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    assert proc.stderr is not None
    killed = False
    seen = []
    for line in proc.stderr:
        seen.append(line.decode())
        if seen[-1].startswith(f"{stage}:"):
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
    proc.wait()
    assert killed, f"the run never reached the {stage} stage (exit {proc.returncode}); it said:\n" + "".join(seen[-30:])
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("stage", ["score", "dedup", "filter", "write"])
def test_kill_9_during_a_stage_then_rerun_gives_identical_output(tmp_path, planted, stage):
    recipe = pairs_recipe(tmp_path)
    ref = tmp_path / "ref"
    run(recipe, planted["inputs"], ref, models={"clip": str(CLIP_DIR)}, device="cpu", progress=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "interleaf.cli", "run", str(recipe), *planted["inputs"], "--out", str(out), "--model", f"clip={CLIP_DIR}", "--device", "cpu", "--batch-size", "4"]
    kill_at_stage(cmd, stage)
    # Whatever the kill left, the rerun finishes and writes what an uninterrupted run writes.
    run(recipe, planted["inputs"], out, models={"clip": str(CLIP_DIR)}, device="cpu", progress=False)
    assert digests(out) == digests(ref)
    assert stable_summary(out) == stable_summary(ref)
    assert not [f for f in out.rglob("*.tmp")]


@pytest.mark.parametrize("stage", ["filter", "write"])
def test_kill_9_during_mmc4s_assignment_stages_then_rerun_gives_identical_output(tmp_path, stage):
    # The filter stage assigns again among the images the rules keep and the write stage places
    # images by that assignment: a kill in either, then a rerun, writes what one run writes.
    caption = {r["image"].split("/")[-1]: r["caption"] for r in sample_pairs()}
    src = tmp_path / "mmc4.jsonl"
    with open(src, "wb") as f:
        for i in range(12):
            names = ["rocket.jpg", "camera.jpg", "coffee.jpg", "chelsea.jpg"][i % 4 :] + ["coffee.jpg"]
            f.write(_mmc4_doc(f"d{i}", [caption["coffee.jpg"], caption["chelsea.jpg"], caption["rocket.jpg"]], [(n, j % 3) for j, n in enumerate(names)]))
    kw = {"models": {"clip": str(CLIP_SAMPLE_DIR)}, "image_root": SAMPLE_IMAGES, "device": "cpu", "progress": False}
    ref = tmp_path / "ref"
    run("mmc4", [str(src)], ref, **kw)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "interleaf.cli", "run", "mmc4", str(src), "--out", str(out), "--model", f"clip={CLIP_SAMPLE_DIR}", "--image-root", str(SAMPLE_IMAGES), "--device", "cpu", "--batch-size", "2"]
    kill_at_stage(cmd, stage)
    run("mmc4", [str(src)], out, **kw)
    assert digests(out) == digests(ref)
    assert stable_summary(out) == stable_summary(ref)
    assert (out / "kept" / "mmc4.jsonl").read_text() == (ref / "kept" / "mmc4.jsonl").read_text()


# --- the other presets ----------------------------------------------------------------------


def _mmc4_doc(doc_id: str, sentences: list[str], images: list[tuple[str, int]]) -> bytes:
    return _line({"url": f"http://example.com/{doc_id}", "doc_id": doc_id, "text_list": sentences, "image_info": [{"image_name": n, "raw_url": f"http://example.com/{n}", "matched_text_index": i} for n, i in images]})


def test_a_document_dedup_step_before_the_filters_runs_in_mmc4s_order(tmp_path):
    """MMC4 deduplicates a document's images, then drops the small ones (its paper, 3.1): a
    large copy after a small one goes with it (before_filters: true, the mmc4 presets); run
    after the filters, the dedup sees only the large copy, which stays. The step's attributes
    do not depend on the order (refiltering with the other order reuses them)."""
    img = tmp_path / "images"
    img.mkdir()
    Image.open(SAMPLE_IMAGES / "astronaut.jpg").resize((120, 120)).save(img / "small.jpg", quality=95)
    shutil.copy(SAMPLE_IMAGES / "astronaut.jpg", img / "large.jpg")
    shutil.copy(SAMPLE_IMAGES / "coffee.jpg", img / "coffee.jpg")
    src = tmp_path / "mmc4.jsonl"
    src.write_bytes(_mmc4_doc("d1", ["An astronaut.", "The astronaut again.", "Coffee."], [("small.jpg", 0), ("large.jpg", 1), ("coffee.jpg", 2)]))
    text = "signals:\n  image: {type: image}\ndedup:\n  - {name: phash, method: phash, scope: document, radius: 10, before_filters: %s}\nfilters:\n  node:\n    image_rules: image_mmc4_ok\n"
    for first, kept_images in (("true", ["coffee.jpg"]), ("false", ["large.jpg", "coffee.jpg"])):
        recipe = tmp_path / f"r-{first}.yaml"
        recipe.write_text(text % first)
        out = tmp_path / f"out-{first}"
        run(recipe, [str(src)], out, image_root=img, progress=False)
        rec = json.loads((out / "kept" / "mmc4.jsonl").read_text())
        assert [i["image_name"] for i in rec["image_info"]] == kept_images, first
        why = {r["pos"]: r["filter"] for r in dropped(out).filter(pl.col("pos").is_not_null()).iter_rows(named=True)}
        assert why == ({0: "image_rules", 2: "phash"} if first == "true" else {0: "image_rules"}), first
    from interleaf.pipeline import refilter

    refilter(tmp_path / "out-false", tmp_path / "r-true.yaml", progress=False)
    assert [i["image_name"] for i in json.loads((tmp_path / "out-false" / "kept" / "mmc4.jsonl").read_text())["image_info"]] == ["coffee.jpg"]


def test_mmc4_drops_small_images_and_near_duplicates_within_a_document(tmp_path):
    img = tmp_path / "images"
    img.mkdir()
    for name in ("astronaut.jpg", "coffee.jpg", "astronaut_flag.jpg", "retina_disc.png"):
        shutil.copy(SAMPLE_IMAGES / name, img / name)
    buf = io.BytesIO()
    Image.open(SAMPLE_IMAGES / "astronaut.jpg").save(buf, "JPEG", quality=55)
    (img / "astronaut_again.jpg").write_bytes(buf.getvalue())
    src = tmp_path / "mmc4.jsonl"
    s = ["An astronaut poses for a portrait.", "A cup of coffee on a table.", "The same portrait again.", "A flag hangs behind her."]
    with open(src, "wb") as f:
        f.write(_mmc4_doc("d1", s, [("astronaut.jpg", 0), ("coffee.jpg", 1), ("astronaut_again.jpg", 2), ("astronaut_flag.jpg", 3)]))
        f.write(_mmc4_doc("d2", s[:2], [("retina_disc.png", 0)]))
        f.write(_mmc4_doc("d3", s[:1], [("astronaut_flag.jpg", 0)]))
    recipe = tmp_path / "mmc4.yaml"
    # The random CLIP's assignment means nothing: images stay where the input put them.
    text = recipes.preset_text("mmc4").replace("threshold: 0.15", "threshold: -1.0").replace("images_to: clip_alignment_text_pos", "images_to: null")
    recipe.write_text(text)
    out = tmp_path / "out"
    summ = run(recipe, [str(src)], out, models={"clip": str(CLIP_DIR)}, image_root=img, device="cpu", progress=False)
    d = dropped(out)
    nodes = {(r["doc_id"], r["pos"]): r for r in d.filter(pl.col("pos").is_not_null()).iter_rows(named=True)}
    # d1: astronaut (pos 0), text, coffee (2), text, astronaut_again (4), text, flag (6), text
    assert nodes[("d1", 4)]["filter"] == "phash" and nodes[("d1", 4)]["detail"] == "near-duplicate of the image at pos 0"
    assert nodes[("d1", 6)]["filter"] == "image_rules"
    assert ("d1", 0) not in nodes and ("d1", 2) not in nodes
    docs = {r["doc_id"]: r["filter"] for r in d.filter(pl.col("pos").is_null()).iter_rows(named=True)}
    assert docs == {"d3": "has_image"}
    assert summ["documents"]["kept"] == 2
    kept = pl.concat(list(interleaf.read(out / "kept" / "mmc4.jsonl", image_root=img)))
    d1 = kept.filter(pl.col("doc_id") == "d1")
    assert d1.get_column("kind").to_list() == ["image", "text", "image", "text", "text", "text"]
    assert d1.filter(pl.col("kind") == "image").get_column("image").null_count() == 0
    rec = json.loads((out / "kept" / "mmc4.jsonl").read_text().splitlines()[0])
    assert [(i["image_name"], i["matched_text_index"]) for i in rec["image_info"]] == [("astronaut.jpg", 0), ("coffee.jpg", 1)]

    # A rerun into the same folder with another radius equals a fresh run (the step's settings
    # are part of its attributes' key).
    wide = tmp_path / "mmc4-wide.yaml"
    wide.write_text(text.replace("radius: 5", "radius: 40"))
    kw = {"models": {"clip": str(CLIP_DIR)}, "image_root": img, "device": "cpu", "progress": False}
    run(wide, [str(src)], out, **kw)
    run(wide, [str(src)], tmp_path / "fresh", **kw)
    assert digests(out) == digests(tmp_path / "fresh")
    assert len(dropped(out).filter(pl.col("filter") == "phash")) > 1


def test_document_phash_drops_an_image_near_an_earlier_one_still_kept():
    """MMC4's within-document rule on hashes chosen bit by bit: distance exactly the radius is
    near; an image whose only near neighbour was dropped stays; an image dropped by another
    rule first is nobody's neighbour."""
    from interleaf.pipeline import _document_dedup, _document_phash
    from interleaf.recipes.schema import DedupStep

    step = DedupStep(name="phash", method="phash", scope="document", radius=5)
    df = pl.DataFrame({"doc_index": [0, 0, 0], "doc_id": ["d"] * 3, "pos": [0, 1, 2], "kind": ["image"] * 3}, schema_overrides={"pos": pl.Int32})
    hashes = pl.Series([0, 0b11111, 0b111111], dtype=pl.UInt64)  # 0-1: 5 bits, 1-2: 1 bit, 0-2: 6 bits
    near = _document_phash(df, step, hashes)
    assert near.get_column("phash_near").to_list() == [0, 1, 1]  # earlier images within the radius
    alive = df.join(near.select("doc_index", "pos", "phash_hash", "phash_near"), on=["doc_index", "pos"])
    # Folders written before kept each image's near positions as a list: read the same way.
    old = alive.with_columns(pl.Series("phash_near", [[], [0], [1]], dtype=pl.List(pl.Int32)))
    for a in (alive, old):
        left, dropped = _document_dedup(a, step)
        assert left.get_column("pos").to_list() == [0, 2] and "phash_hash" not in left.columns
        assert dropped.select("pos", "filter", "detail").rows() == [(1, "phash", "near-duplicate of the image at pos 0")]
        left, dropped = _document_dedup(a.filter(pl.col("pos") != 0), step)
        assert left.get_column("pos").to_list() == [1]
        assert dropped.select("pos", "detail").rows() == [(2, "near-duplicate of the image at pos 1")]


def test_document_phash_on_documents_of_thousands_of_images_equals_the_rule():
    """A document of 3,000 images (counted image by image, not through a join of its images with
    themselves) and small ones (joined) give MMC4's drops as a direct transcription of the rule
    computes them; undecodable images (null hashes) are nobody's neighbour."""
    from interleaf.pipeline import _PAIRWISE_JOIN_MAX, _document_dedup, _document_phash
    from interleaf.recipes.schema import DedupStep

    rng = np.random.default_rng(3)
    step = DedupStep(name="phash", method="phash", scope="document", radius=4)
    sizes = [3000, _PAIRWISE_JOIN_MAX, _PAIRWISE_JOIN_MAX + 1, 5, 1]
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)  # few originals: many near copies
    rows, hashes = [], []
    for d, n in enumerate(sizes):
        for p in range(n):
            flips = np.uint64(0)
            for b in rng.choice(64, int(rng.integers(0, 4)), replace=False):
                flips |= np.uint64(1) << np.uint64(b)
            rows.append((d, f"d{d}", p))
            hashes.append(None if rng.random() < 0.02 else int(base[rng.integers(0, len(base))] ^ flips))
    df = pl.DataFrame(rows, schema={"doc_index": pl.Int64, "doc_id": pl.String, "pos": pl.Int32}, orient="row").with_columns(kind=pl.lit("image"))
    near = _document_phash(df, step, pl.Series(hashes, dtype=pl.UInt64))
    alive = df.join(near.drop("doc_id"), on=["doc_index", "pos"], maintain_order="left").filter(pl.col("pos") % 7 != 3)  # some dropped by other rules first
    left, dropped = _document_dedup(alive, step)
    want = []
    for (d,), doc in alive.group_by("doc_index", maintain_order=True):
        kept: list[tuple[int, int]] = []
        for p, h in doc.select("pos", "phash_hash").iter_rows():
            if h is None:
                continue
            hit = next((q for q, k in kept if bin(k ^ h).count("1") <= step.radius), None)
            if hit is None:
                kept.append((p, h))
            else:
                want.append((d, p, f"near-duplicate of the image at pos {hit}"))
    assert sorted(dropped.select("doc_index", "pos", "detail").rows()) == sorted(want)
    assert len(want) > 1000 and left.height == alive.height - len(want)


def test_a_row_wise_document_filter_over_node_scores_must_hold_on_every_scored_node():
    """``clip_alignment_score >= 0.3`` as a document filter: a document with one image below
    goes (its value is that image's score), one whose signal scored no node stays, an
    aggregate decides once per document."""
    from interleaf.pipeline import _doc_filter_over_nodes
    from interleaf.recipes.schema import FilterSpec

    alive = pl.DataFrame(
        {
            "doc_index": [0, 0, 0, 1, 2, 2],
            "doc_id": ["a", "a", "a", "b", "c", "c"],
            "pos": [0, 1, 2, 0, 0, 1],
            "kind": ["text", "image", "image", "text", "image", "image"],
            "s": [None, 0.5, 0.1, None, 0.5, 0.4],
            "_has_sig": [False, True, True, False, True, True],
        }
    )
    docs = pl.DataFrame({"doc_index": [0, 1, 2], "doc_id": ["a", "b", "c"]})
    dtypes = {"s": pl.Float64()}

    def apply(expr: str) -> tuple[list[str], list[tuple]]:
        f = FilterSpec(expr=expr)
        kept, dropped = _doc_filter_over_nodes(alive, docs, "clip", f, ["s"], pl.sql_expr(expr), dtypes, 0.3, {"s": "sig"})
        return kept.get_column("doc_id").to_list(), dropped.select("doc_id", "value").rows()

    assert apply("s >= 0.3") == (["b", "c"], [("a", 0.1)])
    assert apply("AVG(s) >= 0.3") == (["a", "b", "c"], [])
    assert apply("AVG(s) >= 0.46") == (["b"], [("a", pytest.approx(0.3)), ("c", pytest.approx(0.45))])  # the aggregate compared
    # b, which its signal did not score, is judged on null node values and its own columns.
    docs = docs.with_columns(pl.Series("doc_images", [2, 0, 2]))
    dtypes["doc_images"] = pl.Int64()
    assert apply("doc_images = 2 AND s >= 0.0") == (["a", "c"], [("b", None)])
    assert apply("COUNT(s) >= 1") == (["a", "c"], [("b", None)])
    f = FilterSpec(expr="s >= 0.3", on_null="drop")
    kept, _ = _doc_filter_over_nodes(alive, docs, "clip", f, ["s"], pl.sql_expr("s >= 0.3"), dtypes, 0.3, {"s": "sig"})
    assert kept.get_column("doc_id").to_list() == ["c"]


OBELICS_GOOD = (
    "The museum opened its new wing to the public on Saturday morning, and the first visitors were greeted by a large "
    "collection of paintings that had not been shown in the city for more than fifty years. Many of the works were "
    "restored over the last decade by a small team of conservators."
)
OBELICS_GOOD_2 = (
    "In the afternoon, a guide led a group through the rooms and explained how each painting had been cleaned, "
    "which pigments the artists had used, and why some of the frames were older than the canvases they now hold."
)


def test_obelics_rewrites_paragraphs_and_applies_document_rules(tmp_path):
    from interleaf.signals import obelics_paragraphs

    img = tmp_path / "images"
    img.mkdir()
    for name in ("astronaut.jpg", "chelsea_nose.jpg"):
        shutil.copy(SAMPLE_IMAGES / name, img / name)
    junk = "buy buy buy buy buy buy buy buy buy buy buy buy buy buy"
    src = tmp_path / "obelics.jsonl"
    with open(src, "wb") as f:
        f.write(_line({"doc_id": "o1", "texts": [OBELICS_GOOD + "\n\n" + junk, None, OBELICS_GOOD_2], "images": [None, "images/astronaut.jpg", None], "metadata": "{}"}))
        f.write(_line({"doc_id": "o2", "texts": ["Too short.", None], "images": [None, "images/astronaut.jpg"], "metadata": "{}"}))
        f.write(_line({"doc_id": "o3", "texts": [OBELICS_GOOD, None], "images": [None, "images/chelsea_nose.jpg"], "metadata": "{}"}))
        # Left without nodes: under the filter that took the last one, wherever it stands.
        f.write(_line({"doc_id": "o4", "texts": [None, "Too short."], "images": ["images/chelsea_nose.jpg", None], "metadata": "{}"}))
        f.write(_line({"doc_id": "o5", "texts": ["Too short.", None], "images": [None, "images/chelsea_nose.jpg"], "metadata": "{}"}))
    out = tmp_path / "out"
    run("obelics", [str(src)], out, progress=False)
    d = dropped(out)
    docs = {r["doc_id"]: r["filter"] for r in d.filter(pl.col("pos").is_null()).iter_rows(named=True)}
    assert docs["o2"] in ("words", "paragraphs")  # its only paragraph is too short, so it has no text left
    assert docs["o3"] == "images"  # its only image is below 150 px
    assert docs["o4"] == docs["o5"] == "paragraphs"  # image_rules took the image, then paragraphs the text
    assert {(r["doc_id"], r["pos"]): r["filter"] for r in d.filter(pl.col("doc_id").is_in(["o4", "o5"]) & pl.col("pos").is_not_null()).iter_rows(named=True)} == {("o4", 0): "image_rules", ("o4", 1): "paragraphs", ("o5", 0): "paragraphs", ("o5", 1): "image_rules"}
    assert "o1" not in docs
    kept = pl.concat(list(interleaf.read(out / "kept" / "obelics.jsonl")))
    first = kept.filter((pl.col("doc_id") == "o1") & (pl.col("kind") == "text")).get_column("text").to_list()
    expect = obelics_paragraphs([OBELICS_GOOD + "\n\n" + junk]).get_column("text").to_list()
    assert first[0] == expect[0] == OBELICS_GOOD


def test_document_aggregates_over_text_and_image_signals_and_nan_rules_go_by_on_null(tmp_path):
    """A document filter comparing a text signal's aggregate and an image signal's takes each
    over its own nodes (no node has both: were the rule judged on nodes that both scored, it
    would see none and keep everything); a rule computing NaN on a row (0 / 0 words per
    character of an empty text) is a missing value there, kept or dropped by on_null alone,
    whichever way it compares."""
    img = tmp_path / "images"
    img.mkdir()
    for name in ("astronaut.jpg", "chelsea_nose.jpg"):  # 400 and 140 pixels wide
        shutil.copy(SAMPLE_IMAGES / name, img / name)
    src = tmp_path / "obelics.jsonl"
    docs = {
        "d1": ([OBELICS_GOOD, None], [None, "astronaut.jpg"]),
        "d2": (["Too short.", None], [None, "astronaut.jpg"]),  # at most 2 words
        "d3": ([OBELICS_GOOD, None], [None, "chelsea_nose.jpg"]),  # 140 px on average
        "d4": ([OBELICS_GOOD, "", None], [None, None, "astronaut.jpg"]),  # an empty text: 0 / 0
        "d5": ([OBELICS_GOOD, None, None], [None, "astronaut.jpg", "chelsea_nose.jpg"]),  # 270 px on average
    }
    with open(src, "wb") as f:
        for doc_id, (texts, images) in docs.items():
            f.write(_line({"doc_id": doc_id, "texts": texts, "images": [None if i is None else f"images/{i}" for i in images], "metadata": "{}"}))
    recipe = tmp_path / "r.yaml"
    # Every other text has 0.18-0.2 words per character: each rule keeps it.
    for op, thr in (("<=", 0.5), (">", 0.1)):
        for on_null in ("keep", "drop"):
            recipe.write_text(
                "signals:\n  t: {type: text}\n  image: {type: image}\nfilters:\n  node:\n"
                f"    dense: {{expr: 't_n_words / t_n_chars {op} {thr}', on_null: {on_null}}}\n"
                "  doc:\n    both: 'MAX(t_n_words) >= 5 AND AVG(image_width) >= 200'\n"
            )
            out = tmp_path / f"out-{op}-{on_null}"
            run(recipe, [str(src)], out, progress=False)
            d = dropped(out)
            assert dict(d.filter(pl.col("pos").is_null()).select("doc_id", "filter").iter_rows()) == {"d2": "both", "d3": "both"}, (op, on_null)
            nodes = d.filter(pl.col("pos").is_not_null()).select("doc_id", "pos", "filter").rows()
            assert nodes == ([("d4", 1, "dense")] if on_null == "drop" else []), (op, on_null)


def test_a_nan_condition_is_null_where_it_is_nan_and_sql_logic_combines_it():
    from interleaf.pipeline import _nan_as_null

    df = pl.DataFrame({"doc_index": [0, 0, 1, 1, 2], "a": [0.0, 1.0, 0.0, 0.0, None], "b": [0.0, 1.0, 0.0, 0.0, 1.0], "c": [0, 0, 2, 0, 0]})

    def rows(expr: str) -> list[bool | None]:
        return df.select(_nan_as_null(pl.sql_expr(expr), df.schema).alias("r")).get_column("r").to_list()

    assert rows("a / b >= 0.5") == [None, True, None, None, None]
    assert rows("a / b < 0.5") == [None, False, None, None, None]
    assert rows("NOT (a / b >= 0.5)") == [None, False, None, None, None]
    assert rows("a / b >= 0.5 OR c > 1") == [None, True, True, None, None]  # null OR true
    assert rows("a / b >= 0.5 AND c > 1") == [False, False, None, False, False]  # null AND false
    assert rows("SQRT(a - 1) > 0") == [None, False, None, None, None]
    assert rows("c > 1") == [False, False, True, False, False]
    # An aggregate: a NaN inside AVG makes it NaN, a missing value; MIN and MAX pass NaN by.
    got = df.group_by("doc_index", maintain_order=True).agg(_nan_as_null(pl.sql_expr("AVG(a / b) >= 0.5"), df.schema, grouped=True).alias("avg"), _nan_as_null(pl.sql_expr("MIN(a / b) >= 0.5"), df.schema, grouped=True).alias("min"))
    assert got.rows() == [(0, None, True), (1, None, None), (2, None, None)]


def test_a_dropped_record_holds_what_its_rule_compares():
    """value and threshold of a dropped row: the side of a comparison with a number and that
    number (a computed value, an aggregate), else the rule's first numeric column."""
    from interleaf.pipeline import _apply_filter
    from interleaf.recipes.schema import FilterSpec

    rows = pl.DataFrame({"doc_index": [0, 1], "doc_id": ["a", "b"], "pos": [0, 0], "s": [0.2, 0.5], "n": [3, 1]})
    dtypes = dict(rows.schema)

    def drop(expr: str) -> list[tuple]:
        _, d = _apply_filter(rows, "x", FilterSpec(expr=expr), ["s", "n"], pl.sql_expr(expr), dtypes, None, pos=True)
        return d.select("doc_id", "value", "threshold").rows()

    assert drop("s * 100 >= 28") == [("a", pytest.approx(20.0), 28.0)]
    assert drop("0.28 <= s") == [("a", 0.2, 0.28)]
    assert drop("s / n >= 0.1") == [("a", pytest.approx(0.2 / 3), 0.1)]
    assert drop("s >= 0.3 AND n >= 1") == [("a", 0.2, None)]  # no single comparison: the first column
    assert drop("s > n") == [("a", 0.2, None), ("b", 0.5, None)]


def test_comm_runs_with_every_model_and_keeps_documents_too_short_for_f(tmp_path, sample_dir):
    # The sample's four documents have 3+ images each; a fifth has two (F needs three) and two
    # steps (the order test needs three): neither rule may drop it.
    shutil.copytree(sample_dir / "images", tmp_path / "images")
    docs = (sample_dir / "comm.jsonl").read_text().splitlines()
    first = json.loads(docs[0])
    two = {"id": "two-images", "title": "Two", "step_info": first["step_info"][:2]}
    two["step_info"][0] = [*two["step_info"][0], {"type": "text", "content": "Then check it again before going on."}]  # a step of two texts
    assert [sum(it["type"] == "image" for it in st) for st in two["step_info"]] == [1, 1]
    data = tmp_path / "comm.jsonl"
    data.write_text("\n".join([*docs, json.dumps(two)]) + "\n")
    out = tmp_path / "out"
    s = run("comm", [str(data)], out, models={"clip": str(CLIP_DIR), "text": str(EMBEDDER_DIR), "lm": str(LM_DIR)}, device="cpu", progress=False)
    # Only the optional LLM judge is skipped (no endpoint given; test_llm_stages runs it).
    assert list(s["skipped"]["signals"]) == ["judge"] and "no LLM endpoint given" in s["skipped"]["signals"]["judge"]
    lm = pl.read_parquet(out / "attributes" / "lm" / "comm.parquet")
    assert lm.get_column("lm_perplexity").drop_nulls().len() > 0
    # Perplexity is of each step's text (METHODS §1), on every text node of the step.
    assert lm.filter(pl.col("doc_id") == "two-images").get_column("lm_perplexity").drop_nulls().len() == 3
    nodes = pl.concat(list(interleaf.read(data))).filter(pl.col("kind") == "text").join(lm, on=["doc_id", "pos"])
    steps = nodes.filter(pl.col("step").is_not_null()).group_by("doc_id", "step", maintain_order=True).agg(pl.col("text").sort_by("pos").str.join(" "), pl.col("lm_perplexity"))
    want = models.load(LM_DIR, device="cpu").perplexity(steps.get_column("text").to_list()).get_column("perplexity").to_list()
    assert [v for vs in steps.get_column("lm_perplexity").to_list() for v in vs] == pytest.approx([w for w, vs in zip(want, steps.get_column("lm_perplexity").to_list(), strict=True) for _ in vs], rel=1e-9)
    seq = pl.read_parquet(out / "attributes" / "sequence" / "comm.parquet")
    d = dropped(out)
    short = seq.filter(pl.col("sequence_f").is_null()).get_column("doc_id").to_list()
    assert short == ["two-images"]
    coherence = pl.read_parquet(out / "attributes" / "coherence" / "comm.parquet")
    assert coherence.filter(pl.col("doc_id") == "two-images").get_column("coherence_margin").to_list() == [None]
    assert not d.filter((pl.col("doc_id") == "two-images") & pl.col("filter").is_in(["image_sequence", "text_development"])).height
    f_fail = seq.filter(pl.col("sequence_f") <= 0).get_column("doc_id").to_list()
    for doc_id in f_fail:
        got = d.filter((pl.col("doc_id") == doc_id) & pl.col("pos").is_null())
        assert got.height == 1
    assert s["documents"]["in"] == 5


class _Unpicklable(BaseException):
    """Like pyo3's PanicException: a BaseException that does not survive pickling."""

    def __reduce__(self):
        raise TypeError("cannot pickle this")


def _panics(x):
    raise _Unpicklable(f"panicked on {x}")


def _times_out(x):
    import errno

    raise OSError(errno.ETIMEDOUT, "Connection timed out")  # a TimeoutError (an NFS mount)


def test_a_timeout_error_in_a_worker_fails_the_run_it_is_not_taken_for_a_wait():
    from concurrent.futures import Future

    from interleaf._prefetch import result
    from interleaf.pipeline import _run_jobs, _StageLog

    with pytest.raises(TimeoutError, match="Connection timed out"):
        _run_jobs(_times_out, [(1,), (2,)], 2, "score", _StageLog(False))
    fut: Future = Future()
    fut.set_exception(TimeoutError("the call's own"))
    with pytest.raises(TimeoutError, match="the call's own"):
        result(fut, cancel=True)


def test_an_exception_that_cannot_leave_a_worker_comes_back_named():
    # A worker's exception is pickled back to the run; one that cannot be (a Rust panic) must
    # still say what happened, not only "PicklingError".
    from interleaf.pipeline import _in_worker

    with pytest.raises(RuntimeError, match=r"_Unpicklable in a worker process: panicked on shard-3(.|\n)*_panics"):
        _in_worker(_panics, "shard-3")
    with pytest.raises(ValueError, match="plain"):
        _in_worker(lambda: (_ for _ in ()).throw(ValueError("plain")))
    assert _in_worker(lambda a, b: {"sum": a + b}, 1, 2) == {"sum": 3}
    # Through a real worker process, as a run with --workers uses it: an exception whose class
    # cannot be found by name does not pickle.
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    code = "class Gone(BaseException):\n    pass\nraise Gone('a panic in the worker')"
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        with pytest.raises(RuntimeError, match="Gone in a worker process: a panic in the worker"):
            pool.submit(_in_worker, exec, code, {}).result()


def test_a_signal_that_fails_on_a_batch_marks_its_rows_and_the_run_goes_on():
    from interleaf.signals import ImageStats
    from interleaf.signals.base import compute_each

    class Broken:
        name, level, needs = "broken", "node", ()

        def columns(self):
            return {"broken_x": pl.Float64(), "broken_error": interleaf.schema.ERROR_DTYPE}

        def compute(self, batch, ctx):
            raise RuntimeError("the model crashed")

    batch = next(iter(interleaf.read(SAMPLE_IMAGES.parent / "pairs.jsonl")))
    from interleaf.pipeline import _failure_frame

    seen = []

    def on_error(sig, e):
        seen.append(str(e))
        return _failure_frame(sig, batch, e)

    image, broken = compute_each(batch, [ImageStats(), Broken()], on_error=on_error)
    assert seen == ["the model crashed"] and image.height == 14
    assert broken.height == batch.height and broken.get_column("broken_x").null_count() == batch.height
    assert set(broken.get_column("broken_error").struct.field("kind")) == {"signal_failed"}
    with pytest.raises(RuntimeError, match="crashed"):
        compute_each(batch, [Broken()])


def test_datacomp_fraction_mode_keeps_the_top_of_the_whole_pool(tmp_path, planted):
    """DataComp's fraction mode: the threshold is the (floor(N * f) + 1)-th largest CLIP score
    of the whole input (every shard), so ties keep more."""
    text = recipes.preset_text("datacomp").replace('clip_score: "clip_alignment_score >= 0.28"', "clip_score: {top_fraction: 0.5, column: clip_alignment_score}")
    recipe = tmp_path / "frac.yaml"
    recipe.write_text(text)
    out = tmp_path / "out"
    s = run(recipe, planted["inputs"], out, models={"clip": str(CLIP_DIR)}, device="cpu", progress=False)
    attrs = pl.concat([pl.read_parquet(f) for f in sorted((out / "attributes" / "clip_alignment").glob("*.parquet"))]).filter(pl.col("clip_alignment_score").is_not_null())
    scores = attrs.get_column("clip_alignment_score").sort(descending=True)
    k = int(np.floor(scores.len() * 0.5)) + 1
    t = s["thresholds"]["clip_score"]
    assert t == pytest.approx(float(scores[k - 1]))
    # The filter itself: every document below the threshold is gone (by this rule or an
    # earlier one), some by this rule, and nothing at or above it is dropped by it.
    below = set(attrs.filter(pl.col("clip_alignment_score") < t).get_column("doc_id"))
    d = dropped(out)
    clip_dropped = set(d.filter(pl.col("filter") == "clip_score").get_column("doc_id"))
    kept = set(pl.concat(list(interleaf.read(sorted(str(f) for f in (out / "kept").iterdir())))).get_column("doc_id"))
    assert clip_dropped and clip_dropped <= below and not below & kept
    assert kept and kept <= set(attrs.filter(pl.col("clip_alignment_score") >= t).get_column("doc_id"))
    # No exact or near duplicates are removed by this preset: DataComp pools are deduplicated upstream.
    assert not {"exact", "phash"} & set(s["dropped_documents"])


def test_mmc4_core_applies_the_core_subset_rules(tmp_path):
    img = tmp_path / "images"
    img.mkdir()
    for name in ("astronaut.jpg", "coffee.jpg", "chelsea.jpg", "rocket.jpg"):
        shutil.copy(SAMPLE_IMAGES / name, img / name)
    s = [f"Sentence number {i} of the document." for i in range(6)]
    src = tmp_path / "mmc4.jsonl"
    with open(src, "wb") as f:
        f.write(_mmc4_doc("core", s, [("astronaut.jpg", 0), ("coffee.jpg", 2), ("chelsea.jpg", 4)]))
        f.write(_mmc4_doc("few-sentences", s[:3], [("astronaut.jpg", 0), ("coffee.jpg", 1)]))
        f.write(_mmc4_doc("one-image", s, [("rocket.jpg", 1)]))
    recipe = tmp_path / "core.yaml"
    recipe.write_text(recipes.preset_text("mmc4-core").replace("threshold: 0.15", "threshold: -1.0").replace("> 0.25", "> -1.0"))
    out = tmp_path / "out"
    summ = run(recipe, [str(src)], out, models={"clip": str(CLIP_DIR)}, image_root=img, device="cpu", progress=False)
    docs = {r["doc_id"]: r["filter"] for r in dropped(out).filter(pl.col("pos").is_null()).iter_rows(named=True)}
    assert docs == {"few-sentences": "sentences", "one-image": "images"}
    assert summ["documents"]["kept"] == 1


def test_mmc4_core_judges_strong_images_on_the_assignment_made_again_without_dropped_images(tmp_path):
    """The images a rule dropped take no sentence: with chelsea_nose (too small) gone, the
    coffee image gets the sentence it matches best (0.8, not the 0.2 left to it beside the
    dropped image), so 2 of 2 images are strong and the document stays. CLIP similarities are
    planted in the stored attributes (the test's CLIP is random), then `interleaf filter`."""
    from interleaf.pipeline import refilter

    img = tmp_path / "images"
    img.mkdir()
    for name in ("chelsea_nose.jpg", "coffee.jpg", "rocket.jpg"):
        shutil.copy(SAMPLE_IMAGES / name, img / name)
    src = tmp_path / "mmc4.jsonl"
    src.write_bytes(_mmc4_doc("d", [f"Sentence number {i} of the document." for i in range(4)], [("chelsea_nose.jpg", 0), ("coffee.jpg", 1), ("rocket.jpg", 2)]))
    out = tmp_path / "out"
    run("mmc4-core", [str(src)], out, models={"clip": str(CLIP_DIR)}, image_root=img, device="cpu", progress=False)
    # Nodes: chelsea_nose 0, s0 1, coffee 2, s1 3, rocket 4, s2 5, s3 6.
    path = out / "attributes" / "clip_alignment" / "mmc4.parquet"
    table = pl.read_parquet(path)
    cos = {0: [0.9, 0.1, 0.1, 0.1], 2: [0.8, 0.2, 0.2, 0.2], 4: [0.1, 0.1, 0.9, 0.1]}
    first = {0: (0.9, 1), 2: (0.2, 3), 4: (0.9, 5)}  # the assignment with all three images
    table = table.with_columns(
        pl.col("pos").replace_strict(cos, default=None, return_dtype=pl.List(pl.Float32)).alias("clip_alignment_sentence_cos"),
        pl.when(pl.col("pos").is_in(list(cos))).then(pl.lit([1, 3, 5, 6], dtype=pl.List(pl.Int32))).alias("clip_alignment_sentence_pos"),
        pl.col("pos").replace_strict({k: v[0] for k, v in first.items()}, default=None, return_dtype=pl.Float32).alias("clip_alignment_score"),
        pl.col("pos").replace_strict({k: v[1] for k, v in first.items()}, default=None, return_dtype=pl.Int32).alias("clip_alignment_text_pos"),
    )
    table.write_parquet(path)
    # Planted as if the run had scored these values: the marker vouches for the file as it is.
    from interleaf.pipeline import Markers

    marks = Markers(out)
    marks.done("score/clip_alignment", "mmc4", marks.key("score/clip_alignment", "mmc4"), outputs=[path])
    summ = refilter(out, progress=False)
    assert dropped(out).select("pos", "filter").rows() == [(0, "image_rules")]
    assert summ["documents"]["kept"] == 1
    rec = json.loads((out / "kept" / "mmc4.jsonl").read_text())
    assert [(i["image_name"], i["matched_text_index"]) for i in rec["image_info"]] == [("coffee.jpg", 0), ("rocket.jpg", 2)]


def test_score_then_filter_equals_run(tmp_path, planted):
    recipe = pairs_recipe(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    run(recipe, planted["inputs"], a, models={"clip": str(CLIP_DIR)}, device="cpu", progress=False)
    assert main(["score", str(recipe), *planted["inputs"], "--out", str(b), "--model", f"clip={CLIP_DIR}", "--device", "cpu", "--quiet"]) == 0
    assert (b / "attributes" / "clip_alignment" / "a.parquet").exists() and not (b / "kept").exists() and not (b / "dropped").exists()
    assert main(["filter", str(b), "--quiet"]) == 0
    assert digests(a) == digests(b)


def test_comm_kept_documents_are_written_as_comm_records(tmp_path, sample_dir):
    out = tmp_path / "out"
    recipe = tmp_path / "comm.yaml"
    recipe.write_text(recipes.preset_text("comm").replace('"clip_alignment_score >= 0.10"', '"clip_alignment_score >= -1.0"').replace('"sequence_f > 0"', '"sequence_f > -2"').replace('"coherence_margin > 0"', '"coherence_margin > -2"'))
    s = run(recipe, [str(sample_dir / "comm.jsonl")], out, models={"clip": str(CLIP_DIR), "text": str(EMBEDDER_DIR)}, device="cpu", progress=False)
    assert s["documents"]["kept"] == 4
    lines = (out / "kept" / "comm.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["title"] and isinstance(first["step_info"], list)
    back = pl.concat(list(interleaf.read(out / "kept" / "comm.jsonl", image_root=sample_dir)))
    src = pl.concat(list(interleaf.read(sample_dir / "comm.jsonl")))
    cols = ["doc_id", "pos", "kind", "step", "text", "image", "meta"]
    assert back.select(cols).equals(src.select(cols))


def test_comm_drops_a_document_with_shuffled_steps_with_real_minilm(tmp_path, real_minilm):
    """CoMM's text-development view on real sentence embeddings: a how-to with its steps in
    the least coherent order is dropped by text_development; the original is kept."""
    import itertools

    from test_signal_layer import HOWTOS, MINILM_HOWTOS

    with np.load(MINILM_HOWTOS) as z:
        stored = z["embeddings"]
    steps = HOWTOS[0]
    emb = stored[: len(steps)]
    # The order whose consecutive steps agree least (the planted shuffle).
    worst = min(itertools.permutations(range(len(steps))), key=lambda p: sum(float(emb[p[i]] @ emb[p[i + 1]]) for i in range(len(p) - 1)))
    img = tmp_path / "images"
    img.mkdir()
    shutil.copy(SAMPLE_IMAGES / "coffee.jpg", img / "coffee.jpg")

    def doc(doc_id, order):
        return _line({"id": doc_id, "title": "Make tea", "step_info": [[{"type": "text", "content": steps[i]}, {"type": "image", "image_path": "images/coffee.jpg"}] for i in order]})

    src = tmp_path / "comm.jsonl"
    src.write_bytes(doc("ordered", range(len(steps))) + doc("shuffled", worst))
    recipe = tmp_path / "comm.yaml"
    recipe.write_text(recipes.preset_text("comm").replace('"clip_alignment_score >= 0.10"', '"clip_alignment_score >= -1.0"').replace('"sequence_f > 0"', '"sequence_f > -2"'))
    out = tmp_path / "out"
    s = run(recipe, [str(src)], out, models={"clip": str(CLIP_DIR), "text": str(real_minilm)}, device="cpu", progress=False)
    docs = {r["doc_id"]: r for r in dropped(out).filter(pl.col("pos").is_null()).iter_rows(named=True)}
    assert set(docs) == {"shuffled"} and docs["shuffled"]["filter"] == "text_development"
    assert docs["shuffled"]["value"] <= 0 and s["documents"]["kept"] == 1


def test_comm_drops_a_step_image_its_text_does_not_describe_with_a_trained_clip(tmp_path):
    """CoMM's image-text view at its own threshold (0.10): each step's image against that step's
    text; the step whose photograph is the wrong one loses its image, the others keep theirs."""
    caption = {r["image"].split("/")[-1]: r["caption"] for r in sample_pairs()}
    steps = [("coffee.jpg", "coffee.jpg"), ("chelsea.jpg", "chelsea.jpg"), ("rocket.jpg", "camera.jpg"), ("retina.jpg", "retina.jpg")]
    doc = {"id": "howto", "title": "Four photographs", "step_info": [[{"type": "text", "content": caption[t]}, {"type": "image", "image_path": f"images/{i}"}] for t, i in steps]}
    src = tmp_path / "comm.jsonl"
    src.write_bytes(_line(doc))
    recipe = tmp_path / "comm.yaml"
    recipe.write_text(recipes.preset_text("comm").replace('"sequence_f > 0"', '"sequence_f > -2"').replace('"coherence_margin > 0"', '"coherence_margin > -2"'))
    out = tmp_path / "out"
    s = run(recipe, [str(src)], out, models={"clip": str(CLIP_SAMPLE_DIR), "text": str(EMBEDDER_DIR)}, image_root=SAMPLE_IMAGES.parent, device="cpu", progress=False)
    d = dropped(out)
    assert d.filter(pl.col("pos").is_null()).height == 0 and s["documents"]["kept"] == 1
    gone = d.filter(pl.col("pos").is_not_null())
    assert gone.get_column("filter").to_list() == ["alignment"] and gone.get_column("value").item() < 0.10
    kept = pl.concat(list(interleaf.read(out / "kept" / "comm.jsonl", image_root=SAMPLE_IMAGES.parent)))
    imgs = kept.filter(pl.col("kind") == "image")
    assert imgs.get_column("step").to_list() == [0, 1, 3] and imgs.get_column("image_ref").to_list() == ["images/coffee.jpg", "images/chelsea.jpg", "images/retina.jpg"]


def test_shard_names_stay_inside_the_output_folder():
    from interleaf.pipeline import plan_shards

    names = [s.name for s in plan_shards(["a/..jsonl", "b/x y;rm -rf.tar", "c/.hidden.parquet", "d/a.jsonl", "e/a.jsonl.gz", "f/Ünïcode.jsonl"])]
    assert names == ["shard", "x_y_rm_-rf", "hidden", "a", "a-4", "_n_code"]
    assert all("/" not in n and not n.startswith(".") for n in names)


def test_minhash_dedup_across_shards_scores_the_estimated_jaccard(tmp_path):
    from interleaf.dedup import MinHasher

    base = "the river runs past the old mill and under the stone bridge where the children of the village gather every summer evening to watch the boats come in from the sea"
    near = base.replace("the sea", "the bay")
    other = "a completely different caption about a red bicycle leaning against a blue wall in a narrow street of the old town on a quiet sunday morning"
    img = tmp_path / "images"
    img.mkdir()
    shutil.copy(SAMPLE_IMAGES / "astronaut.jpg", img / "a.jpg")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(_line({"id": "orig", "image": "images/a.jpg", "caption": base}) + _line({"id": "other", "image": "images/a.jpg", "caption": other}))
    b.write_bytes(_line({"id": "near", "image": "images/a.jpg", "caption": near}))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("signals:\n  caption: {type: caption}\ndedup:\n  - {name: minhash, method: minhash, threshold: 0.8}\n")
    out = tmp_path / "out"
    s = run(recipe, [str(a), str(b)], out, progress=False)
    d = dropped(out)
    assert d.get_column("doc_id").to_list() == ["near"] and s["dropped_documents"] == {"minhash": 1}
    row = d.row(0, named=True)
    sigs = MinHasher(num_perm=128, n=5, seed=1).signatures([base, near])
    assert row["value"] == pytest.approx(float((sigs[0] == sigs[1]).mean()))
    assert row["detail"] == "duplicate of orig (shard a, doc_index 0)" and row["threshold"] == 0.8


def test_minhash_survivors_are_clustered_again_with_the_bands_of_the_clustering_stage(tmp_path):
    """With no filter dropping anything, clustering the survivors again gives the clustering
    stage's own clusters: the documents the step drops are exactly those whose cluster is not
    their own row, on captions whose Jaccard estimates spread around the threshold."""
    import random

    rng = random.Random(0)
    # First a document with no text (no signature): clusters are numbered by global row still.
    lines = [_line({"doc_id": "textless", "texts": [None], "images": [None], "metadata": "{}"})]
    words = "river mill bridge stone village summer evening boats harbour market garden window street tower church field forest hill lake road".split()
    for k in range(40):
        base = [rng.choice(words) for _ in range(200)]
        for v in range(8):
            text = list(base)
            for i in rng.sample(range(200), v):  # 0 to 7 words replaced: Jaccard 1 down to ~0.7
                text[i] = rng.choice(words) + "s"
            lines.append(_line({"doc_id": f"{k}-{v}", "texts": [" ".join(text)], "images": [None], "metadata": "{}"}))
    src = tmp_path / "c.jsonl"
    src.write_bytes(b"".join(lines))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("signals:\n  caption: {type: caption}\ndedup:\n  - {name: minhash, method: minhash, threshold: 0.8}\n")
    out = tmp_path / "out"
    run(recipe, [str(src)], out, format="obelics", progress=False)
    clusters = pl.read_parquet(out / "attributes" / "minhash" / "c.parquet")
    linked = set(clusters.filter(pl.col("minhash_cluster") != pl.col("doc_index")).get_column("doc_id"))
    gone = set(dropped(out).filter(pl.col("filter") == "minhash").get_column("doc_id"))
    assert gone == linked and 100 < len(gone) < 280


def phash_chain(tmp_path: Path, bridge_caption: str = "bridge") -> tuple[list[str], Path, list[int]]:
    """Two images A and B far apart in pHash, joined by blends of the two, each within 4 bits
    of the one before: one shard per third of the chain, the bridges' captions
    ``bridge_caption``, and a recipe that drops one-word captions, then runs pHash dedup at
    radius 4. Returns (shards, recipe, the chain's hashes)."""
    import io

    from PIL import Image

    from interleaf.dedup import phash

    rng = np.random.default_rng(7)
    a, b = (Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((256, 256), Image.BICUBIC) for _ in range(2))
    blends = []
    for t in np.linspace(0, 1, 41):
        buf = io.BytesIO()
        Image.blend(a, b, float(t)).save(buf, "JPEG", quality=95)
        blends.append(buf.getvalue())
    hs = phash(blends).get_column("hash").to_list()
    dist = lambda x, y: (x ^ y).bit_count()  # noqa: E731
    chain = [0]
    while chain[-1] != len(blends) - 1:
        chain.append(max(j for j in range(chain[-1] + 1, len(blends)) if j == chain[-1] + 1 or dist(hs[chain[-1]], hs[j]) <= 4))
    steps = [dist(hs[x], hs[y]) for x, y in zip(chain, chain[1:])]
    assert max(steps) <= 4 and dist(hs[chain[0]], hs[chain[-1]]) > 8 and len(chain) >= 4, (chain, steps)
    (tmp_path / "images").mkdir(exist_ok=True)
    records = []
    for k, i in enumerate(chain):
        (tmp_path / "images" / f"c{i}.jpg").write_bytes(blends[i])
        end = k in (0, len(chain) - 1)
        records.append(_line({"id": f"c{i}", "image": f"images/c{i}.jpg", "caption": "a long enough caption about blobs of colour" if end else bridge_caption}))
    shards = []
    third = -(-len(records) // 3)
    for k in range(3):
        p = tmp_path / f"chain{k}.jsonl"
        p.write_bytes(b"".join(records[k * third : (k + 1) * third]))
        shards.append(str(p))
    recipe = tmp_path / "chain.yaml"
    recipe.write_text("signals:\n  caption: {type: caption}\n  image: {type: image}\ndedup:\n  - {name: phash, method: phash, radius: 4}\nfilters:\n  doc:\n    caption_words: \"caption_words > 1\"\n")
    return shards, recipe, [hs[i] for i in chain]


def test_dedup_clusters_link_only_the_documents_the_filters_kept(tmp_path):
    # A review found two kept images 34 bits apart deduplicated as one cluster, linked through
    # images that the caption filter had dropped ("value 34, threshold 5"): clusters are now
    # made among the filters' survivors alone.
    shards, recipe, hs = phash_chain(tmp_path)
    out = tmp_path / "out"
    s = run(recipe, shards, out, progress=False)
    assert s["dropped_documents"] == {"caption_words": len(hs) - 2} and s.kept_documents == 2
    # Bridges that pass the filters link the ends, as a cluster does: the far end goes, and its
    # value is its distance to the kept document the detail names (the rule says it is a chain).
    kept_bridges = tmp_path / "kept_bridges"
    kept_bridges.mkdir()
    shards, recipe, hs = phash_chain(kept_bridges, bridge_caption="a bridge between the two")
    s = run(recipe, shards, kept_bridges / "out", progress=False)
    assert s.kept_documents == 1 and s["dropped_documents"] == {"phash": len(hs) - 1}
    last = dropped(kept_bridges / "out").filter(pl.col("doc_id") == "c40").row(0, named=True)
    assert last["value"] == (hs[0] ^ hs[-1]).bit_count() > 4 and last["detail"] == "duplicate of c0 (shard chain0, doc_index 0)"
    assert last["rule"] == "pHash cluster: linked by Hamming distances <= 4" and last["threshold"] == 4.0


def minhash_chain(tmp_path: Path) -> tuple[list[str], Path, list[str]]:
    """Captions that drift a word at a time from A to B (each next one sharing a MinHash band
    with the one before at threshold 0.8, A and B sharing none): the bridges carry a long extra
    word, so a `caption_chars` filter drops them. Returns (shards, recipe, the chain's ids)."""
    from interleaf.dedup import MinHasher
    from interleaf.dedup.minhash import lsh_params

    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(5000)]
    words = list(rng.choice(vocab, 300))
    texts = [" ".join(words)]
    for _ in range(120):
        words[int(rng.integers(len(words)))] = str(rng.choice(vocab))
        texts.append(" ".join(words))
    tail = " " + "z" * 60
    bands, rows = lsh_params(0.8, 128)
    hasher = MinHasher(num_perm=128, n=5, seed=1)
    sigs = hasher.signatures([t + tail for t in texts])
    ends = hasher.signatures([texts[0], texts[-1]])
    shares = lambda a, b: any((a[k * rows : (k + 1) * rows] == b[k * rows : (k + 1) * rows]).all() for k in range(bands))  # noqa: E731
    # A chain whose links share a band, from A to the last text, ends without the tail.
    sigs[0], sigs[-1] = ends[0], ends[1]
    chain = [0]
    while chain[-1] != len(texts) - 1:
        nxt = [j for j in range(chain[-1] + 1, len(texts)) if shares(sigs[chain[-1]], sigs[j])]
        assert nxt, "the chain broke"
        chain.append(max(nxt))
    assert not shares(ends[0], ends[1]) and len(chain) >= 3, chain
    (tmp_path / "images").mkdir(exist_ok=True)
    shutil.copy(SAMPLE_IMAGES / "astronaut.jpg", tmp_path / "images" / "a.jpg")
    lines = [_line({"id": f"t{i}", "image": "images/a.jpg", "caption": texts[i] + ("" if k in (0, len(chain) - 1) else tail)}) for k, i in enumerate(chain)]
    shards = [str(tmp_path / f"mh{k}.jsonl") for k in range(2)]
    Path(shards[0]).write_bytes(b"".join(lines[: len(lines) // 2]))
    Path(shards[1]).write_bytes(b"".join(lines[len(lines) // 2 :]))
    recipe = tmp_path / "mh.yaml"
    limit = max(len(texts[0]), len(texts[-1])) + 30
    recipe.write_text(f"signals:\n  caption: {{type: caption}}\ndedup:\n  - {{name: minhash, method: minhash, threshold: 0.8}}\nfilters:\n  doc:\n    short: \"caption_chars < {limit}\"\n")
    return shards, recipe, [f"t{i}" for i in chain]


def test_minhash_clusters_link_only_the_documents_the_filters_kept(tmp_path):
    shards, recipe, ids = minhash_chain(tmp_path)
    s = run(recipe, shards, tmp_path / "out", progress=False)
    assert s.kept_documents == 2 and s["dropped_documents"] == {"short": len(ids) - 2}
    # Before the filters the whole chain is one cluster (what used to drop the far end).
    clusters = pl.concat([pl.read_parquet(f) for f in sorted((tmp_path / "out" / "attributes" / "minhash").glob("*.parquet"))]).get_column("minhash_cluster")
    assert clusters.n_unique() == 1


@pytest.mark.parametrize(("radix_bits", "gather"), [(12, 1 << 20), (3, 2), (16, 1)])
def test_fraction_thresholds_by_radix_passes_equal_a_full_sort(tmp_path, monkeypatch, radix_bits, gather):
    """DataComp's top-fraction threshold is found by per-shard radix passes without holding the
    column; it equals the floor(N f) + 1-th largest of the sorted column, ties, signs, NaN and
    nulls included, with any number of passes."""
    from types import SimpleNamespace

    from interleaf import pipeline

    monkeypatch.setattr(pipeline, "_RADIX_BITS", radix_bits)
    monkeypatch.setattr(pipeline, "_GATHER", gather)
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(size=400), np.full(50, 0.25), [-0.0, 0.0, np.nan, np.inf, -np.inf, 1e-310, -1e-310]])
    rng.shuffle(values)
    col = pl.Series("s", values).scatter([3, 77, 200], None)
    shards = []
    for i, (lo, hi) in enumerate([(0, 100), (100, 100), (100, 300), (300, len(col))]):
        (tmp_path / "attributes" / "sig").mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"s": col[lo:hi]}).write_parquet(tmp_path / "attributes" / "sig" / f"p{i}.parquet")
        shards.append(pipeline.Shard(f"p{i}", "", i))
    opts = SimpleNamespace(out=str(tmp_path))
    run_inline = lambda fn, jobs, stage: [fn(*j) for j in jobs]  # noqa: E731
    clean = col.drop_nulls().drop_nans().sort(descending=True)
    for fraction in (0.0, 0.001, 0.1, 0.3, 0.5, 0.9, 0.999, 1.0):
        k = math.floor(len(clean) * fraction) + 1
        expect = float(clean[k - 1]) if k <= len(clean) else float("-inf")
        assert pipeline._kth_largest(opts, shards, "sig", "s", fraction, run_inline) == expect, fraction
    # A -0.0 threshold keeps its sign (the old full sort gave -0.0 here too).
    pl.DataFrame({"s": [-0.0, -0.0, 1.0, 2.0]}).write_parquet(tmp_path / "attributes" / "sig" / "z.parquet")
    got = pipeline._kth_largest(opts, [pipeline.Shard("z", "", 0)], "sig", "s", 0.5, run_inline)
    assert got == 0.0 and math.copysign(1.0, got) == -1.0
    empty = [pipeline.Shard("p1", "", 0)]
    assert pipeline._kth_largest(opts, empty, "sig", "s", 0.3, run_inline) == float("-inf")


def test_a_long_shard_reports_its_progress_while_it_is_scored(tmp_path, sample_dir, monkeypatch, capsys):
    from interleaf import pipeline

    monkeypatch.setattr(pipeline, "PROGRESS_EVERY", 0.0)
    run("pairs-basic", [str(sample_dir / "pairs.jsonl")], tmp_path / "o", batch_size=4, progress=True)
    err = capsys.readouterr().err.splitlines()
    lines = [x for x in err if "documents so far" in x]
    assert [int(x.split(": ")[2].split(" ")[0]) for x in lines] == [4, 8, 12, 14]
    # The write stage reads the shard again: it says so too.
    written = [x for x in err if x.startswith("write: ") and "read so far" in x]
    assert [int(x.split(": ")[2].split(" ")[0]) for x in written] == [4, 8, 12, 14]
    run("pairs-basic", [str(sample_dir / "pairs.jsonl")], tmp_path / "q", batch_size=4, progress=False)
    assert "so far" not in capsys.readouterr().err


def test_a_folder_named_ray_is_not_taken_for_ray(tmp_path, monkeypatch):
    """Without Ray installed, a ray/ folder in the working directory (Ray's own /tmp/ray) imports
    as an empty namespace package: the engine says Ray is missing, not an AttributeError."""
    import sys
    import types

    import interleaf.ray as iray

    folder = types.ModuleType("ray")
    folder.__path__ = [str(tmp_path / "ray")]  # what `import ray` gives for a bare folder
    monkeypatch.setitem(sys.modules, "ray", folder)
    with pytest.raises(ImportError, match=r"pip install 'interleaf\[ray\]'.*not Ray but the folder .*/ray\)"):
        iray._ray()


def test_ray_dedup_without_the_ray_engine_is_refused(tmp_path, planted):
    """--ray-dedup says where a Ray run clusters: without --engine ray it was accepted and
    did nothing (as --address is refused there)."""
    with pytest.raises(ValueError, match=r"ray_dedup='distributed' \(--ray-dedup\) needs engine='ray'"):
        run("pairs-basic", planted["inputs"], tmp_path / "out", ray_dedup="distributed", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_rerun_without_a_signal_or_step_removes_their_outputs(tmp_path, planted):
    """attributes/ and signatures/ hold the recipe's signals and steps only: a rerun with the
    image signal and the pHash step taken out removes their folders and markers (they stayed,
    columns of a recipe no longer in use); a folder the run did not write stays."""
    full, less = tmp_path / "full.yaml", tmp_path / "less.yaml"
    full.write_text("signals:\n  caption: {type: caption}\n  image: {type: image}\ndedup:\n  - {name: phash, method: phash}\n  - {name: near, method: phash, scope: document}\nfilters:\n  doc:\n    words: 'caption_words > 2'\n")
    less.write_text("signals:\n  caption: {type: caption}\nfilters:\n  doc:\n    words: 'caption_words > 2'\n")
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    run(full, planted["inputs"], out, progress=False)
    assert {p.name for p in (out / "attributes").iterdir()} == {"_base", "caption", "image", "phash", "near"}
    (out / "attributes" / "mine").mkdir()
    run(less, planted["inputs"], out, progress=False)
    run(less, planted["inputs"], fresh, progress=False)
    assert {p.name for p in (out / "attributes").iterdir()} == {"_base", "caption", "mine"}
    assert not (out / "signatures" / "phash").exists() and not any((out / ".interleaf" / "markers" / stage / name).exists() for stage, name in (("score", "image"), ("score", "near"), ("score", "sig.phash"), ("dedup", "phash")))
    for name in ("_base", "caption"):
        for f in (fresh / "attributes" / name).iterdir():
            assert f.read_bytes() == (out / "attributes" / name / f.name).read_bytes()


def test_a_base_url_with_credentials_is_refused_before_the_run(tmp_path):
    """Checked when the run is planned (it was only in each batch's judge, which failed every
    document and exited 0), with a hint that names the run's own key option."""
    recipe = tmp_path / "judge.yaml"
    recipe.write_text("llm: {}\nsignals:\n  judge: {type: llm_judge, judge: comm}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must not hold credentials") as e:
        run(recipe, [str(SAMPLE_IMAGES.parent / "comm.jsonl")], tmp_path / "out", llm={"base_url": "http://alice:secret@127.0.0.1:9/v1", "model": "m"}, progress=False)
    assert "secret" not in str(e.value) and "--llm-api-key-env" in str(e.value)
    assert not (tmp_path / "out").exists()


_STEPS_RECIPE = """signals:
  caption: {type: caption, level: doc}
  image: {type: image}
  text: {type: text, level: doc}
dedup:
  - {name: mh, method: minhash, threshold: THRESHOLD}
  - {name: ph, method: phash, radius: 5SCOPE}
filters:
  doc:
    caption_words: "caption_words > 2"
"""


def _steps_recipe(tmp_path: Path, name: str, threshold: float = 0.7, scope: str = "") -> Path:
    p = tmp_path / name
    p.write_text(_STEPS_RECIPE.replace("THRESHOLD", str(threshold)).replace("SCOPE", scope))
    return p


def test_refilter_refuses_clusters_of_another_dedup_configuration(tmp_path, planted):
    """A rerun with other dedup settings stopped after its score stage (killed in dedup) leaves
    the old clusters beside the new signatures: `interleaf filter` refused nothing and applied
    them under the new recipe. It refuses now, and a run whose dedup never ran says so."""
    from interleaf.pipeline import refilter

    out = tmp_path / "out"
    run(_steps_recipe(tmp_path, "a.yaml", 0.7), planted["inputs"], out, progress=False)
    before = digests(out)
    run(_steps_recipe(tmp_path, "b.yaml", 0.5), planted["inputs"], out, stages=("score",), progress=False)
    with pytest.raises(ValueError, match=r"the clusters of dedup step mh in 2 shard\(s\) .* run `interleaf run` again"):
        refilter(out, progress=False)
    assert {k: v for k, v in digests(out).items() if k.startswith(("kept", "dropped"))} == {k: v for k, v in before.items() if k.startswith(("kept", "dropped"))}
    fresh = tmp_path / "fresh"
    run(_steps_recipe(tmp_path, "c.yaml", 0.7), planted["inputs"], fresh, stages=("score",), progress=False)
    with pytest.raises(ValueError, match=r"the clusters of dedup step mh .* missing"):
        refilter(fresh, progress=False)


def test_a_name_that_changes_stage_is_recomputed(tmp_path, planted):
    """attributes/<name>/ is written by the score stage (signals, document-scope pHash) and by
    the dedup stage (dataset steps); each trusted its own marker though the other had rewritten
    the file since: a pHash step moved to document scope and back, or a signal name that was a
    dataset step for one run, came back with the other stage's file (a traceback, or the wrong
    columns). Markers now vouch for the file they saw written."""
    inputs = planted["inputs"]
    a, b = _steps_recipe(tmp_path, "a.yaml"), _steps_recipe(tmp_path, "b.yaml", scope=", scope: document")
    out, clean = tmp_path / "out", tmp_path / "clean"
    run(a, inputs, clean, progress=False)
    for recipe in (a, b, a):
        run(recipe, inputs, out, progress=False)
    assert digests(out) == digests(clean)
    sig = tmp_path / "sig.yaml"
    sig.write_text("signals:\n  tx: {type: text, level: doc}\n")
    step = tmp_path / "step.yaml"
    step.write_text("dedup:\n  - {name: tx, method: exact}\n")
    out2 = tmp_path / "out2"
    for recipe in (sig, step, sig):
        run(recipe, inputs, out2, progress=False)
    assert "tx_n_words" in pl.read_parquet(out2 / "attributes" / "tx" / "a.parquet").columns


def test_a_signal_named_like_a_steps_signatures_keeps_its_own_markers(tmp_path, planted):
    """Signal `sig_mh` and dataset step `mh` shared the marker folder score/sig_mh: every rerun
    recomputed both and `interleaf filter` always refused. A rerun now skips both stages."""
    from interleaf.pipeline import refilter

    recipe = tmp_path / "r.yaml"
    recipe.write_text("signals:\n  sig_mh: {type: text, level: doc}\ndedup:\n  - {name: mh, method: minhash}\n")
    out = tmp_path / "out"
    run(recipe, planted["inputs"], out, progress=False)
    again = run(recipe, planted["inputs"], out, progress=False)
    assert again["stages"]["score"]["skipped"] == 2 and again["stages"]["dedup"]["skipped"] == 2
    refilter(out, progress=False)


def test_refilter_writes_kept_as_the_run_did(tmp_path, planted):
    """A plain `interleaf filter` after `run --output-format webdataset` wrote kept/ as jsonl,
    and one with an edited recipe after `--embed-images` wrote image paths: the run's output
    form is kept unless the filter is told otherwise (--output-format, --[no-]embed-images)."""
    from interleaf.cli import main

    recipe = _steps_recipe(tmp_path, "a.yaml")
    out = tmp_path / "out"
    image_root = str(planted["root"])
    assert main(["run", str(recipe), *planted["inputs"], "--out", str(out), "--output-format", "webdataset", "--image-root", image_root, "--quiet"]) == 0
    assert main(["filter", str(out), "--quiet"]) == 0
    assert sorted(p.suffix for p in (out / "kept").iterdir()) == [".tar", ".tar"]
    with_format = tmp_path / "with_format.yaml"
    with_format.write_text(recipe.read_text() + "output: {format: jsonl}\n")
    assert main(["filter", str(out), "--recipe", str(with_format), "--quiet"]) == 0  # an edited recipe's own format wins
    assert sorted(p.suffix for p in (out / "kept").iterdir()) == [".jsonl", ".jsonl"]
    out2 = tmp_path / "out2"
    assert main(["run", str(recipe), *planted["inputs"], "--out", str(out2), "--embed-images", "--image-root", image_root, "--quiet"]) == 0
    edited = tmp_path / "edited.yaml"
    edited.write_text(recipe.read_text().replace("caption_words > 2", "caption_words > 3"))
    assert main(["filter", str(out2), "--recipe", str(edited), "--quiet"]) == 0
    first = json.loads((out2 / "kept" / "a.jsonl").read_text().splitlines()[0])
    assert first["image"].startswith("data:image/")
    assert main(["filter", str(out2), "--recipe", str(edited), "--no-embed-images", "--quiet"]) == 0
    assert not json.loads((out2 / "kept" / "a.jsonl").read_text().splitlines()[0])["image"].startswith("data:")


def test_an_output_folder_a_recursive_glob_input_would_read_is_refused(tmp_path, planted, monkeypatch):
    """`run 'd/**/*.jsonl' --out d/out` ran once, and the same command, as documented for a
    resume, then refused (its glob now matched out/kept/*.jsonl): refused before anything is
    written. A glob that cannot reach the outputs (d/*.jsonl) is fine."""
    recipe = _steps_recipe(tmp_path, "a.yaml")
    monkeypatch.chdir(planted["root"])
    with pytest.raises(ValueError, match=r"the input glob \*\*/\*\.jsonl would match the outputs in out \(such as kept/a\.jsonl\)"):
        run(recipe, ["**/*.jsonl"], "out", progress=False)
    assert not Path("out").exists()
    run(recipe, ["*.jsonl"], "out", progress=False)
    run(recipe, ["*.jsonl"], "out", progress=False)  # the same command again: a resume


def test_a_folder_restored_from_an_archive_or_written_before_stamps_resumes(tmp_path, planted):
    """Marker stamps tolerate whole-second times (tar keeps seconds, zip two): a restored
    folder resumes with every stage skipped. A folder of the previous layout (no stamps,
    signature markers at score/sig_<step>) refilters and resumes too."""
    from interleaf.pipeline import refilter

    recipe = _steps_recipe(tmp_path, "a.yaml")
    out = tmp_path / "out"
    run(recipe, planted["inputs"], out, progress=False)
    for f in out.rglob("*"):
        if f.is_file():
            st = f.stat()
            os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns // 1_000_000_000 * 1_000_000_000))
    again = run(recipe, planted["inputs"], out, progress=False)
    assert again["stages"]["score"]["skipped"] == 2 and again["stages"]["dedup"]["skipped"] == 2 and again["stages"]["write"]["skipped"] == 2
    markers = out / ".interleaf" / "markers"
    for m in markers.rglob("*.json"):
        d = json.loads(m.read_text())
        d.pop("outputs", None)
        m.write_text(json.dumps(d))
    for step in ("mh", "ph"):
        (markers / "score" / f"sig.{step}").rename(markers / "score" / f"sig_{step}")
    refilter(out, progress=False)
    again = run(recipe, planted["inputs"], out, progress=False)
    assert again["stages"]["score"]["skipped"] == 2 and again["stages"]["dedup"]["skipped"] == 2


def test_the_glob_check_follows_links_and_passes_hidden_folders_by(tmp_path, planted, monkeypatch):
    recipe = _steps_recipe(tmp_path, "a.yaml")
    monkeypatch.chdir(tmp_path)
    Path("dl").symlink_to(planted["root"])
    with pytest.raises(ValueError, match="would match the outputs"):
        run(recipe, ["dl/**/*.jsonl"], str(planted["root"] / "out"), progress=False)  # the same tree through a link
    run(recipe, ["dl/**/*.jsonl"], str(planted["root"] / ".cache" / "out"), progress=False)  # glob skips dot folders


def test_a_phash_steps_pixel_limit(tmp_path, sample_dir):
    """``max_pixels`` on a pHash step (and ``interleaf dedup --max-pixels``) bounds the images it
    decodes: above it an image is not hashed and its document stays alone; other methods
    refuse the option; a folder of a step without it keeps its markers' keys."""
    from interleaf.pipeline import step_key

    recipe = "name: t\nsignals:\n  image: {type: image}\ndedup:\n  - {name: phash, method: phash, radius: 5%s}\n"
    (tmp_path / "default.yaml").write_text(recipe % "")
    (tmp_path / "small.yaml").write_text(recipe % ", max_pixels: 100")
    default = run(str(tmp_path / "default.yaml"), sample_dir / "pairs.jsonl", tmp_path / "a", progress=False)
    small = run(str(tmp_path / "small.yaml"), sample_dir / "pairs.jsonl", tmp_path / "b", progress=False)
    assert default.data["dedup"]["phash"]["signed"] == 14 and default.data["documents"]["dropped"] == 2
    assert small.data["dedup"]["phash"]["signed"] == 0 and small.data["documents"]["dropped"] == 0
    step = recipes.load(str(tmp_path / "default.yaml")).dedup[0]
    assert "max_pixels" not in step_key(step) and step_key(recipes.load(str(tmp_path / "small.yaml")).dedup[0])["max_pixels"] == 100
    (tmp_path / "bad.yaml").write_text("name: t\ndedup:\n  - {name: m, method: minhash, max_pixels: 100}\n")
    with pytest.raises(recipes.RecipeError, match="max_pixels: not read by minhash steps"):
        recipes.load(str(tmp_path / "bad.yaml"))
    assert main(["dedup", str(sample_dir / "pairs.jsonl"), "--method", "phash", "--max-pixels", "100", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["phash"]["max_pixels"] == 100 and summary["phash"]["unhashed"] == 14 and summary["duplicate_documents"] == 0
    assert main(["dedup", str(sample_dir / "pairs.jsonl"), "--method", "minhash", "--max-pixels", "100", "--out", str(tmp_path / "e")]) == 2


def test_the_readme_recipe_is_the_pairs_preset():
    """The recipe the README shows (`interleaf recipes show pairs`, annotated) has the preset's
    models, signals, dedup steps and filters: a user copying it keeps DataComp's English check."""
    import yaml

    from interleaf.recipes import preset_text

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"interleaf recipes show pairs > my.yaml.*?```yaml\n(.*?)```", readme, re.S)
    assert block is not None
    shown, preset = yaml.safe_load(block.group(1)), yaml.safe_load(preset_text("pairs"))
    for key in ("name", "models", "signals", "dedup"):
        assert shown[key] == preset[key], key
    assert shown["filters"] == {**preset["filters"], "node": {}}
    assert shown["output"] == {"format": "auto"} and "output" not in preset
