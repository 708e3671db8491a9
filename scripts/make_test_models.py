"""Builds the tiny model fixtures under tests/fixtures/models and their torch reference outputs.

Three randomly initialised models (seeded), small enough to commit:

- ``clip-tiny``: a transformers ``CLIPModel`` (ViT with 16-px patches at 224 px, 2 layers,
  width 32; text transformer with 2 layers, width 32, 77 positions; projection 16) with a real
  CLIP BPE tokenizer cut to its first 1,000 merges (open_clip's ``bpe_simple_vocab_16e6``);
- ``embedder-tiny``: a BERT-style encoder (2 layers, width 32) in the sentence-transformers
  layout (Transformer, mean Pooling, Normalize), ``max_seq_length`` 32, with a WordPiece
  tokenizer trained on the bundled captions and standard-library docstrings; its
  ``tokenizer.json`` has padding and truncation baked in on purpose (fixed 16, truncate at 8),
  which the loader must override;
- ``lm-tiny``: a GPT-2-style LM (2 layers, width 32, 64 positions) with a byte-level BPE
  trained on the same text;
- ``clip-sample``: clip-tiny's architecture trained on the bundled sample's image-caption pairs
  (the one fixture whose scores mean something: matched pairs of those images score high,
  mismatched ones low), for the planted "mismatched image" cases.

Each is exported with interleaf's own exporter (``interleaf.models.export``), and the
references are computed in torch with every module in eval mode:

- ``reference.npz`` of clip-tiny: image embeddings of the bundled photographs from
  Pillow + ``CLIPImageProcessor`` + torch, text embeddings and input ids from transformers'
  tokenizer + torch; and the same for a few edge-case images (blank, 1x1), encoded PNGs stored
  with them (``edge_names``, ``edge_images`` + ``edge_offsets``, ``edge_image_embeds``).
  ``--only clip-tiny-edges`` adds just those keys to the existing file: it rebuilds the seeded
  torch model, checks that it reproduces the stored embeddings exactly, and leaves the ONNX
  graphs and every other key as they are;
- ``reference.npz`` of embedder-tiny: ``SentenceTransformer.encode`` of the texts;
- ``reference.npz`` of lm-tiny: transformers' perplexity (``labels=input_ids``) per text.

Run with torch, transformers, sentence-transformers and open_clip installed
(``pip install 'interleaf[export]'``): ``python scripts/make_test_models.py``. Nothing is
downloaded.
"""

from __future__ import annotations

import gzip
import inspect
import json
import sys
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np

from interleaf.models.export import clip_tokenizer_fast

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "models"
SAMPLE = ROOT / "python" / "interleaf" / "data" / "sample"
SEED = 20261122

# Texts the references are computed on: real captions, an empty string, unicode, a text far
# longer than every model's limit, and a one-word text.
def reference_texts() -> list[str]:
    caps = [json.loads(l)["caption"] for l in (SAMPLE / "pairs.jsonl").read_text().splitlines() if l.strip()]
    long = " ".join(caps * 4)
    return caps[:8] + ["", "Café au lait, naïve façade — 東京 🚀", long, "Hello"]


def corpus() -> list[str]:
    """Real English: the bundled captions and CoMM step texts, plus standard-library docstrings."""
    import collections
    import email
    import json as j
    import os
    import pathlib
    import string
    import textwrap
    import typing

    texts = [json.loads(l)["caption"] for l in (SAMPLE / "pairs.jsonl").read_text().splitlines() if l.strip()]
    for line in (SAMPLE / "comm.jsonl").read_text().splitlines():
        doc = json.loads(line)
        texts += [doc["title"], doc.get("summary", "")]
        texts += [item["content"] for step in doc["step_info"] for item in step if item["type"] == "text"]
    for mod in (collections, email, j, os, pathlib, string, textwrap, typing):
        for _, obj in sorted(vars(mod).items()):
            d = inspect.getdoc(obj)
            if d:
                texts.append(d)
    return [t for t in texts if t]


def clip_tokenizer(merges_kept: int = 1000):
    """The real CLIP BPE with its first ``merges_kept`` merges, as transformers'
    CLIPTokenizerFast."""
    import open_clip.tokenizer as oct

    path = Path(oct.default_bpe())
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1 : 1 + merges_kept]
    merges = [tuple(m.split()) for m in merges]
    b2u = oct.bytes_to_unicode()
    vocab = list(b2u.values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return clip_tokenizer_fast({v: i for i, v in enumerate(vocab)}, merges)


def stamp_source(out: Path, what: str, how: str = "random init") -> None:
    """Replace the temporary source path the exporter recorded with a stable description."""
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["interleaf"]["source"] = f"scripts/make_test_models.py: {what}, {how}, seed {SEED}"
    cfg.pop("_name_or_path", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def tiny_clip(vocab_size: int):
    """clip-tiny's architecture, freshly initialised from torch's current seed: ViT with 16-px
    patches at 224 px, 2 layers of width 32; text transformer with 2 layers of width 32, 77
    positions; projection 16."""
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=224, patch_size=16),
        projection_dim=16,
    )
    return CLIPModel(cfg)


def clip_edge_images() -> list[tuple[str, bytes]]:
    """Edge cases for clip-tiny's reference: blank images and a 1x1 image, as PNG."""
    from PIL import Image

    def png(im) -> bytes:
        buf = BytesIO()
        im.save(buf, "PNG")
        return buf.getvalue()

    return [
        ("white_300x200.png", png(Image.new("RGB", (300, 200), (255, 255, 255)))),
        ("black_64x64.png", png(Image.new("RGB", (64, 64), (0, 0, 0)))),
        ("rgb_1x1.png", png(Image.new("RGB", (1, 1), (200, 30, 90)))),
    ]


def clip_edge_reference(model, proc) -> dict[str, np.ndarray]:
    """The ``edge_*`` keys of clip-tiny's reference.npz: Pillow + ``CLIPImageProcessor`` + torch
    embeddings of :func:`clip_edge_images` (image i is ``edge_images[edge_offsets[i]:
    edge_offsets[i + 1]]``)."""
    import torch
    from PIL import Image

    items = clip_edge_images()
    pixels = proc([Image.open(BytesIO(b)).convert("RGB") for _, b in items], return_tensors="np")["pixel_values"]
    with torch.no_grad():
        emb = model.visual_projection(model.vision_model(pixel_values=torch.from_numpy(pixels)).pooler_output)
    emb = torch.nn.functional.normalize(emb, dim=-1).numpy()
    return dict(
        edge_names=np.array([n for n, _ in items]),
        edge_images=np.frombuffer(b"".join(b for _, b in items), np.uint8),
        edge_offsets=np.concatenate([[0], np.cumsum([len(b) for _, b in items])]).astype(np.int64),
        edge_image_embeds=emb.astype(np.float32),
    )


def add_clip_edges() -> None:
    """Adds the ``edge_*`` keys to the committed clip-tiny reference.npz without re-exporting:
    the torch model is rebuilt from the seed, and must reproduce the stored photograph and text
    embeddings exactly (else rebuild everything with ``--only clip-tiny``)."""
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor

    from interleaf.models.export import eval_mode

    d = OUT / "clip-tiny"
    with np.load(d / "reference.npz") as z:
        ref = {k: z[k] for k in z.files}
    torch.manual_seed(SEED)
    model = tiny_clip(len(clip_tokenizer()))
    with torch.no_grad():
        model.logit_scale.fill_(4.0)
    eval_mode(model)
    proc = CLIPImageProcessor.from_pretrained(str(d))
    images = [SAMPLE / "images" / str(n) for n in ref["image_files"]]
    pixels = proc([Image.open(BytesIO(p.read_bytes())).convert("RGB") for p in images], return_tensors="np")["pixel_values"]
    with torch.no_grad():
        img = model.visual_projection(model.vision_model(pixel_values=torch.from_numpy(pixels)).pooler_output)
        txt = model.text_projection(model.text_model(input_ids=torch.from_numpy(ref["input_ids"]), attention_mask=torch.from_numpy(ref["attention_mask"])).pooler_output)
    img = torch.nn.functional.normalize(img, dim=-1).numpy()
    txt = torch.nn.functional.normalize(txt, dim=-1).numpy()
    if not (np.array_equal(img, ref["image_embeds"]) and np.array_equal(txt, ref["text_embeds"])):
        raise SystemExit("the seeded clip-tiny does not reproduce reference.npz in this torch/transformers; rebuild it with --only clip-tiny")
    ref.update(clip_edge_reference(model, proc))
    np.savez_compressed(d / "reference.npz", **ref)


def make_clip(texts: list[str], work: Path) -> None:
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor

    from interleaf.models.export import eval_mode, export_clip_transformers

    src = work / "clip-src"
    src.mkdir()
    tok = clip_tokenizer()
    vocab_size = len(tok)
    tok.save_pretrained(str(src))
    CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}).save_pretrained(str(src))
    torch.manual_seed(SEED)
    model = tiny_clip(vocab_size)
    with torch.no_grad():
        model.logit_scale.fill_(4.0)  # a trained-looking value, so the export of it is checked
    model.save_pretrained(str(src))
    out = export_clip_transformers(src, OUT / "clip-tiny", overwrite=True)
    stamp_source(out, "transformers CLIPModel")

    # References: Pillow + CLIPImageProcessor -> torch; transformers' tokenizer -> torch.
    eval_mode(model)
    images = sorted((SAMPLE / "images").iterdir())
    proc = CLIPImageProcessor.from_pretrained(str(src))
    pixels = proc([Image.open(BytesIO(p.read_bytes())).convert("RGB") for p in images], return_tensors="np")["pixel_values"]
    enc = tok(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        img = model.visual_projection(model.vision_model(pixel_values=torch.from_numpy(pixels)).pooler_output)
        txt = model.text_projection(model.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).pooler_output)
    img = torch.nn.functional.normalize(img, dim=-1).numpy()
    txt = torch.nn.functional.normalize(txt, dim=-1).numpy()
    np.savez_compressed(
        out / "reference.npz",
        image_files=np.array([p.name for p in images]),
        image_embeds=img.astype(np.float32),
        texts=np.array(texts),
        input_ids=enc["input_ids"].numpy(),
        attention_mask=enc["attention_mask"].numpy(),
        text_embeds=txt.astype(np.float32),
        logit_scale=np.float32(model.logit_scale.exp().item()),
        **clip_edge_reference(model, proc),
    )


def make_clip_sample(work: Path) -> None:
    """``clip-sample``: clip-tiny's architecture *trained* on the bundled sample's image-caption
    pairs (``pairs.jsonl``), so its scores mean something on those images: a caption scores high
    with its own image and low with the others. Not a general model: it knows only these twelve
    images. Contrastive loss (CLIP's) plus hinges that put matched pairs above cosine 0.6 and
    mismatched ones below -0.1, on random crops / flips of the images and random word spans of
    the captions, so re-encoded copies and shortened captions still match."""
    import random

    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor

    from interleaf.models.export import eval_mode, export_clip_transformers

    src = work / "clip-sample-src"
    src.mkdir()
    tok = clip_tokenizer()
    vocab_size = len(tok)
    tok.save_pretrained(str(src))
    proc = CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224})
    proc.save_pretrained(str(src))
    rows = [json.loads(line) for line in (SAMPLE / "pairs.jsonl").read_text().splitlines() if line.strip()]
    names = sorted({r["image"] for r in rows})
    captions = {n: [r["caption"] for r in rows if r["image"] == n] for n in names}
    source = {r["image"]: r["source"] for r in rows}
    images = {n: Image.open(SAMPLE / n).convert("RGB") for n in names}
    random.seed(SEED)
    torch.manual_seed(SEED)
    model = tiny_clip(vocab_size)

    def augment(im: Image.Image) -> Image.Image:
        w, h = im.size
        s = random.uniform(0.75, 1.0)
        cw, ch = max(1, int(w * s)), max(1, int(h * s))
        x, y = random.randint(0, w - cw), random.randint(0, h - ch)
        out = im.crop((x, y, x + cw, y + ch))
        return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if random.random() < 0.5 else out

    def span(text: str) -> str:
        words = text.split()
        if random.random() < 0.4 or len(words) <= 4:
            return text
        n = random.randint(4, len(words))
        a = random.randint(0, len(words) - n)
        return " ".join(words[a : a + n])

    def embed(pixels, ids, mask):
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        txt = model.text_projection(model.text_model(input_ids=ids, attention_mask=mask).pooler_output)
        return torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1)

    def batch(aug: bool):
        pix = proc([augment(images[n]) if aug else images[n] for n in names], return_tensors="pt")["pixel_values"]
        texts = [span(random.choice(captions[n])) if aug else captions[n][0] for n in names]
        enc = tok(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        return pix, enc["input_ids"], enc["attention_mask"]

    steps = 2000
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    eye = torch.eye(len(names), dtype=torch.bool)
    for step in range(steps):
        model.train()
        img, txt = embed(*batch(step % 4 != 0))
        cos = img @ txt.T
        logits = cos * model.logit_scale.exp().clamp(max=100)
        target = torch.arange(len(names))
        loss = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
        loss = loss + torch.relu(0.6 - cos[eye]).mean() + torch.relu(cos[~eye] + 0.1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            print(f"clip-sample step {step}: loss {loss.item():.3f}", flush=True)
    eval_mode(model)
    with torch.no_grad():
        img, txt = embed(*batch(False))
        cos = (img @ txt.T).numpy()
    # Crops of one photograph (the astronaut and her face) may stay close; different photographs
    # must not.
    apart = np.array([[source[a] != source[b] for b in names] for a in names])
    matched, other = np.diag(cos), cos[apart]
    print(f"clip-sample: matched cosine {matched.min():.3f}..{matched.max():.3f}, other photographs {other.min():.3f}..{other.max():.3f}")
    if matched.min() < 0.5 or other.max() > 0.2:
        np.set_printoptions(precision=2, suppress=True, linewidth=200)
        print(names, cos, sep="\n")
        raise SystemExit("clip-sample did not separate matched from mismatched pairs; train longer")
    model.save_pretrained(str(src))
    out = export_clip_transformers(src, OUT / "clip-sample", overwrite=True)
    stamp_source(out, "transformers CLIPModel", "trained on the bundled sample's pairs.jsonl")
    # Torch's cosines of every image with every image's first caption (rows: images).
    np.savez_compressed(out / "reference.npz", image_files=np.array(names), captions=np.array([captions[n][0] for n in names]), cosine=cos.astype(np.float32))


def make_embedder(texts: list[str], train: list[str], work: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from interleaf.models.export import eval_mode, export_text_embedder

    src = work / "embedder-src"
    src.mkdir()
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    tk.train_from_iterator(train, trainers.WordPieceTrainer(vocab_size=1000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tk.post_processor = processors.BertProcessing(("[SEP]", tk.token_to_id("[SEP]")), ("[CLS]", tk.token_to_id("[CLS]")))
    hf_tok = BertTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(SEED + 1)
    bert = BertModel(BertConfig(vocab_size=tk.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64))
    bert.save_pretrained(str(src / "hf"))
    hf_tok.save_pretrained(str(src / "hf"))
    word = st_models.Transformer(str(src / "hf"), max_seq_length=32)
    st = SentenceTransformer(modules=[word, st_models.Pooling(32, pooling_mode="mean"), st_models.Normalize()], device="cpu")
    st.save(str(src / "st"))
    # Bake misleading padding and truncation into tokenizer.json: the loader must use
    # max_seq_length (32) and pad each batch only to its longest text.
    tj = json.loads((src / "st" / "tokenizer.json").read_text())
    tj["padding"] = {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": None, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    tj["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    out = export_text_embedder(src / "st", OUT / "embedder-tiny", overwrite=True)
    (out / "tokenizer.json").write_text(json.dumps(tj))
    (out / "README.md").unlink(missing_ok=True)
    stamp_source(out, "sentence-transformers BERT + mean pooling + Normalize")
    st = SentenceTransformer(str(src / "st"), device="cpu")
    eval_mode(st)
    ref = st.encode(texts, convert_to_numpy=True, batch_size=4)
    ids = [st.tokenize([t])["input_ids"][0].tolist() for t in texts]
    np.savez_compressed(out / "reference.npz", texts=np.array(texts), embeddings=ref.astype(np.float32), token_counts=np.array([len(x) for x in ids]))


def make_lm(texts: list[str], train: list[str], work: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from interleaf.models.export import eval_mode, export_causal_lm, reference_perplexity

    src = work / "lm-src"
    src.mkdir()
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(train, trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = GPT2TokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    eot = tk.token_to_id("<|endoftext|>")
    torch.manual_seed(SEED + 2)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=tk.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=eot, eos_token_id=eot))
    lm.save_pretrained(str(src))
    hf_tok.save_pretrained(str(src))
    out = export_causal_lm(src, OUT / "lm-tiny", overwrite=True)
    stamp_source(out, "transformers GPT2LMHeadModel")
    eval_mode(lm)
    scored = [t for t in texts if t]
    ppl = reference_perplexity(lm, hf_tok, scored, 64)
    # With the end-of-text token prepended, every token of the text is scored.
    with torch.no_grad():
        bos = []
        for t in scored:
            ids = torch.tensor([[eot] + hf_tok(t)["input_ids"]])[:, :64]
            bos.append(float(torch.exp(lm(input_ids=ids, labels=ids, use_cache=False).loss)))
    counts = [len(hf_tok(t, truncation=True, max_length=64)["input_ids"]) for t in scored]
    np.savez_compressed(out / "reference.npz", texts=np.array(scored), perplexity=ppl, perplexity_bos=np.array(bos), token_counts=np.array(counts))


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Builds the tiny model fixtures (all of them by default).")
    ap.add_argument("--only", action="append", choices=("clip-tiny", "clip-tiny-edges", "clip-sample", "embedder-tiny", "lm-tiny"), help="build only this fixture (repeatable)")
    only = set(ap.parse_args().only or ())
    texts = reference_texts()
    train = corpus()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not only or "clip-tiny" in only:
            make_clip(texts, work)
        elif "clip-tiny-edges" in only:
            add_clip_edges()
        if not only or "clip-sample" in only:
            make_clip_sample(work)
        if not only or "embedder-tiny" in only:
            make_embedder(texts, train, work)
        if not only or "lm-tiny" in only:
            make_lm(texts, train, work)
    for d in sorted(OUT.iterdir()):
        size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
        print(f"{d.relative_to(ROOT)}: {size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
