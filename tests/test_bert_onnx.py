"""Exporting BERT sentence embedders without torch (interleaf.models.bert_onnx): the real
all-MiniLM-L6-v2 weights against embeddings sentence-transformers computed in torch (stored in
tests/fixtures/minilm_howtos.npz; max abs difference 1e-5, measured 1e-7), the safetensors
reader, refused models, the CLI."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from interleaf import models
from interleaf.cli import main as cli_main
from interleaf.models import export
from interleaf.models.bert_onnx import read_safetensors


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """The format by hand: little-endian u64 header size, JSON header, raw buffers."""
    header, blob = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + blob)


def test_safetensors_reader_widens_every_float_type(tmp_path):
    f32 = np.array([[1.0, -2.5], [3.25, 0.0]], np.float32)
    f16 = np.array([0.5, -1.0, 65504.0], np.float16)
    bf16 = np.array([0x3FC0, 0xC020, 0x0000], np.uint16)  # 1.5, -2.5, 0
    write_safetensors(tmp_path / "w.safetensors", {"a": ("F32", [2, 2], f32.tobytes()), "b": ("F16", [3], f16.tobytes()), "c": ("BF16", [3], bf16.tobytes())})
    got = read_safetensors(tmp_path / "w.safetensors")
    assert {k: v.dtype for k, v in got.items()} == {"a": np.float32, "b": np.float32, "c": np.float32}
    assert (got["a"] == f32).all() and (got["b"] == f16.astype(np.float32)).all() and got["c"].tolist() == [1.5, -2.5, 0.0]
    (tmp_path / "bad.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors")


def test_real_minilm_without_torch_matches_sentence_transformers(real_minilm):
    from test_signal_layer import HOWTOS, MINILM_HOWTOS

    emb = models.load(real_minilm, device="cpu")
    texts = [s for h in HOWTOS for s in h]
    with np.load(MINILM_HOWTOS) as z:
        stored = z["embeddings"]
    got, _ = emb.embed(texts, batch_size=7)  # padded batches of mixed lengths
    np.testing.assert_allclose(got, stored, atol=1e-5)
    # Edge texts: empty, one word, longer than max_seq_length (truncated), alone or batched.
    edge = ["", "Hello", " ".join(texts * 3)]
    together, _ = emb.embed(edge)
    alone = np.stack([emb.embed([t])[0][0] for t in edge])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.isfinite(together).all()
    cfg = json.loads((real_minilm / "config.json").read_text())
    assert cfg["interleaf"]["exporter"].startswith("interleaf.models.bert_onnx")


def test_models_it_cannot_export_are_refused_by_name(tmp_path, real_minilm):
    def variant(name: str, **cfg_changes) -> Path:
        d = tmp_path / name
        shutil.copytree(real_minilm, d, ignore=shutil.ignore_patterns("onnx"))
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(cfg_changes)
        (d / "config.json").write_text(json.dumps(cfg))
        return d

    with pytest.raises(ValueError, match="model_type 'roberta'.*BERT encoders only"):
        export.export_text_embedder(variant("roberta", model_type="roberta"), tmp_path / "o1", backend="onnx")
    with pytest.raises(ValueError, match="hidden_act 'relu'"):
        export.export_text_embedder(variant("relu", hidden_act="relu"), tmp_path / "o2", backend="onnx")
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key'"):
        export.export_text_embedder(variant("rel", position_embedding_type="relative_key"), tmp_path / "o3", backend="onnx")
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors weights"):
        export.export_text_embedder(variant("noweights"), tmp_path / "o4", backend="onnx")
    d = variant("dense")
    mods = json.loads((d / "modules.json").read_text()) + [{"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}]
    (d / "modules.json").write_text(json.dumps(mods))
    with pytest.raises(ValueError, match="Dense.*not supported"):
        export.export_text_embedder(d, tmp_path / "o5", backend="onnx")
    for gone in ("modules.json", "tokenizer.json"):
        d = variant(f"no-{gone}")
        (d / gone).unlink()
        with pytest.raises(FileNotFoundError, match=f"no {gone}"):
            export.export_text_embedder(d, tmp_path / f"o-{gone}", backend="onnx")
        assert not (tmp_path / f"o-{gone}" / "onnx").exists()
    with pytest.raises(ValueError, match="backend must be one of"):
        export.export_text_embedder(d, tmp_path / "o6", backend="tf")
    assert not any((tmp_path / f"o{i}" / "onnx").exists() for i in range(1, 7))


def test_cli_exports_a_text_embedder_without_torch_with_fp16(tmp_path, capsys, minilm_source):
    out = tmp_path / "minilm"
    assert cli_main(["models", "export", "text-embedder", "--from-sentence-transformers", str(minilm_source), "--backend", "onnx", "--fp16", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"exported text-embedder -> {out}" in said
    import importlib.util

    # Compared with the torch model where torch is installed; said so where it is not.
    assert ("ONNX vs torch" if importlib.util.find_spec("torch") else "not compared with torch") in said
    assert (out / "onnx" / "model.onnx").is_file() and (out / "onnx" / "model_fp16.onnx").is_file()
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".safetensors") == []
    fp32, _ = models.load(out, device="cpu").embed(["A cat sat on the mat."])
    half, _ = models.load(out, device="cpu", precision="fp16").embed(["A cat sat on the mat."])
    assert float(fp32[0] @ half[0]) > 0.999
