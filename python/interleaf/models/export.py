"""Export transformers, open_clip and sentence-transformers weights to interleaf model
directories (ONNX graphs plus the tokenizer and configs the loaders read).

Needs the ``export`` extra (torch, transformers, open_clip_torch, sentence-transformers, onnx);
nothing else in interleaf imports torch. Every export:

- puts every module in eval mode before exporting and again after (``torch.onnx.export``
  restores the training flag of the wrapper it was given, and a freshly built wrapper is in
  training mode, which would turn dropout on for anything computed afterwards);
- exports with dynamic batch and sequence axes (opset 17), except open_clip's text tower,
  which only takes its full context (77 tokens) and gets a fixed sequence axis;
- optionally writes ``*_fp16.onnx`` variants (ONNX Runtime's float16 converter);
- runs the ONNX graphs through interleaf's own loader on real images and texts and compares
  them with torch; the result is stored in ``config.json`` under ``interleaf.export_check``,
  and an export whose outputs disagree (cosine < 0.9999 for embeddings, relative perplexity
  error > 1e-3, NaN anywhere) raises. fp16 graphs are checked against the fp32 graph (cosine
  >= 0.999, perplexity within 1e-2).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17
# Real text and images used to check an export (texts only need to tokenize).
_CHECK_TEXTS = ["a photo of a cat sitting on a wooden table", "An astronaut in a white suit.", "", "x " * 120]


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError("exporting needs torch: pip install 'interleaf[export]'") from e
    return torch


def eval_mode(*modules) -> None:
    """Every module and submodule in eval mode, checked (dropout off)."""
    for m in modules:
        m.eval()
        bad = [n for n, sub in m.named_modules() if sub.training]
        if bad:  # pragma: no cover - eval() sets every submodule
            raise RuntimeError(f"modules still in training mode: {bad[:5]}")


def _example_tokens(length: int = 8):
    """input_ids and an attention mask with padding in the second row: tracing with an
    all-ones mask lets transformers skip building the mask, and the graph would ignore padding."""
    torch = _torch()
    ids = torch.full((2, length), 5, dtype=torch.long)
    mask = torch.ones((2, length), dtype=torch.long)
    mask[1, length - 3 :] = 0
    ids[1, length - 3 :] = 0
    return ids, mask


def _onnx_export(module, args: tuple, path: Path, input_names: Sequence[str], output_names: Sequence[str], dynamic_axes: dict[str, dict[int, str]]) -> None:
    torch = _torch()
    path.parent.mkdir(parents=True, exist_ok=True)
    eval_mode(module)
    # nn.MultiheadAttention's inference fast path (open_clip) has no ONNX export.
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha else None
    if mha:
        mha.set_fastpath_enabled(False)
    try:
        _trace(module, args, path, input_names, output_names, dynamic_axes)
    finally:
        if mha:
            mha.set_fastpath_enabled(fastpath)
    eval_mode(module)


def _trace(module, args: tuple, path: Path, input_names: Sequence[str], output_names: Sequence[str], dynamic_axes: dict[str, dict[int, str]]) -> None:
    torch = _torch()
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _fp16(path: Path) -> Path:
    """``path`` converted to float16 (inputs and outputs too), next to it as ``*_fp16.onnx``."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = path.with_name(path.stem + "_fp16.onnx")
    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=False, disable_shape_infer=False)
    onnx.save(model, str(out))
    return out


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _check_embeddings(name: str, ours: np.ndarray, ref: np.ndarray, min_cosine: float = 0.9999) -> dict[str, float]:
    """Cosine of each row pair, and the largest difference after L2 normalisation."""
    ours, ref = ours.astype(np.float64), ref.astype(np.float64)
    cos = _cos(ours, ref)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    res = {"min_cosine": float(cos.min()), "max_abs_diff_normalized": float(np.abs(unit(ours) - unit(ref)).max())}
    if not res["min_cosine"] >= min_cosine:  # also catches NaN
        raise RuntimeError(f"export check failed for {name}: cosine {res['min_cosine']:.6f} < {min_cosine}")
    return res


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _prepare_out(out: str | os.PathLike, overwrite: bool) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_images(n: int = 3) -> list[bytes]:
    """A few real photographs from the bundled sample (encoded bytes)."""
    from interleaf.cli import SAMPLE_DIR

    files = sorted((SAMPLE_DIR / "images").glob("*.jpg"))[:n]
    return [p.read_bytes() for p in files]


# ---------------------------------------------------------------------------------- CLIP


def _clip_wrappers(encode_image, encode_text):
    torch = _torch()

    class Vision(torch.nn.Module):
        def __init__(self, owner):
            super().__init__()
            self.owner = owner

        def forward(self, pixel_values):
            return encode_image(pixel_values)

    class Text(torch.nn.Module):
        def __init__(self, owner):
            super().__init__()
            self.owner = owner

        def forward(self, input_ids, attention_mask):
            return encode_text(input_ids, attention_mask)

    return Vision, Text


def _export_clip_graphs(model, encode_image, encode_text, out: Path, image_size: int, fixed_text_length: int | None, fp16: bool) -> None:
    """The two CLIP graphs. ``fixed_text_length``: the text tower only takes exactly this many
    tokens (open_clip), so the sequence axis is fixed and the loader pads to it."""
    torch = _torch()
    Vision, Text = _clip_wrappers(encode_image, encode_text)
    vision, text = Vision(model), Text(model)
    eval_mode(model, vision, text)
    pv = torch.zeros(2, 3, image_size, image_size)
    ids, mask = _example_tokens(fixed_text_length or 8)
    seq = {0: "batch"} if fixed_text_length else {0: "batch", 1: "sequence"}
    _onnx_export(vision, (pv,), out / "onnx" / "vision_model.onnx", ["pixel_values"], ["image_embeds"], {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
    _onnx_export(text, (ids, mask), out / "onnx" / "text_model.onnx", ["input_ids", "attention_mask"], ["text_embeds"], {"input_ids": seq, "attention_mask": seq, "text_embeds": {0: "batch"}})
    eval_mode(model, vision, text)
    if fp16:
        _fp16(out / "onnx" / "vision_model.onnx")
        _fp16(out / "onnx" / "text_model.onnx")


def _verify_clip(out: Path, encode_image, encode_text) -> dict[str, Any]:
    """Our loader (Rust preprocessing + tokenizer.json + ONNX) against torch on the same inputs."""
    torch = _torch()
    from interleaf.image import preprocess
    from interleaf.models.clip import CLIPModel

    clip = CLIPModel(out, device="cpu")
    images = _check_images()
    pixels, errors = preprocess(images, clip.preprocess_config)
    assert errors.null_count() == len(errors), errors.drop_nulls().to_list()
    ours_img, _ = clip.embed_images(pixels)
    ours_txt, _ = clip.embed_texts(_CHECK_TEXTS)
    with torch.no_grad():
        ref_img = encode_image(torch.from_numpy(pixels)).numpy()
        ref_txt = []
        for t in _CHECK_TEXTS:
            b = next(clip.tokenizer.batches([t], 1))
            ref_txt.append(encode_text(torch.from_numpy(b.input_ids), torch.from_numpy(b.attention_mask)).numpy()[0])
    res: dict[str, Any] = {"image": _check_embeddings("vision_model", ours_img, ref_img), "text": _check_embeddings("text_model", ours_txt, np.stack(ref_txt))}
    if (out / "onnx" / "vision_model_fp16.onnx").is_file():
        half = CLIPModel(out, device="cpu", precision="fp16")
        res["fp16"] = {
            "image": _check_embeddings("vision_model_fp16", half.embed_images(images)[0], clip.embed_images(images)[0], 0.999),
            "text": _check_embeddings("text_model_fp16", half.embed_texts(_CHECK_TEXTS)[0], ours_txt, 0.999),
        }
    return res


def export_clip_transformers(source: str | os.PathLike, out: str | os.PathLike, *, fp16: bool = False, verify: bool = True, overwrite: bool = False) -> Path:
    """Exports a transformers ``CLIPModel`` (a local directory, or a hub name when a hub is
    reachable) to ``out``: ``onnx/vision_model.onnx`` (pixel_values -> image_embeds),
    ``onnx/text_model.onnx`` (input_ids, attention_mask -> text_embeds), ``tokenizer.json``,
    ``preprocessor_config.json`` and ``config.json`` with the trained ``logit_scale``."""
    _torch()  # a clear error when the export extra is missing
    from transformers import AutoTokenizer, CLIPImageProcessor
    from transformers import CLIPModel as HFCLIP

    out = _prepare_out(out, overwrite)
    model = HFCLIP.from_pretrained(str(source))
    eval_mode(model)

    def encode_image(pixel_values):
        pooled = model.vision_model(pixel_values=pixel_values).pooler_output
        return model.visual_projection(pooled)

    def encode_text(input_ids, attention_mask):
        pooled = model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return model.text_projection(pooled)

    tok = AutoTokenizer.from_pretrained(str(source))
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{source} has no fast tokenizer; interleaf needs tokenizer.json")
    tok.backend_tokenizer.save(str(out / "tokenizer.json"))
    CLIPImageProcessor.from_pretrained(str(source)).save_pretrained(str(out))
    cfg = model.config.to_dict()
    cfg["interleaf"] = {"logit_scale": float(model.logit_scale.detach().exp()), "source": f"transformers:{source}"}
    _write_json(out / "config.json", cfg)
    # transformers types vision_config as dict | CLIPVisionConfig | None (__post_init__ makes it a CLIPVisionConfig) and image_size as int | list | tuple | None (a CLIP checkpoint's is an int)
    _export_clip_graphs(model, encode_image, encode_text, out, int(model.config.vision_config.image_size), None, fp16)  # type: ignore[union-attr, arg-type]
    if verify:
        cfg["interleaf"]["export_check"] = _verify_clip(out, encode_image, encode_text)
        _write_json(out / "config.json", cfg)
    return out


def open_clip_tokenizer_json(tokenizer, path: Path) -> None:
    """open_clip's CLIP BPE (``SimpleTokenizer``) as a ``tokenizer.json`` that tokenizes like it
    (CLIP's byte-level BPE with ``</w>`` word ends, lower-cased, start and end tokens), built
    through transformers' ``CLIPTokenizerFast``; an open_clip ``HFTokenizer`` is saved as is.
    The text cleaning before it (ftfy, HTML entities) is :func:`interleaf.models.tokenize.open_clip_clean`,
    which a CLIP loaded from an ``open_clip_config.json`` applies."""
    if hasattr(tokenizer, "tokenizer") and hasattr(tokenizer.tokenizer, "backend_tokenizer"):
        tokenizer.tokenizer.backend_tokenizer.save(str(path))
        return
    if not hasattr(tokenizer, "encoder") or not hasattr(tokenizer, "bpe_ranks"):
        raise ValueError(f"cannot convert open_clip tokenizer {type(tokenizer).__name__} to tokenizer.json")
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): int(v) for k, v in tokenizer.encoder.items()}
    merges = [pair for pair, _ in sorted(tokenizer.bpe_ranks.items(), key=lambda kv: kv[1])]
    clip_tokenizer_fast(vocab, merges).backend_tokenizer.save(str(path))


def clip_tokenizer_fast(vocab: dict[str, int], merges: Sequence[tuple[str, str]]):
    """transformers' ``CLIPTokenizerFast`` (CLIP's normaliser, pre-tokeniser, ``</w>`` BPE,
    start/end post-processor) over a vocabulary and merge list, for transformers 4 (files) and
    5 (objects)."""
    import inspect

    from transformers import CLIPTokenizerFast  # type: ignore[attr-defined]  # transformers 5 resolves *TokenizerFast names at run time (to CLIPTokenizer)

    special = {"unk_token": "<|endoftext|>", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    if "vocab" in inspect.signature(CLIPTokenizerFast.__init__).parameters:
        return CLIPTokenizerFast(vocab=dict(vocab), merges=[tuple(m) for m in merges], **special)
    with tempfile.TemporaryDirectory() as tmp:
        vf, mf = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vf.write_text(json.dumps(vocab), encoding="utf-8")
        mf.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
        return CLIPTokenizerFast(vocab_file=str(vf), merges_file=str(mf), **special)


def export_clip_open_clip(arch: str, pretrained: str | None, out: str | os.PathLike, *, fp16: bool = False, verify: bool = True, overwrite: bool = False) -> Path:
    """Exports an open_clip model (``open_clip.create_model_and_transforms(arch, pretrained)``;
    ``pretrained`` is a tag that open_clip downloads when a hub is reachable, or a local
    checkpoint file) to ``out``, with ``open_clip_config.json`` carrying its preprocessing."""
    torch = _torch()
    import open_clip

    out = _prepare_out(out, overwrite)
    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
    eval_mode(model)
    tokenizer = open_clip.get_tokenizer(arch)
    open_clip_tokenizer_json(tokenizer, out / "tokenizer.json")
    pp = dict(open_clip.get_model_preprocess_cfg(model))
    size = pp.get("size", 224)
    size = int(size if isinstance(size, int) else size[0])
    context_length = int(getattr(model, "context_length", 0) or getattr(tokenizer, "context_length", 77))
    with torch.no_grad():
        dim = int(model.encode_image(torch.zeros(1, 3, size, size)).shape[1])
    _write_json(out / "open_clip_config.json", {"model_cfg": open_clip.get_model_config(arch), "preprocess_cfg": pp})
    cfg: dict[str, Any] = {
        "model_type": "clip",
        "architectures": ["OpenCLIP"],
        "projection_dim": dim,
        "text_config": {"max_position_embeddings": context_length, "eos_token_id": 49407},
        "vision_config": {"image_size": size},
        "interleaf": {"logit_scale": float(model.logit_scale.detach().exp()), "source": f"open_clip:{arch}:{pretrained}"},
    }
    _write_json(out / "config.json", cfg)

    def encode_image(pixel_values):
        return model.encode_image(pixel_values)

    def encode_text(input_ids, attention_mask):
        # open_clip's text tower attends causally and pools at the end token (argmax of ids),
        # so padding after it changes nothing; the mask is accepted for the common contract.
        return model.encode_text(input_ids)

    _export_clip_graphs(model, encode_image, encode_text, out, size, context_length, fp16)  # open_clip needs all 77 positions
    if verify:
        cfg["interleaf"]["export_check"] = _verify_clip(out, encode_image, encode_text)
        _write_json(out / "config.json", cfg)
    return out


# ------------------------------------------------------------------------- text embedder


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("sentence_transformers") is not None


def export_text_embedder(source: str | os.PathLike, out: str | os.PathLike, *, fp16: bool = False, verify: bool = True, overwrite: bool = False, backend: str = "auto") -> Path:
    """Exports a sentence-transformers model directory (Transformer + Pooling [+ Normalize]) to
    ``out``: ``onnx/model.onnx`` (input_ids, attention_mask, token_type_ids ->
    last_hidden_state) plus the model's own ``modules.json``, pooling config,
    ``sentence_bert_config.json``, ``config.json`` and ``tokenizer.json`` (weights are not
    copied).

    ``backend``: ``"torch"`` traces the model with torch (any encoder sentence-transformers
    loads); ``"onnx"`` writes a BERT encoder's graph directly from its safetensors weights with
    the ``onnx`` package, no torch (:mod:`interleaf.models.bert_onnx`: all-MiniLM, BGE, E5, GTE
    and other BERT-based embedders); ``"auto"`` (default) is torch when it is installed, else
    onnx. ``verify`` compares with sentence-transformers in torch, so an onnx export made
    without torch records that it was not compared."""
    from interleaf._checks import choice_arg

    choice_arg("backend", backend, ("auto", "torch", "onnx"))
    if backend == "onnx" or (backend == "auto" and not _has_torch()):
        return _export_text_embedder_onnx(source, out, fp16=fp16, verify=verify, overwrite=overwrite)
    torch = _torch()
    from sentence_transformers import SentenceTransformer
    from torch import nn

    out = _prepare_out(out, overwrite)
    st = SentenceTransformer(str(source), device="cpu")
    eval_mode(st)
    types = [type(m).__name__ for m in st]
    unsupported = [t for t in types if t not in ("Transformer", "Pooling", "Normalize")]
    if unsupported:
        raise ValueError(f"{source}: modules {unsupported} are not supported by interleaf's text embedder")
    with tempfile.TemporaryDirectory() as tmp:
        st.save(tmp)
        for p in Path(tmp).rglob("*"):
            if p.is_file() and p.suffix not in (".safetensors", ".bin", ".pt", ".onnx"):
                dst = out / p.relative_to(tmp)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dst)
    if not (out / "tokenizer.json").is_file():
        st[0].tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    hf = st[0].auto_model
    eval_mode(hf)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.hf = hf

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.hf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    enc = Encoder()
    ids, mask = _example_tokens()
    axes = {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")}
    _onnx_export(enc, (ids, mask, torch.zeros_like(ids)), out / "onnx" / "model.onnx", ["input_ids", "attention_mask", "token_type_ids"], ["last_hidden_state"], axes)
    eval_mode(st, enc)
    if fp16:
        _fp16(out / "onnx" / "model.onnx")
    cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    cfg["interleaf"] = {"source": f"sentence-transformers:{source}"}
    if verify:
        from interleaf.models.text_embedder import TextEmbedder

        ours, _ = TextEmbedder(out, device="cpu").embed(_CHECK_TEXTS)
        ref = st.encode(_CHECK_TEXTS, convert_to_numpy=True, batch_size=len(_CHECK_TEXTS))
        cfg["interleaf"]["export_check"] = {"embed": _check_embeddings("model", ours, ref)}
        if fp16:
            half, _ = TextEmbedder(out, device="cpu", precision="fp16").embed(_CHECK_TEXTS)
            cfg["interleaf"]["export_check"]["fp16"] = _check_embeddings("model_fp16", half, ours, 0.999)
    _write_json(out / "config.json", cfg)
    return out


def _export_text_embedder_onnx(source: str | os.PathLike, out: str | os.PathLike, *, fp16: bool, verify: bool, overwrite: bool) -> Path:
    from interleaf.models.bert_onnx import export_bert_embedder
    from interleaf.models.text_embedder import TextEmbedder

    out = export_bert_embedder(source, _prepare_out(out, overwrite))
    if fp16:
        _fp16(out / "onnx" / "model.onnx")
    cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    cfg["interleaf"] = {"source": f"safetensors:{source}", "exporter": "interleaf.models.bert_onnx (no torch)"}
    ours, _ = TextEmbedder(out, device="cpu").embed(_CHECK_TEXTS)
    if not np.isfinite(ours).all():
        raise RuntimeError(f"export check failed: the ONNX graph of {source} gives non-finite embeddings")
    if verify and _has_torch():
        from sentence_transformers import SentenceTransformer

        ref = SentenceTransformer(str(source), device="cpu").encode(_CHECK_TEXTS, convert_to_numpy=True, batch_size=len(_CHECK_TEXTS))
        cfg["interleaf"]["export_check"] = {"embed": _check_embeddings("model", ours, ref)}
    elif verify:
        cfg["interleaf"]["export_check"] = "not compared with torch: torch / sentence-transformers are not installed"
    if fp16:
        half, _ = TextEmbedder(out, device="cpu", precision="fp16").embed(_CHECK_TEXTS)
        check = _check_embeddings("model_fp16", half, ours, 0.999)
        if isinstance(cfg["interleaf"].get("export_check"), dict):
            cfg["interleaf"]["export_check"]["fp16"] = check
    _write_json(out / "config.json", cfg)
    return out

# ------------------------------------------------------------------------------ causal LM


def export_causal_lm(source: str | os.PathLike, out: str | os.PathLike, *, fp16: bool = False, verify: bool = True, overwrite: bool = False) -> Path:
    """Exports a transformers causal LM (``AutoModelForCausalLM``, a local directory or a hub
    name when reachable) to ``out``: ``onnx/model.onnx`` (input_ids, attention_mask -> logits,
    no KV cache), ``tokenizer.json`` and ``config.json``."""
    _torch()  # a clear error when the export extra is missing
    from torch import nn
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = _prepare_out(out, overwrite)
    model = AutoModelForCausalLM.from_pretrained(str(source))
    eval_mode(model)
    tok = AutoTokenizer.from_pretrained(str(source))
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{source} has no fast tokenizer; interleaf needs tokenizer.json")
    tok.backend_tokenizer.save(str(out / "tokenizer.json"))

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    lm = LM()
    ids, mask = _example_tokens()
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    _onnx_export(lm, (ids, mask), out / "onnx" / "model.onnx", ["input_ids", "attention_mask"], ["logits"], axes)
    eval_mode(model, lm)
    if fp16:
        _fp16(out / "onnx" / "model.onnx")
    cfg = model.config.to_dict()
    cfg["interleaf"] = {"source": f"transformers:{source}"}
    _write_json(out / "config.json", cfg)
    if verify:
        from interleaf.models.causal_lm import CausalLM

        texts = [t for t in _CHECK_TEXTS if t]
        ours = CausalLM(out, device="cpu").perplexity(texts).get_column("perplexity").to_numpy()
        ref = reference_perplexity(model, tok, texts, CausalLM(out, device="cpu").max_length)
        rel = float(np.max(np.abs(ours - ref) / ref))
        if not rel <= 1e-3:  # also catches NaN
            raise RuntimeError(f"export check failed: ONNX vs torch perplexity differs by {rel:.2e} (relative)")
        cfg["interleaf"]["export_check"] = {"perplexity_max_rel_diff": rel}
        if fp16:
            half = CausalLM(out, device="cpu", precision="fp16").perplexity(texts).get_column("perplexity").to_numpy()
            rel16 = float(np.max(np.abs(half - ours) / ours))
            if not rel16 <= 1e-2:
                raise RuntimeError(f"export check failed: fp16 vs fp32 perplexity differs by {rel16:.2e} (relative)")
            cfg["interleaf"]["export_check"]["fp16_perplexity_max_rel_diff"] = rel16
        _write_json(out / "config.json", cfg)
    return out


def reference_perplexity(model, tokenizer, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Perplexity per text in torch, as transformers computes it (``labels=input_ids``: mean
    cross-entropy of tokens 2..n), one text at a time (no padding involved)."""
    torch = _torch()
    eval_mode(model)
    out = []
    with torch.no_grad():
        for t in texts:
            ids = tokenizer(t, return_tensors="pt", truncation=True, max_length=max_length)["input_ids"]
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            out.append(float(torch.exp(loss)))
    return np.array(out)
