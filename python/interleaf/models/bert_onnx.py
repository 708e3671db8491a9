"""BERT-family sentence embedders to ONNX without torch.

sentence-transformers models built on a BERT encoder (all-MiniLM, BGE, E5, GTE and most other
English embedders: ``model_type: bert`` with absolute positions and exact GELU) are exported by
writing the encoder's graph directly with the ``onnx`` package and filling it with the weights of
``model.safetensors``: embeddings (word + position + token type, LayerNorm), then per layer
self-attention with the additive padding mask that transformers uses (``(1 - mask) * float32
min``), the output projection, residual + LayerNorm, the GELU feed-forward, residual +
LayerNorm. Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, batch x
sequence), output ``last_hidden_state``: the same contract as the torch exporter, so pooling and
normalisation stay where they are (the model directory's ``1_Pooling`` / ``2_Normalize``).

Needs ``numpy`` and ``onnx`` only (``pip install onnx``), no torch; the tests check the result
against all-MiniLM-L6-v2 embeddings computed by sentence-transformers in torch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17  # LayerNormalization
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".onnx_data", ".h5", ".msgpack", ".ot")
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as float32 numpy arrays (F32, F16, BF16, F64)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its header)")
        (n,) = struct.unpack("<Q", head)
        if n > 100 << 20:
            raise ValueError(f"{path}: not a safetensors file (header of {n} bytes)")
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        raw = np.asarray(data[a:b])
        if meta["dtype"] == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif meta["dtype"] in _DTYPES:
            arr = raw.view(_DTYPES[meta["dtype"]])
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {meta['dtype']}, which this reader does not know")
        out[name] = arr.reshape(meta["shape"]).astype(np.float32)
    return out


def _weights(source: Path) -> dict[str, np.ndarray]:
    files = sorted(source.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{source}: no *.safetensors weights (the torch-free exporter reads only safetensors; pytorch_model.bin needs torch)")
    w: dict[str, np.ndarray] = {}
    for f in files:
        w.update(read_safetensors(f))
    # Checkpoints save the encoder as BertModel ("embeddings.…") or inside a task model ("bert.…").
    for prefix in ("", "bert.", "model.", "0.auto_model."):
        if f"{prefix}embeddings.word_embeddings.weight" in w:
            return {k[len(prefix) :]: v for k, v in w.items() if k.startswith(prefix)}
    raise ValueError(f"{source}: no BERT embeddings.word_embeddings.weight in the weights")


def _check_config(cfg: dict[str, Any], source: Path) -> None:
    if cfg.get("model_type") != "bert":
        raise ValueError(f"{source}: model_type {cfg.get('model_type')!r}; the torch-free exporter handles BERT encoders only (install torch for the others)")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: position_embedding_type {cfg['position_embedding_type']!r} is not supported without torch")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{source}: hidden_act {cfg['hidden_act']!r} is not supported without torch (exact GELU only)")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise ValueError(f"{source}: hidden_size {cfg['hidden_size']} is not a multiple of num_attention_heads {cfg['num_attention_heads']}")


def bert_graph(cfg: dict[str, Any], w: dict[str, np.ndarray]):
    """The ONNX ``ModelProto`` of a BERT encoder (``last_hidden_state``) with weights ``w``
    (transformers' BertModel names)."""
    from onnx import TensorProto, helper, numpy_helper

    h, heads, layers = int(cfg["hidden_size"]), int(cfg["num_attention_heads"]), int(cfg["num_hidden_layers"])
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    dh = h // heads
    nodes: list[Any] = []
    inits: list[Any] = []
    count = [0]

    def name(stem: str) -> str:
        count[0] += 1
        return f"{stem}_{count[0]}"

    def const(stem: str, value: np.ndarray) -> str:
        n = name(stem)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), n))
        return n

    def op(kind: str, inputs: list[str], **attrs) -> str:
        out = name(kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def get(key: str) -> np.ndarray:
        for k in (key, key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")):
            if k in w:
                return w[k]
        raise KeyError(f"weight {key} is missing")

    def linear(x: str, prefix: str) -> str:
        return op("Add", [op("MatMul", [x, const(prefix + ".wt", get(prefix + ".weight").T)]), const(prefix + ".b", get(prefix + ".bias"))])

    def layer_norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", [x, const(prefix + ".g", get(prefix + ".weight")), const(prefix + ".b", get(prefix + ".bias"))], axis=-1, epsilon=eps)

    # Embeddings: word + position (0..S-1) + token type, then LayerNorm.
    seq = op("Shape", ["input_ids"], start=1, end=2)  # [S]
    zero = const("zero", np.array([0], np.int64))
    positions = op("Slice", [const("pos", get("embeddings.position_embeddings.weight")), zero, seq, zero])  # rows 0..S-1
    x = op("Add", [op("Gather", [const("word", get("embeddings.word_embeddings.weight")), "input_ids"]), positions])
    x = op("Add", [x, op("Gather", [const("type", get("embeddings.token_type_embeddings.weight")), "token_type_ids"])])
    x = layer_norm(x, "embeddings.LayerNorm")
    # Additive mask, as transformers builds it: 0 where attended, float32 min on padding.
    keep = op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = op("Mul", [op("Sub", [const("one_f", np.array(1.0, np.float32)), keep]), const("min_f", np.array(np.finfo(np.float32).min, np.float32))])
    bias = op("Unsqueeze", [bias, const("axes", np.array([1, 2], np.int64))])
    split = const("split_shape", np.array([0, 0, heads, dh], np.int64))
    merge = const("merge_shape", np.array([0, 0, h], np.int64))
    scale = const("scale", np.array(1.0 / math.sqrt(dh), np.float32))
    half, root2 = const("half", np.array(0.5, np.float32)), const("sqrt2", np.array(math.sqrt(2.0), np.float32))
    for i in range(layers):
        p = f"encoder.layer.{i}"

        def heads_of(t: str, perm: list[int]) -> str:
            return op("Transpose", [op("Reshape", [t, split])], perm=perm)

        q = heads_of(linear(x, f"{p}.attention.self.query"), [0, 2, 1, 3])
        k = heads_of(linear(x, f"{p}.attention.self.key"), [0, 2, 3, 1])
        v = heads_of(linear(x, f"{p}.attention.self.value"), [0, 2, 1, 3])
        scores = op("Add", [op("Mul", [op("MatMul", [q, k]), scale]), bias])
        ctx = op("MatMul", [op("Softmax", [scores], axis=-1), v])
        ctx = op("Reshape", [op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge])
        x = layer_norm(op("Add", [linear(ctx, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm")
        f = linear(x, f"{p}.intermediate.dense")
        f = op("Mul", [op("Mul", [f, half]), op("Add", [op("Erf", [op("Div", [f, root2])]), const("one_g", np.array(1.0, np.float32))])])
        x = layer_norm(op("Add", [linear(f, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", h])
    graph = helper.make_graph(nodes, "bert_encoder", ints, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="interleaf.models.bert_onnx")
    model.ir_version = 8
    return model


def export_bert_embedder(source: str | os.PathLike, out: Path) -> Path:
    """Writes ``out/onnx/model.onnx`` for the sentence-transformers model in ``source`` (a BERT
    encoder with safetensors weights) and copies its other files (tokenizer, pooling, configs);
    ``out`` must exist and be empty. Returns ``out``."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError("exporting without torch needs the onnx package: pip install onnx") from e
    source = Path(source)
    cfg_path = source / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{source}: no config.json (a sentence-transformers model directory has one)")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    _check_config(cfg, source)
    for need, why in (("modules.json", "the sentence-transformers layout: a transformers checkpoint alone needs the torch exporter"), ("tokenizer.json", "a fast tokenizer file; save it with transformers (tokenizer.save_pretrained) or use the torch exporter")):
        if not (source / need).is_file():
            raise FileNotFoundError(f"{source}: no {need} ({why})")
    modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
    unsupported = [m.get("type") for m in modules if str(m.get("type", "")).rsplit(".", 1)[-1] not in ("Transformer", "Pooling", "Normalize")]
    if unsupported:
        raise ValueError(f"{source}: modules {unsupported} are not supported by interleaf's text embedder")
    model = bert_graph(cfg, _weights(source))
    onnx.checker.check_model(model, full_check=False)
    for p in source.rglob("*"):
        rel = p.relative_to(source)
        if p.is_file() and p.suffix not in _WEIGHT_SUFFIXES and not any(part.startswith(".") for part in rel.parts):
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)
    (out / "onnx").mkdir(exist_ok=True)
    onnx.save(model, str(out / "onnx" / "model.onnx"))
    return out
