from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import polars as pl
import pytest

import interleaf

SAMPLE_DIR = Path(interleaf.__file__).parent / "data" / "sample"


def write_tar(path: Path, members: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> Path:
    """A tar written by Python's tarfile, members in the given order."""
    with tarfile.open(path, "w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def read_all(source, **kw) -> pl.DataFrame:
    return pl.concat(list(interleaf.read(source, **kw)))


def nodes_only(df: pl.DataFrame) -> pl.DataFrame:
    """The node content that a round trip must keep (``source`` changes with the file)."""
    return df.drop("source")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    assert SAMPLE_DIR.is_dir(), f"bundled sample missing at {SAMPLE_DIR}"
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def sample_images(sample_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((sample_dir / "images").iterdir())}


@pytest.fixture()
def pair_shard(tmp_path, sample_images) -> Path:
    members = []
    for i, (name, data) in enumerate(sorted(sample_images.items())[:6]):
        key = f"{i:06d}"
        ext = name.rsplit(".", 1)[1]
        members += [(f"{key}.{ext}", data), (f"{key}.txt", f"caption of {name}".encode()), (f"{key}.json", json.dumps({"file": name}).encode())]
    return write_tar(tmp_path / "pairs-000000.tar", members)
