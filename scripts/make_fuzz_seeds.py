"""Writes the seeds of the `records` and `text` fuzz targets (`fuzz/seeds/<target>/`).

Each seed is one selector byte (what the target reads it as, see the target's source) and a
body: for `records`, small WebDataset tars (two samples, a GNU long name, a PAX record, a
metadata member, a duplicate extension, a truncated copy) and a few JSON lines in each record
layout, written by interleaf itself from the bundled sample data; for `text`, paragraphs in
several scripts and a caption with references. Deterministic: rerun after a layout changes.

    PYTHONPATH=python python scripts/make_fuzz_seeds.py
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

import polars as pl

import interleaf

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "python" / "interleaf" / "data" / "sample"
SEEDS = ROOT / "fuzz" / "seeds"
LAYOUTS = ["pairs", "mmc4", "obelics", "comm", "llava", "nodes"]  # Format::ALL's order
FAKE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"


def tar_bytes(members: list[tuple[str, bytes]], pax: bool = False) -> bytes:
    buf = io.BytesIO()
    fmt = tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def records_seeds() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    two = [
        ("s0.jpg", FAKE_JPEG),
        ("s0.txt", b"a dog on a beach"),
        ("s0.json", b'{"url": "http://example.com/0.jpg", "width": 8}'),
        ("dir/s1.png", b"\x89PNG\r\n\x1a\n"),
        ("dir/s1.caption.txt", "caf\u00e9 \u00e0 Paris".encode()),
        ("__meta__/info.json", b"{}"),
        ("s2.txt", b"first"),
        ("s2.txt", b"again"),
        ("noext", b"skipped"),
    ]
    seeds["tar-gnu"] = b"\x00" + tar_bytes(two)
    seeds["tar-pax-small-members"] = b"\x02" + tar_bytes([("x" * 120 + "/k\u00e9y.txt", b"long " * 30), *two[:3]], pax=True)
    whole = tar_bytes(two)
    seeds["tar-truncated"] = b"\x04" + whole[: len(whole) // 2 + 7]
    # Each layout written by interleaf from the sample documents (2 of each), images by
    # reference so the seeds stay small.
    with tempfile.TemporaryDirectory() as tmp:
        docs = pl.concat([pl.concat(list(interleaf.read(SAMPLE / name, load_images=False))) for name in ("pairs.jsonl", "comm.jsonl")], how="diagonal_relaxed")
        docs = docs.with_columns(pl.lit(None, pl.String).alias("source"))  # no machine's path
        pairs_docs = docs.filter(pl.col("doc_id").is_in(docs["doc_id"].unique(maintain_order=True).head(2).to_list()))
        comm_docs = docs.filter(pl.col("doc_id").str.starts_with("comm-0001") | pl.col("doc_id").str.starts_with("comm-0002"))
        for k, layout in enumerate(LAYOUTS):
            batch = pairs_docs if layout in ("pairs", "llava") else comm_docs
            out = Path(tmp) / layout
            (path,) = interleaf.write(batch, out, format=layout if layout != "nodes" else "jsonl")
            lines = Path(path).read_bytes()
            seeds[f"jsonl-{layout}"] = bytes([1 + 2 * (k + 1)]) + lines
            if k == 0:
                seeds["jsonl-detect"] = b"\x01" + lines + b"\n{not json\n\xff\xfe\n"
    return seeds


def text_seeds() -> dict[str, bytes]:
    english = json.loads((SAMPLE / "comm.jsonl").read_text().splitlines()[0])["summary"]
    texts = {
        "english-word": (0x04, english + "\n\n" + english.upper() + "\n\nOk."),
        "english-char": (0x0C, english),
        "mixed-scripts": (0x02, "Caf\u00e9 \ufb01ne \uff21\uff22\uff23 \u0391\u03b8\u03ae\u03bd\u03b1 \u5317\u4eac \u0645\u0631\u062d\u0628\u0627 \U0001f469\u200d\U0001f4bb e\u0301\u00a0\u200b\tend"),
        "captions": (0x03, "a man riding a horse on a beach\na person rides a horse near the sea\na horse on the sand"),
        "repeats": (0x09, "the the the the the the. " * 20),
    }
    return {name: bytes([sel]) + text.encode() for name, (sel, text) in texts.items()}


def main() -> None:
    for target, seeds in (("records", records_seeds()), ("text", text_seeds())):
        folder = SEEDS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
        print(f"{folder}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
