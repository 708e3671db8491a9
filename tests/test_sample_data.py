"""The bundled sample: small, real, licensed, and readable in every shape it ships in."""

from __future__ import annotations

import json

from conftest import read_all


def test_sample_is_small_and_every_image_has_a_licence(sample_dir):
    total = sum(p.stat().st_size for p in sample_dir.rglob("*") if p.is_file())
    assert total <= 2 * 1024 * 1024
    licences = (sample_dir / "LICENSES.md").read_text()
    for img in (sample_dir / "images").iterdir():
        assert img.name in licences, f"{img.name} has no licence entry"


def test_tar_and_jsonl_pairs_hold_the_same_documents(sample_dir):
    tar = read_all(sample_dir / "pairs-000000.tar")
    jsonl = read_all(sample_dir / "pairs.jsonl")
    cols = ["doc_id", "pos", "kind", "text", "image"]
    assert tar.select(cols).equals(jsonl.select(cols))
    assert tar.get_column("error").null_count() == tar.height


def test_comm_documents_alternate_text_and_image_per_step(sample_dir):
    df = read_all(sample_dir / "comm.jsonl")
    assert df.get_column("error").null_count() == df.height
    for _, doc in df.group_by("doc_id"):
        assert doc.get_column("kind").to_list() == ["text", "image"] * (doc.height // 2)
        assert doc.get_column("step").to_list() == [i // 2 for i in range(doc.height)]
        assert "title" in json.loads(doc.get_column("meta")[0])
