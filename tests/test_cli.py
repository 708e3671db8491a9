"""The interleaf command line: inspect, convert, dedup, image-stats, signals, demo, models list, and --help
on every command; outputs are parsed and checked against the data."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import polars as pl
import pytest
from conftest import nodes_only, read_all
from PIL import Image

from interleaf.cli import build_parser, main

MODEL_FIXTURES = Path(__file__).parent / "fixtures" / "models"


def number(pattern: str, text: str) -> int:
    """The integer (with thousands separators) captured by ``pattern`` in ``text``."""
    m = re.search(pattern, text, re.MULTILINE)
    assert m, f"{pattern!r} not in output:\n{text}"
    return int(m.group(1).replace(",", ""))


def tar_pairs(path) -> dict[str, dict[str, bytes]]:
    """The members of a pairs shard by key, then by extension, read with tarfile."""
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as t:
        for m in t.getmembers():
            key, ext = m.name.split(".", 1)
            out.setdefault(key, {})[ext] = t.extractfile(m).read()
    return out


def test_inspect_reports_counts_sizes_and_errors(sample_dir, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"caption": "x", "image": "missing.jpg"}\n{not json\n')
    assert main(["inspect", str(sample_dir / "comm.jsonl"), str(tmp_path / "bad.jsonl"), "--json", "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)
    comm = read_all(sample_dir / "comm.jsonl")
    comm_text = comm.filter(pl.col("kind") == "text")
    assert s["files"] == 2
    assert s["documents"] == comm.get_column("doc_id").n_unique() + 2
    # bad.jsonl adds an image node without bytes and the text "x"; the malformed line has no node.
    assert s["nodes"] == comm.height + 2
    assert s["text_nodes"] == comm_text.height + 1
    assert s["image_nodes"] == comm.filter(pl.col("kind") == "image").height + 1
    assert s["text_bytes"] == comm_text.get_column("text").str.len_bytes().sum() + 1
    assert s["errors"] == {"missing_image": 1, "malformed_json": 1}
    assert s["error_documents"] == 2
    assert s["mean_nodes_per_document"] == round(s["nodes"] / s["documents"], 3)


def test_inspect_text_output_prints_the_counts_of_the_shard(sample_dir, capsys):
    shard = sample_dir / "pairs-000000.tar"
    assert main(["inspect", str(shard), "--quiet"]) == 0
    out = capsys.readouterr().out
    pairs = tar_pairs(shard)
    image_sizes = sorted(len(v) for p in pairs.values() for ext, v in p.items() if ext in ("jpg", "png"))
    text_bytes = sum(len(p["txt"]) for p in pairs.values())
    assert len(pairs) == len(image_sizes) == 14
    assert number(r"^files\s+([\d,]+)$", out) == 1
    assert number(r"^documents\s+([\d,]+)$", out) == 14
    assert number(r"^nodes\s+([\d,]+)\s", out) == 28
    assert number(r"^nodes .*\(text ([\d,]+),", out) == 14
    assert number(r"^nodes .*, image ([\d,]+)\)", out) == 14
    assert number(r"^text bytes\s+([\d,]+)$", out) == text_bytes
    assert number(r"^image bytes\s+([\d,]+)$", out) == sum(image_sizes)
    assert number(r"^bytes read\s+([\d,]+)\s", out) == shard.stat().st_size
    assert number(r"^error documents\s+([\d,]+)$", out) == 0
    assert number(r"^image size\s+min ([\d,]+)\s", out) == image_sizes[0]
    assert number(r"^image size .* max ([\d,]+) bytes$", out) == image_sizes[-1]
    assert number(r"^image size .* median ([\d,]+)\s", out) == int(pl.Series(image_sizes).quantile(0.5))


BAD_LINES = '{"caption": "x", "image": "missing.jpg"}\n{not json\n{also not json\n'


def test_inspect_text_output_lists_errors_by_kind(sample_dir, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text(BAD_LINES)
    assert main(["inspect", str(sample_dir / "pairs.jsonl"), str(tmp_path / "bad.jsonl"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert number(r"^files\s+([\d,]+)$", out) == 2
    assert number(r"^documents\s+([\d,]+)$", out) == 14 + 3
    assert number(r"^error documents\s+([\d,]+)$", out) == 3
    assert number(r"^  malformed_json\s+([\d,]+)$", out) == 2
    assert number(r"^  missing_image\s+([\d,]+)$", out) == 1


def test_inspect_text_output_when_no_image_node_has_bytes(tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text(BAD_LINES)
    assert main(["inspect", str(tmp_path / "bad.jsonl"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert number(r"^documents\s+([\d,]+)$", out) == 3
    assert number(r"^error documents\s+([\d,]+)$", out) == 3
    assert "images not loaded" not in out


def test_inspect_says_when_mmc4_images_were_not_loaded(sample_dir, tmp_path, capsys):
    """MMC4 names its images by file name and loads them only with --image-root: without it
    the files are not read and nothing is an error, which inspect says (a run would score
    them as missing_image)."""
    mmc4 = tmp_path / "mmc4.jsonl"
    assert main(["convert", str(sample_dir / "comm.jsonl"), str(mmc4), "--to", "mmc4", "--quiet"]) == 0
    images = read_all(sample_dir / "comm.jsonl").filter(pl.col("kind") == "image").height
    capsys.readouterr()
    assert main(["inspect", str(mmc4), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert number(r"^images not loaded\s+([\d,]+)\s", out) == images and "--image-root DIR" in out
    assert main(["inspect", str(mmc4), "--json", "--quiet", "--image-root", str(sample_dir)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["images_not_loaded"] == 0 and s["image_bytes"] > 0


def test_convert_to_webdataset_and_back(sample_dir, tmp_path, capsys):
    src = str(sample_dir / "comm.jsonl")
    assert main(["convert", src, str(tmp_path / "wds"), "--to", "webdataset", "--max-count", "2", "--quiet"]) == 0
    shards = sorted((tmp_path / "wds").glob("*.tar"))
    assert len(shards) == 2
    head, *listed = capsys.readouterr().out.splitlines()
    m = re.fullmatch(r"([\d,]+) documents \(([\d,]+) with errors\) -> (\d+) file\(s\):", head)
    assert m, head
    assert (int(m[1]), int(m[2]), int(m[3])) == (4, 0, 2)
    assert [line.strip() for line in listed] == [str(p) for p in shards]
    assert nodes_only(read_all(shards)).equals(nodes_only(read_all(src)))


def test_the_main_job_writes_utf8_whatever_the_locale(tmp_path):
    """Under an ASCII locale (``LC_ALL=C`` without Python's UTF-8 mode) the run wrote its
    summary and report in the locale's encoding: ``'ascii' codec can't encode '\\xb7'`` and no
    summary (a latin-1 locale wrote an invalid report and failed on CJK captions). Files are
    UTF-8, as the report declares."""
    out = tmp_path / "demo"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    proc = subprocess.run([sys.executable, "-m", "interleaf", "demo", "--out", str(out), "--quiet"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.html").read_bytes().decode("utf-8")
    assert "\u00b7" in report and 'charset="utf-8"' in report
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["documents"]["in"] == 28


def test_demo_runs_the_main_job_on_the_sample(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "interleaf", "demo", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "pairs-basic"
    # The 14 WebDataset pairs repeat the 14 jsonl pairs, pair-dup-1 repeats pair-0003's image and
    # caption, pair-dup-2 pair-0003's image with another caption.
    assert summary["documents"]["in"] == 28 and summary["errors"] == {}
    assert summary["dropped_documents"]["phash"] == 1
    dropped = pl.read_parquet(out / "dropped" / "*.parquet")
    assert dropped.filter(pl.col("filter") == "phash").get_column("doc_id").to_list() == ["pair-dup-2"]
    exact = dropped.filter(pl.col("filter") == "exact")
    assert exact.filter(pl.col("doc_id") == "pair-dup-1").get_column("detail").to_list() == ["duplicate of pair-0003 (shard pairs-000000, doc_index 2)"] * 2
    kept = read_all(out / "kept")
    assert kept.get_column("doc_index").n_unique() == summary["documents"]["kept"]
    # Nothing kept twice: every kept pair is distinct.
    assert kept.filter(pl.col("kind") == "text").get_column("text").is_unique().all()
    assert number(r"^([\d,]+) documents in, ", proc.stdout) == 28
    assert number(r" ([\d,]+) kept, ", proc.stdout) == summary["documents"]["kept"]
    assert "score: shard 1/2" in proc.stderr and "docs/s" in proc.stderr
    # A rerun resumes; a folder holding something else is refused, not cleared.
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    mine = tmp_path / "mine"
    (mine / "kept").mkdir(parents=True)
    (mine / "kept" / "data.txt").write_text("mine")
    (mine / "summary.json").write_text("{}")
    assert main(["demo", "--out", str(mine), "--quiet"]) == 2
    assert (mine / "kept" / "data.txt").read_text() == "mine" and (mine / "summary.json").read_text() == "{}"


def test_image_stats_command(tmp_path, sample_dir, capsys):
    out = tmp_path / "stats.parquet"
    assert main(["image-stats", str(sample_dir / "pairs-000000.tar"), "--out", str(out), "--threads", "1", "--quiet"]) == 0
    stats = pl.read_parquet(out)
    assert stats.columns[:4] == ["doc_id", "doc_index", "pos", "source"] and stats.height == 14
    first = stats.row(0, named=True)
    with tarfile.open(sample_dir / "pairs-000000.tar") as t:
        jpg = next(t.extractfile(m).read() for m in t.getmembers() if m.name.endswith(".jpg"))
    assert (first["width"], first["height"]) == Image.open(io.BytesIO(jpg)).size
    text = capsys.readouterr().out
    assert re.search(rf"^14 images \(14 decoded\) in [\d.]+ s -> {re.escape(str(out))}$", text, re.MULTILINE), text
    m = re.search(r"^median: (\d+)x(\d+) px, blur ([\d.]+), entropy ([\d.]+) bits, brightness ([\d.]+)$", text, re.MULTILINE)
    assert m, text
    assert (int(m[1]), int(m[2])) == (round(stats["width"].quantile(0.5)), round(stats["height"].quantile(0.5)))
    assert float(m[3]) == pytest.approx(stats["blur"].quantile(0.5), abs=0.06)
    assert float(m[4]) == pytest.approx(stats["entropy"].quantile(0.5), abs=0.006)
    capsys.readouterr()
    assert main(["image-stats", str(sample_dir / "pairs-000000.tar"), "--out", str(out), "--max-pixels", "100", "--quiet"]) == 2
    assert f"{out} exists: pass --overwrite" in capsys.readouterr().err
    assert main(["image-stats", str(sample_dir / "pairs-000000.tar"), "--out", str(tmp_path), "--quiet"]) == 2
    assert f"{tmp_path} is a folder: give the output file's path" in capsys.readouterr().err
    assert main(["image-stats", str(sample_dir / "pairs-000000.tar"), "--out", str(out), "--max-pixels", "100", "--overwrite", "--quiet"]) == 0
    assert set(pl.read_parquet(out)["error"].struct.field("kind")) == {"image_too_large"}
    text = capsys.readouterr().out
    assert re.search(r"^14 images \(0 decoded\) in ", text, re.MULTILINE), text
    assert number(r"^  image_too_large\s+([\d,]+)$", text) == 14
    assert "median:" not in text
    # image.stats' other options as flags: the headers alone; a byte limit.
    assert main(["image-stats", str(sample_dir / "pairs-000000.tar"), "--out", str(out), "--header-only", "--overwrite", "--quiet"]) == 0
    head = pl.read_parquet(out)
    assert head.get_column("width").null_count() == 0 and head.get_column("blur").null_count() == head.height
    assert main(["image-stats", str(sample_dir / "pairs-000000.tar"), "--out", str(out), "--max-image-bytes", "0", "--overwrite", "--quiet"]) == 2
    assert "--max-image-bytes must be an int >= 1, got 0" in capsys.readouterr().err  # the flag, not max_bytes
    assert main(["image-stats", str(sample_dir / "pairs-000000.tar"), "--out", str(out), "--max-image-bytes", "100", "--overwrite", "--quiet"]) == 0
    assert set(pl.read_parquet(out)["error"].struct.field("kind")) == {"image_too_large"}


def test_dedup_command_prints_the_counts_it_writes(sample_dir, tmp_path, capsys):
    out = tmp_path / "ex"
    assert main(["dedup", str(sample_dir / "pairs.jsonl"), "--out", str(out), "--method", "exact", "--on", "image", "--quiet"]) == 0
    head, *listed = capsys.readouterr().out.splitlines()
    m = re.fullmatch(r"([\d,]+) documents, ([\d,]+) duplicates in ([\d,]+) clusters; kept ([\d,]+)", head)
    assert m, head
    summary = json.loads((out / "summary.json").read_text())
    printed = [int(g.replace(",", "")) for g in m.groups()]
    assert printed == [summary["documents"], summary["duplicate_documents"], summary["clusters_with_duplicates"], summary["kept_documents"]]
    # pair-dup-1 and pair-dup-2 reuse the images of pair-0003 and pair-0002.
    assert printed == [14, 2, 2, 12]
    assert dict(line.strip().split(": ", 1) for line in listed) == summary["outputs"] == {"duplicates": str(out / "duplicates.parquet")}
    dup = pl.read_parquet(out / "duplicates.parquet")
    assert set(dup.filter(pl.col("doc_id") != pl.col("representative")).get_column("doc_id")) == {"pair-dup-1", "pair-dup-2"}


def test_models_list_json_and_text_name_every_fixture(capsys):
    assert main(["models", "list", "--root", str(MODEL_FIXTURES), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    expected = {"clip-tiny": "clip", "clip-sample": "clip", "embedder-tiny": "text-embedder", "lm-tiny": "causal-lm", "inception-tiny": "image-features", "lpips-tiny": "image-distance", "lid-tiny.bin": "language-id", "lid-tiny.ftz": "language-id", "kenlm-tiny": "kenlm"}
    assert {r["name"]: r["kind"] for r in rows} == expected
    assert all(r["error"] is None and Path(r["path"]) == MODEL_FIXTURES / r["name"] for r in rows)
    assert main(["models", "list", "--root", str(MODEL_FIXTURES)]) == 0
    listed = [line.split()[:2] for line in capsys.readouterr().out.splitlines()]
    assert dict(listed) == expected


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every command path of the parser, the bare program first, with its parser."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = {path: p for path, p in _commands(build_parser())}


def test_the_parser_has_every_documented_command():
    assert set(COMMANDS) == {
        (),
        ("inspect",),
        ("convert",),
        ("dedup",),
        ("image-stats",),
        ("signals",),
        ("run",),
        ("score",),
        ("filter",),
        ("recipes",),
        ("recipes", "list"),
        ("recipes", "show"),
        ("demo",),
        ("models",),
        ("models", "export"),
        ("models", "pull"),
        ("models", "list"),
        ("models", "info"),
        ("judge",),
        ("judge", "synjudge"),
        ("judge", "comm"),
        ("enhance",),
        ("enhance", "aitqe"),
        ("refine",),
        ("refine", "seir"),
        ("instruct",),
        ("instruct", "run"),
        ("instruct", "compare"),
        ("eval",),
        ("eval", "tasks"),
        ("eval", "negatives"),
        ("eval", "vist"),
        ("eval", "visdial"),
        ("eval", "comm"),
        ("eval", "clip-i"),
        ("eval", "synjudge"),
    }


@pytest.mark.parametrize("command", list(COMMANDS), ids=lambda c: " ".join(c) or "interleaf")
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main([*command, "--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(['interleaf', *command])} ")
    parser = COMMANDS[command]
    for action in parser._actions:
        if action.option_strings:
            assert action.option_strings[0] in out
        elif action.choices:  # subcommands, or a positional with choices
            assert all(name in out for name in action.choices)
        else:
            assert (action.metavar or action.dest) in out


def test_bad_source_is_a_clear_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "*.tar")]) == 2
    assert "glob matches no file" in capsys.readouterr().err


def test_signals_command_writes_node_and_document_attributes(tmp_path, sample_dir, capsys):
    from test_models import CLIP_DIR

    out = tmp_path / "sig"
    rc = main(["signals", str(sample_dir / "comm.jsonl"), "--out", str(out), "--signals", "text,text-doc,image,clip,sequence", "--clip", str(CLIP_DIR), "--device", "cpu", "--paragraphs", "--quiet"])
    assert rc == 0
    nodes, docs = pl.read_parquet(out / "node_attrs.parquet"), pl.read_parquet(out / "doc_attrs.parquet")
    batch = read_all(sample_dir / "comm.jsonl")
    assert nodes.height == batch.height and docs.height == batch.get_column("doc_index").n_unique()
    assert {"text_n_words", "text_kept_text", "image_obelics_ok", "clip_alignment_score"} <= set(nodes.columns)
    assert {"doc_text_n_words", "sequence_f"} <= set(docs.columns)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{docs.height:,} documents, {nodes.height:,} nodes")
    assert main(["signals", str(sample_dir / "comm.jsonl"), "--out", str(out), "--signals", "clip", "--quiet"]) == 2
    assert "signal clip needs a model: give --clip DIR" in capsys.readouterr().err
    assert main(["signals", str(sample_dir / "comm.jsonl"), "--out", str(out), "--signals", "bogus", "--quiet"]) == 2
    # DataComp's caption counts (len(caption.split()), len(caption)) per document.
    caps = tmp_path / "caps"
    assert main(["signals", str(sample_dir / "pairs.jsonl"), "--out", str(caps), "--signals", "caption", "--quiet"]) == 0
    first = json.loads((sample_dir / "pairs.jsonl").read_text(encoding="utf-8").splitlines()[0])["caption"]
    got = pl.read_parquet(caps / "doc_attrs.parquet").row(0, named=True)
    assert (got["caption_words"], got["caption_chars"]) == (len(first.split()), len(first))
    # Perplexity per CoMM step text, and on the paragraphs OBELICS keeps.
    lm = CLIP_DIR.parent / "lm-tiny"
    steps = tmp_path / "steps"
    assert main(["signals", str(sample_dir / "comm.jsonl"), "--out", str(steps), "--signals", "perplexity-step,perplexity-doc", "--lm", str(lm), "--device", "cpu", "--paragraphs", "--quiet"]) == 0
    got = pl.read_parquet(steps / "node_attrs.parquet")
    assert got.get_column("step_lm_perplexity").drop_nulls().len() > 0
    assert pl.read_parquet(steps / "doc_attrs.parquet").get_column("doc_lm_perplexity").drop_nulls().len() > 0
    # The image signal's options as flags: sizes from the headers alone; a byte limit.
    head = tmp_path / "head"
    assert main(["signals", str(sample_dir / "comm.jsonl"), "--out", str(head), "--signals", "image", "--header-only", "--quiet"]) == 0
    is_image = batch.get_column("kind") == "image"  # node_attrs rows are the batch's nodes, in order
    h = pl.read_parquet(head / "node_attrs.parquet").filter(is_image)
    full = nodes.filter(is_image)
    assert h.get_column("image_width").equals(full.get_column("image_width")) and h.get_column("image_blur").null_count() == h.height
    small = tmp_path / "small"
    assert main(["signals", str(sample_dir / "comm.jsonl"), "--out", str(small), "--signals", "image", "--max-image-bytes", "1000", "--quiet"]) == 0
    kinds = pl.read_parquet(small / "node_attrs.parquet").filter(is_image).get_column("image_error").struct.field("kind")
    assert kinds.to_list() == ["image_too_large"] * h.height


def test_dedup_semantic_agrees_with_the_python_function_and_scores_against_the_representative(tmp_path):
    """The CLI's default seed is interleaf.dedup.semantic's, so the README's Python line keeps
    what the CLI keeps; ``score`` is the cosine with the ``representative`` the row names."""
    import numpy as np

    from interleaf.dedup import semantic

    rng = np.random.default_rng(3)
    base = rng.normal(size=(60, 16)).astype(np.float32)
    near = base[:30] + rng.normal(scale=0.02, size=(30, 16)).astype(np.float32)
    chain = near[:10] + rng.normal(scale=0.02, size=(10, 16)).astype(np.float32)  # a copy of a copy
    emb = np.concatenate([base, near, chain])
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i:03d}", "caption": f"text {i}"}) + "\n" for i in range(len(emb))))
    np.save(tmp_path / "e.npy", emb)
    assert main(["dedup", str(docs), "--out", str(tmp_path / "o"), "--method", "semantic", "--embeddings", str(tmp_path / "e.npy"), "--clusters", "4", "--eps", "0.01", "--quiet"]) == 0
    dup = pl.read_parquet(tmp_path / "o" / "duplicates.parquet")
    table = semantic(emb, eps=0.01, n_clusters=4)
    removed_py = set(np.flatnonzero(table.get_column("duplicate_of").is_not_null().to_numpy()))
    removed_cli = set(dup.filter(pl.col("doc_index") != pl.col("cluster_id")).get_column("doc_index").to_list())
    assert removed_cli == removed_py and len(removed_py) >= 30
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    want = np.einsum("ij,ij->i", unit[dup["doc_index"].to_numpy()], unit[dup["cluster_id"].to_numpy()])
    np.testing.assert_allclose(dup.get_column("score").to_numpy(), want, atol=1e-6)


def test_dedup_semantic_with_a_model_and_with_given_embeddings(tmp_path, capsys):
    import numpy as np
    from test_models import CLIP_DIR

    # Six pairs whose captions are one image's; two documents repeat the first image.
    src = Path(__file__).parent.parent / "python" / "interleaf" / "data" / "sample" / "pairs.jsonl"
    lines = src.read_text().splitlines()
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(lines + [lines[0].replace('"id": "', '"id": "copy-'), lines[0].replace('"id": "', '"id": "again-')]) + "\n")
    import shutil

    shutil.copytree(src.parent / "images", tmp_path / "images")  # a link out would be path_outside_root
    out = tmp_path / "sem"
    rc = main(["dedup", str(data), "--out", str(out), "--method", "semantic", "--on", "image", "--model", str(CLIP_DIR), "--device", "cpu", "--eps", "0.0001", "--quiet"])
    assert rc == 0
    dup = pl.read_parquet(out / "duplicates.parquet")
    n = len(lines)
    first = dup.filter(pl.col("doc_index").is_in([0, n, n + 1]))
    assert first.height == 3 and first.get_column("cluster_id").n_unique() == 1  # the first image three times
    assert (first.get_column("score") > 0.9999).all()
    assert json.loads((out / "summary.json").read_text())["semantic"]["eps"] == 0.0001
    # The same through precomputed embeddings: the .npy rows are the documents in read order.
    emb = np.random.default_rng(0).normal(size=(n + 2, 8)).astype(np.float32)
    emb[n] = emb[0]
    emb[n + 1] = 0.0  # nothing to compare: stays alone
    np.save(tmp_path / "e.npy", emb)
    rc = main(["dedup", str(data), "--out", str(tmp_path / "sem2"), "--method", "semantic", "--embeddings", str(tmp_path / "e.npy"), "--quiet"])
    assert rc == 0
    dup2 = pl.read_parquet(tmp_path / "sem2" / "duplicates.parquet")
    assert sorted(dup2.get_column("doc_index").to_list()) == [0, n]
    # The same vectors as a parquet List column and as an Array column: the same duplicates.
    for dtype in (pl.List(pl.Float32), pl.Array(pl.Float32, 8)):
        pl.DataFrame({"v": pl.Series(emb.tolist(), dtype=dtype)}).write_parquet(tmp_path / "e.parquet")
        dest = tmp_path / f"sem-{dtype.base_type()}"
        assert main(["dedup", str(data), "--out", str(dest), "--method", "semantic", "--embeddings", f"{tmp_path / 'e.parquet'}:v", "--quiet"]) == 0
        assert pl.read_parquet(dest / "duplicates.parquet").equals(dup2)
    pl.DataFrame({"v": [[1.0, 2.0]] * (n + 1) + [[1.0]]}).write_parquet(tmp_path / "ragged.parquet")
    capsys.readouterr()
    assert main(["dedup", str(data), "--out", str(tmp_path / "r"), "--method", "semantic", "--embeddings", f"{tmp_path / 'ragged.parquet'}:v", "--quiet"]) == 2
    assert "vectors of different lengths: [1, 2]" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["dedup", str(data), "--out", str(tmp_path / "x"), "--method", "semantic", "--quiet"]) == 2
    assert "exactly one of model" in capsys.readouterr().err
    assert main(["dedup", str(data), "--out", str(tmp_path / "x"), "--method", "semantic", "--model", str(CLIP_DIR.parent / "lm-tiny"), "--quiet"]) == 2
    assert "needs a CLIP model or a text embedder, not a CausalLM" in capsys.readouterr().err
    assert main(["dedup", str(data), "--out", str(tmp_path / "x"), "--method", "semantic", "--embeddings", f"{tmp_path / 'ragged.parquet'}:w", "--quiet"]) == 2
    assert "has no column 'w' (its columns: v)" in capsys.readouterr().err


def test_dedup_command_reads_as_told(sample_dir, tmp_path, capsys):
    """The read options reach every pass: images named relative to --image-root, and
    --no-load-images leaves them unread."""
    data = tmp_path / "elsewhere" / "pairs.jsonl"
    data.parent.mkdir()
    data.write_text((sample_dir / "pairs.jsonl").read_text())
    args = ["dedup", str(data), "--method", "exact", "--on", "image", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a"), "--image-root", str(sample_dir), "--write", "jsonl"]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert (summary["duplicate_documents"], summary["read_errors"]) == (2, {})
    assert main([*args, "--out", str(tmp_path / "b"), "--image-root", str(sample_dir), "--no-load-images"]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["duplicate_documents"] == 0
    with pytest.raises(ValueError, match="unknown read_options"):
        from interleaf.dedup import deduplicate

        deduplicate(str(data), tmp_path / "c", "exact", read_options={"imageroot": "x"})


@pytest.mark.parametrize(
    "cmd",
    [
        ["inspect"],
        ["convert", "{out}", "--to", "parquet"],
        ["image-stats", "--out", "{out}.parquet"],
        ["signals", "--out", "{out}", "--signals", "text"],
        ["dedup", "--out", "{out}"],
        ["eval", "negatives", "--out", "{out}.parquet"],
        ["judge", "synjudge", "--out", "{out}.parquet", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
    ],
)
def test_a_named_input_that_is_not_there_is_a_usage_error(tmp_path, sample_dir, capsys, cmd):
    """Every command, as `run` does: a typo'd file name is refused before anything is written,
    not read as one io error record with exit 0."""
    missing = tmp_path / "nope.jsonl"
    args = [a.replace("{out}", str(tmp_path / "out")) for a in cmd]
    argv = [args[0], *args[1:2], str(sample_dir / "pairs.jsonl"), str(missing), *args[2:]] if args[0] in ("eval", "judge") else [args[0], str(sample_dir / "pairs.jsonl"), str(missing), *args[1:]]
    if args[0] == "convert":
        argv = ["convert", str(sample_dir / "pairs.jsonl"), str(missing), *args[1:]]
    assert main(argv) == 2
    assert f"input not found: {missing}" in capsys.readouterr().err
    assert not any(tmp_path.glob("out*"))
    # A file named twice (here: a folder and a file in it) would be read twice.
    twice = [str(sample_dir), str(sample_dir / "pairs.jsonl")]
    argv = [*args[:2], *twice, *args[2:]] if args[0] in ("eval", "judge") else [args[0], *twice, *args[1:]]
    assert main(argv) == 2
    assert f"the input {sample_dir / 'pairs.jsonl'} is named twice" in capsys.readouterr().err
    assert not any(tmp_path.glob("out*"))


def test_signals_checks_its_models_and_names_before_writing(sample_dir, tmp_path, capsys):
    out = tmp_path / "s"
    for names, flag in (("text,clip", "--clip"), ("sequence", "--clip"), ("coherence", "--text-embedder"), ("perplexity-doc", "--lm")):
        assert main(["signals", str(sample_dir / "comm.jsonl"), "--out", str(out), "--signals", names]) == 2
        assert f"needs a model: give {flag} DIR" in capsys.readouterr().err
    assert main(["signals", str(sample_dir / "comm.jsonl"), "--out", str(out), "--signals", " , "]) == 2
    assert "--signals names no signal" in capsys.readouterr().err
    assert not out.exists()


def test_a_run_whose_every_document_failed_to_read_says_so(sample_dir, tmp_path, capsys):
    data = tmp_path / "moved" / "pairs.jsonl"  # its relative image paths now lead nowhere
    data.parent.mkdir()
    data.write_text((sample_dir / "pairs.jsonl").read_text())
    assert main(["run", "pairs-basic", str(data), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "warning: every document has a read or decode error (missing_image): check --format, --image-root" in capsys.readouterr().err
    assert main(["run", "pairs-basic", str(data), "--out", str(tmp_path / "o2"), "--image-root", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "image_root" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        import interleaf

        interleaf.read(str(data), image_root=tmp_path / "nowhere")
    assert main(["run", "pairs-basic", str(data), "--out", str(tmp_path / "o3"), "--image-root", str(sample_dir), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_cli_messages_name_the_flags(tmp_path, capsys):
    """Errors raised by the API say which flag sets the value, and a file that does not parse is
    named with the place."""
    odd = tmp_path / "data.yaml"
    odd.write_text("a: 1\n")
    assert main(["inspect", str(odd)]) == 2
    assert "pass format= (--format)" in capsys.readouterr().err
    lines = tmp_path / "stories.json"
    lines.write_text('{"a": 1}\n{"b": 2}\n')
    for cmd in (["eval", "vist", str(lines), "--out", str(tmp_path / "v.parquet")], ["eval", "visdial", str(lines), "--out", str(tmp_path / "d.parquet")]):
        assert main(cmd) == 2
        assert f"{lines} is not one JSON document: Extra data at line 2 column 1" in capsys.readouterr().err


def test_dedup_refuses_options_of_another_method(sample_dir, tmp_path, capsys):
    src = str(sample_dir / "pairs.jsonl")
    for extra, msg in ((["--radius", "3"], "--radius applies to --method phash, not minhash"), (["--method", "exact", "--threshold", "0.5"], "--threshold applies to --method minhash, not exact"), (["--method", "phash", "--eps", "0.1"], "--eps applies to --method semantic, not phash"), (["--method", "phash", "--on", "text"], "--on applies to --method exact or semantic, not phash"), (["--method", "exact", "--threshold", "0.8"], "--threshold applies to --method minhash, not exact")):
        assert main(["dedup", src, "--out", str(tmp_path / "d"), *extra, "--quiet"]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    assert main(["dedup", src, "--out", str(tmp_path / "d"), "--method", "phash", "--radius", "3", "--quiet"]) == 0


def test_more_usage_mistakes_are_named(sample_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "pairs-basic", str(sample_dir / "pairs.jsonl"), "--out", str(out), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["filter", str(out), "--workers", "0"]) == 2
    assert "workers must be an int" in capsys.readouterr().err
    assert main(["models", "list", "--root", str(tmp_path / "none")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    strict = tmp_path / "strict.yaml"
    strict.write_text("name: strict\nsignals:\n  caption: {type: caption, level: doc}\nfilters:\n  doc:\n    long: \"caption_words >= 1000\"\n")
    assert main(["run", str(strict), str(sample_dir / "pairs.jsonl"), "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert "warning: no document was kept; check the thresholds (interleaf recipes show strict)" in capsys.readouterr().err


def test_run_embed_images_writes_kept_records_that_read_back_on_their_own(sample_dir, tmp_path):
    """kept/ records name images as the input did (relative to its folder); --embed-images
    writes them inline, so kept/ reads back anywhere with every image."""
    out = tmp_path / "e"
    assert main(["run", "pairs-basic", str(sample_dir / "pairs.jsonl"), "--out", str(out), "--embed-images", "--quiet"]) == 0
    kept = out / "kept" / "pairs.jsonl"
    recs = [json.loads(x) for x in kept.read_text().splitlines()]
    assert recs and all(r["image"].startswith("data:image/") for r in recs)
    back = read_all(kept).filter(pl.col("kind") == "image")
    assert back.height == len(recs) and back.get_column("error").null_count() == back.height
    plain = tmp_path / "p"
    assert main(["run", "pairs-basic", str(sample_dir / "pairs.jsonl"), "--out", str(plain), "--quiet"]) == 0
    assert not json.loads((plain / "kept" / "pairs.jsonl").read_text().splitlines()[0])["image"].startswith("data:")


def test_run_warnings_count_documents_and_failures_not_kinds_or_inapplicable_rows(sample_dir, tmp_path, capsys):
    """One document with two kinds of read error beside a clean one is not 'every document';
    CoMM's F below 3 images (a signal that does not apply) is not a failure."""
    import shutil

    (tmp_path / "images").mkdir()
    shutil.copy(sample_dir / "images" / "astronaut.jpg", tmp_path / "images" / "astronaut.jpg")
    (tmp_path / "images" / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    steps = lambda *paths: [[{"type": "text", "content": f"step text number {i} of the document"}, {"type": "image", "image_path": p}] for i, p in enumerate(paths)]  # noqa: E731
    docs = [{"data_id": "a", "title": "A", "step_info": steps("images/missing.jpg", "images/bad.jpg")}, {"data_id": "b", "title": "B", "step_info": steps("images/astronaut.jpg")}]
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nsignals:\n  image: {type: image}\n  sequence: {type: sequence}\nmodels:\n  clip: {path: tests/fixtures/models/clip-tiny}\nfilters:\n  drop_errors: true\n")
    assert main(["run", str(recipe), str(data), "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"]) == 0
    cap = capsys.readouterr()
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["errors"] == {"missing_image": 1, "unknown_image_format": 1} and summary["error_documents"] == 1
    assert summary["signal_errors"]["sequence"]["errors"] == {"too_few_images": 2}
    assert "warning" not in cap.err, cap.err


def test_ctrl_c_and_a_full_disk_end_with_a_line_not_a_traceback(monkeypatch, capsys):
    import interleaf.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_recipes", interrupted)
    assert cli.main(["recipes", "list"]) == 130
    assert capsys.readouterr().err == "interleaf recipes: interrupted\n"

    def full(args):
        raise pl.exceptions.ComputeError("parquet: File out of specification: underlying IO error: No space left on device (os error 28)")

    monkeypatch.setattr(cli, "cmd_recipes", full)
    assert cli.main(["recipes", "list"]) == 2
    assert "No space left on device" in capsys.readouterr().err

    def bug(args):
        raise pl.exceptions.ComputeError("cannot compare string with numeric type")

    monkeypatch.setattr(cli, "cmd_recipes", bug)
    with pytest.raises(pl.exceptions.ComputeError):  # a bug keeps its traceback
        cli.main(["recipes", "list"])


def test_the_command_interrupted_ends_by_sigint_so_a_shell_loop_stops():
    import signal as sg

    script = (
        "import sys\n"
        "import interleaf.cli as cli\n"
        "def interrupted(args):\n"
        "    raise KeyboardInterrupt\n"
        "cli.cmd_recipes = interrupted\n"
        "sys.argv = ['interleaf', 'recipes', 'list']\n"
        "cli.entry()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -sg.SIGINT and proc.stderr == "interleaf recipes: interrupted\n"


@pytest.mark.parametrize(
    "extra,want",
    [
        (["--batch-size", "0"], "--batch-size must be an int >= 1, got 0"),
        (["--limit", "-1"], "--limit must be an int >= 0, got -1"),
        (["--threads", "0"], "--threads must be an int [1, 512], got 0"),
    ],
)
def test_argument_errors_name_the_flag_not_the_api_parameter(sample_dir, tmp_path, capsys, extra, want):
    assert main(["run", "pairs-basic", str(sample_dir / "pairs.jsonl"), "--out", str(tmp_path / "o"), *extra]) == 2
    assert f"interleaf run: error: {want}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
