"""The interleaf command line: inspect, convert, dedup, image-stats, demo."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import polars as pl
from PIL import Image

from interleaf.cli import main
from conftest import nodes_only, read_all


def test_inspect_reports_counts_sizes_and_errors(sample_dir, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"caption": "x", "image": "missing.jpg"}\n{not json\n')
    assert main(["inspect", str(sample_dir / "comm.jsonl"), str(tmp_path / "bad.jsonl"), "--json", "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)
    comm = read_all(sample_dir / "comm.jsonl")
    assert s["documents"] == comm.get_column("doc_id").n_unique() + 2
    assert s["image_nodes"] == comm.filter(pl.col("kind") == "image").height + 1
    assert s["errors"] == {"missing_image": 1, "malformed_json": 1}
    assert s["error_documents"] == 2


def test_inspect_text_output(sample_dir, capsys):
    assert main(["inspect", str(sample_dir / "pairs-000000.tar"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "documents" in out and "image size" in out


def test_convert_to_webdataset_and_back(sample_dir, tmp_path, capsys):
    src = str(sample_dir / "comm.jsonl")
    assert main(["convert", src, str(tmp_path / "wds"), "--to", "webdataset", "--max-count", "2", "--quiet"]) == 0
    shards = sorted((tmp_path / "wds").glob("*.tar"))
    assert len(shards) == 2
    assert nodes_only(read_all(shards)).equals(nodes_only(read_all(src)))


def test_demo_writes_parquet_and_summary(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "interleaf.cli", "demo", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    nodes = pl.read_parquet(out / "nodes.parquet")
    assert summary["nodes"] == nodes.height
    assert summary["errors"] == {}
    # pair-dup-1 repeats an image and caption, pair-dup-2 an image, in both pairs files.
    assert summary["duplicate_nodes"]["image"] >= 4
    assert summary["duplicate_nodes"]["text"] >= 4
    # The 14 WebDataset pairs repeat the 14 jsonl pairs, and pair-dup-1 repeats pair-0003.
    assert summary["near_duplicate_documents"] == 15
    assert "docs/s" in proc.stderr
    stats = pl.read_parquet(out / "image_stats.parquet")
    assert stats.height == nodes.filter(pl.col("kind") == "image").height == summary["image_stats"]["images"]
    assert stats["error"].null_count() == stats.height and (stats["blur"] > 0).all()


def test_image_stats_command(tmp_path, sample_dir):
    out = tmp_path / "stats.parquet"
    assert main(["image-stats", str(sample_dir / "pairs-000000.tar"), "--out", str(out), "--threads", "1", "--quiet"]) == 0
    stats = pl.read_parquet(out)
    assert stats.columns[:4] == ["doc_id", "doc_index", "pos", "source"] and stats.height == 14
    first = stats.row(0, named=True)
    with tarfile.open(sample_dir / "pairs-000000.tar") as t:
        jpg = next(t.extractfile(m).read() for m in t.getmembers() if m.name.endswith(".jpg"))
    assert (first["width"], first["height"]) == Image.open(io.BytesIO(jpg)).size
    assert main(["image-stats", str(sample_dir / "pairs-000000.tar"), "--out", str(out), "--max-pixels", "100", "--quiet"]) == 0
    assert set(pl.read_parquet(out)["error"].struct.field("kind")) == {"image_too_large"}


def test_help_on_every_command():
    for cmd in ([], ["inspect"], ["convert"], ["dedup"], ["image-stats"], ["demo"]):
        proc = subprocess.run([sys.executable, "-m", "interleaf.cli", *cmd, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage: interleaf" in proc.stdout


def test_bad_source_is_a_clear_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "*.tar")]) == 2
    assert "glob matches no file" in capsys.readouterr().err
