"""The model layer against torch references stored with the tiny fixture models
(scripts/make_test_models.py), without torch at test time; bad input; providers; the CLI.

Tolerances (the issue's): embeddings cosine >= 0.9999 against torch on the same pixels or
tokens, >= 0.999 when our Rust decoder + preprocessing feeds the model instead of Pillow +
CLIPImageProcessor; perplexity within 1e-3 relative.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from interleaf import models
from interleaf.cli import main as cli_main
from interleaf.image import PreprocessConfig
from interleaf.models import ModelDirectoryError
from interleaf.models.runtime import create_session, cuda_available

FIXTURES = Path(__file__).parent / "fixtures" / "models"
CLIP_DIR = FIXTURES / "clip-tiny"
EMBEDDER_DIR = FIXTURES / "embedder-tiny"
LM_DIR = FIXTURES / "lm-tiny"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def ref(d: Path) -> dict[str, np.ndarray]:
    with np.load(d / "reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def clip():
    return models.load(CLIP_DIR, device="cpu")


@pytest.fixture(scope="module")
def embedder():
    return models.load(EMBEDDER_DIR, device="cpu")


@pytest.fixture(scope="module")
def lm():
    return models.load(LM_DIR, device="cpu")


# ------------------------------------------------------------------------------- loading


def test_load_tells_the_kind_from_the_files(clip, embedder, lm):
    assert isinstance(clip, models.CLIPModel) and clip.kind == "clip"
    assert isinstance(embedder, models.TextEmbedder)
    assert isinstance(lm, models.CausalLM)
    assert clip.device == "cpu" and embedder.device == "cpu" and lm.device == "cpu"


def test_a_missing_file_is_reported_by_name(tmp_path):
    d = shutil.copytree(CLIP_DIR, tmp_path / "clip")
    (d / "tokenizer.json").unlink()
    with pytest.raises(ModelDirectoryError, match="tokenizer.json"):
        models.load(d)
    d2 = shutil.copytree(EMBEDDER_DIR, tmp_path / "emb")
    (d2 / "1_Pooling" / "config.json").unlink()
    with pytest.raises(ModelDirectoryError, match="1_Pooling/config.json"):
        models.load(d2)
    with pytest.raises(FileNotFoundError, match="not found"):
        models.load(tmp_path / "nothing-here")


def test_wrong_kind_is_an_error():
    with pytest.raises(ModelDirectoryError, match="holds a clip model, not a causal-lm"):
        models.load(CLIP_DIR, kind="causal-lm")
    with pytest.raises(ModelDirectoryError, match="holds a text-embedder model"):
        models.CLIPModel(EMBEDDER_DIR)
    with pytest.raises(ValueError, match="kind must be one of"):
        models.load(CLIP_DIR, kind="vit")


def test_a_corrupt_onnx_file_is_a_clear_error(tmp_path):
    d = shutil.copytree(LM_DIR, tmp_path / "lm")
    (d / "onnx" / "model.onnx").write_bytes(b"this is not a protobuf")
    m = models.load(d, device="cpu")  # graphs load lazily
    with pytest.raises(ValueError, match="could not be loaded by ONNX Runtime"):
        m.perplexity(["some text to score"])


def test_invalid_json_config_names_the_file(tmp_path):
    d = shutil.copytree(CLIP_DIR, tmp_path / "clip")
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelDirectoryError, match="config.json is not valid JSON"):
        models.load(d)


def test_preprocessing_that_does_not_fit_the_vision_model_is_rejected(tmp_path):
    d = shutil.copytree(CLIP_DIR, tmp_path / "clip")
    cfg = json.loads((d / "preprocessor_config.json").read_text())
    cfg["crop_size"] = {"height": 192, "width": 192}
    (d / "preprocessor_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelDirectoryError, match="image_size is 224"):
        models.load(d)


def test_fp16_without_an_fp16_graph_is_an_error():
    m = models.load(LM_DIR, device="cpu", precision="fp16")
    with pytest.raises(ModelDirectoryError, match="model_fp16.onnx"):
        m.perplexity(["hello there"])


# ------------------------------------------------------------------------------ providers


@pytest.mark.skipif(cuda_available(), reason="this ONNX Runtime has CUDA")
def test_cuda_requested_without_cuda_raises_with_the_fix():
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        create_session(LM_DIR / "onnx" / "model.onnx", "cuda")
    # Already when the model is loaded, not at its first inference.
    for d in (LM_DIR, CLIP_DIR):
        with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
            models.load(d, device="cuda")


@pytest.mark.skipif(cuda_available(), reason="this ONNX Runtime has CUDA")
def test_auto_runs_on_the_cpu_without_warning_when_no_cuda_is_installed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = create_session(LM_DIR / "onnx" / "model.onnx", "auto", threads=1)
    assert s.device == "cpu" and s.providers == ["CPUExecutionProvider"] and not s.io_binding


def test_io_binding_path_gives_the_same_outputs(lm):
    texts = ["The cat sat on the mat.", "Rockets launch from the pad at night."]
    plain = lm.perplexity(texts)["perplexity"].to_numpy()
    bound = models.load(LM_DIR, device="cpu", io_binding=True)
    assert bound.session.io_binding
    np.testing.assert_allclose(bound.perplexity(texts)["perplexity"].to_numpy(), plain, rtol=1e-6)


def test_bad_device_and_threads_are_rejected():
    with pytest.raises(ValueError, match="device must be one of"):
        create_session(LM_DIR / "onnx" / "model.onnx", "tpu")
    for threads in (0, 2**31, "2"):
        with pytest.raises(ValueError, match=r"threads must be an int \[1, 1024\]"):
            create_session(LM_DIR / "onnx" / "model.onnx", "cpu", threads=threads)


# ----------------------------------------------------------------------------------- CLIP


def test_clip_image_embeddings_match_torch_from_encoded_bytes(clip, sample_dir):
    r = ref(CLIP_DIR)
    images = [(sample_dir / "images" / name).read_bytes() for name in r["image_files"]]
    # The recorded embeddings are of the images as convert("RGB") gives them (alpha dropped).
    ours, _ = clip.embed_images(images, batch_size=5, alpha="drop")  # several batches, prefetching the next
    assert ours.shape == (len(images), 16) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosines(ours, r["image_embeds"]).min() >= 0.999
    # Our preprocessing is bit-identical to Pillow + CLIPImageProcessor, so the tighter
    # tolerance holds too.
    assert cosines(ours, r["image_embeds"]).min() >= 0.9999


def test_clip_preprocessing_order_follows_the_config_the_model_ships(tmp_path, sample_dir):
    """A ``preprocessor_config.json`` (transformers) converts to RGB before the resize; an
    ``open_clip_config.json`` (open_clip) after it, and the scores use that order."""
    from interleaf import image

    hf = models.load(CLIP_DIR)
    assert hf.preprocess_config.convert_rgb == "before_resize"
    d = shutil.copytree(CLIP_DIR, tmp_path / "clip")
    (d / "preprocessor_config.json").unlink()
    (d / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {"size": 224, "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}))
    oc = models.load(d)
    assert oc.preprocess_config.convert_rgb == "after_resize"
    rgba = (sample_dir / "images" / "retina_disc.png").read_bytes()
    ours, _ = oc.embed_images([rgba])
    pixels, _ = image.preprocess([rgba], config=PreprocessConfig.open_clip(224))
    other, _ = image.preprocess([rgba], config=PreprocessConfig.open_clip(224, convert_rgb="before_resize"))
    assert not np.array_equal(pixels, other)  # an RGBA image, where the order matters
    np.testing.assert_allclose(ours, oc.embed_images(pixels)[0], atol=1e-6)
    # The alpha rule follows the origin too: transformers' CLIPImageProcessor composites a
    # transparent image over white (its convert_to_rgb), open_clip drops the alpha; the
    # default scores of a transformers export equal transformers' own pixels through the graph
    # (they dropped it, cosine 0.72 on this image with a quarter of it transparent).
    from PIL import Image

    try:
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor
    theirs = CLIPImageProcessor.from_pretrained(str(CLIP_DIR))([Image.open(io.BytesIO(rgba))], return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(hf.embed_images([rgba])[0], hf.embed_images(theirs)[0], atol=1e-6)
    np.testing.assert_array_equal(image.preprocess([rgba], config=hf.preprocess_config)[0], image.preprocess([rgba], config=hf.preprocess_config, alpha="white")[0])
    assert not np.array_equal(image.preprocess([rgba], config=hf.preprocess_config)[0], image.preprocess([rgba], config=hf.preprocess_config, alpha="drop")[0])
    np.testing.assert_array_equal(pixels, image.preprocess([rgba], config=PreprocessConfig.open_clip(224), alpha="drop")[0])


def test_an_open_clip_export_cleans_texts_as_open_clip(tmp_path):
    """open_clip's tokenizer runs ftfy and unescapes HTML twice before its BPE; transformers'
    does neither. A CLIP exported from open_clip (open_clip_config.json) embeds a web caption
    as the text open_clip's basic_clean gives (written out here), a transformers export as is."""
    hf = models.load(CLIP_DIR, device="cpu")
    d = shutil.copytree(CLIP_DIR, tmp_path / "oc")
    (d / "preprocessor_config.json").unlink()
    (d / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {"size": 224}}))
    oc = models.load(d, device="cpu")
    assert oc.open_clip_text and not hf.open_clip_text
    messy = ["Tom &amp; Jerry", "fish &amp;amp; chips", "it\u2019s a dog\u2019s life", "\ufb01sh", "\uff23\uff2c\uff29\uff30", "caf\u00c3\u00a9", "  plain text  "]
    cleaned = ["Tom & Jerry", "fish & chips", "it's a dog's life", "fish", "CLIP", "caf\u00e9", "plain text"]
    np.testing.assert_allclose(oc.embed_texts(messy)[0], hf.embed_texts(cleaned)[0], atol=1e-6)
    differs = np.abs(hf.embed_texts(messy)[0] - hf.embed_texts(cleaned)[0]).max(axis=1) > 1e-4
    assert differs[:6].all() and not differs[6]
    # "<|endoftext|>" in a caption is CLIP's end token to transformers (what follows is not
    # read), plain text to open_clip (whose end token is <end_of_text>).
    eot = oc.tokenizer.tokenizer.token_to_id("<|endoftext|>")
    ids = oc.tokenizer.encode(["a dog <|endoftext|> casino spam"])[0][0]
    assert ids.count(eot) == 1 and ids[-1] == eot
    assert hf.tokenizer.encode(["a dog <|endoftext|> casino spam"])[0][0].count(eot) == 2
    spam, plain = oc.embed_texts(["a photo of a dog <|endoftext|> casino spam", "a photo of a dog"])[0]
    assert np.abs(spam - plain).max() > 1e-4


def test_clip_image_embeddings_match_torch_on_the_same_pixels(clip, sample_dir):
    from PIL import Image
    from transformers import CLIPImageProcessor

    r = ref(CLIP_DIR)
    proc = CLIPImageProcessor.from_pretrained(str(CLIP_DIR))
    pil = [Image.open(sample_dir / "images" / name).convert("RGB") for name in r["image_files"]]
    pixels = proc(pil, return_tensors="np")["pixel_values"]
    ours, _ = clip.embed_images(pixels)
    assert cosines(ours, r["image_embeds"]).min() >= 0.9999


def test_clip_tokens_equal_transformers_and_text_embeddings_match_torch(clip):
    r = ref(CLIP_DIR)
    texts = [str(t) for t in r["texts"]]
    ids, _, truncated = clip.tokenizer.encode(texts)
    for k, (ours, mask, theirs) in enumerate(zip(ids, r["attention_mask"], r["input_ids"])):
        assert ours == theirs[: mask.sum()].tolist(), texts[k][:40]
    before = clip.stats["truncated"]
    emb, _ = clip.embed_texts(texts, batch_size=3)
    assert cosines(emb, r["text_embeds"]).min() >= 0.9999
    long = [i for i, t in enumerate(texts) if len(t) > 1000]
    assert long and truncated[long].all() and truncated.sum() == len(long)
    assert clip.stats["truncated"] - before == len(long)


def test_long_texts_tokenize_as_in_full_from_a_cut_head():
    """A text far longer than the model reads is tokenized from its head, cut at a whitespace
    (tokens never span one): the same ids and truncation flag as the whole text, also where
    the head is not enough (a long run of whitespace, one giant word) and the whole text is
    tokenized after all."""
    from interleaf.models.tokenize import CHARS_PER_TOKEN

    words = " ".join(f"word{i} caf\u00e9 &amp; x" for i in range(40_000))
    texts = [
        words,  # 600k characters
        " " * (CHARS_PER_TOKEN * 100) + "after a long run of spaces, short",
        "\n" * (CHARS_PER_TOKEN * 100) + " ".join(["more words"] * 200),
        "a" * (CHARS_PER_TOKEN * 100) + " tail",
        "short text",
        "",
    ]
    for d in (CLIP_DIR, EMBEDDER_DIR):
        tok = models.load(d, device="cpu").tokenizer
        ids, types, truncated = tok.encode(texts)
        whole = tok.tokenizer.encode_batch(texts, add_special_tokens=True)
        assert ids == [e.ids for e in whole] and types == [e.type_ids for e in whole], d.name
        assert truncated.tolist() == [bool(e.overflowing) for e in whole] and truncated[0] and truncated[2] and not truncated[1], d.name


def test_a_config_or_tokenizer_from_another_model_is_named_at_load(tmp_path):
    """A preprocessing config of another image size or a tokenizer with more tokens than the
    graph's embedding table: a ModelDirectoryError naming the file (they were ONNX Runtime's
    "Got invalid dimensions" and an out-of-range Gather mid-run)."""
    from interleaf.models.directory import ModelDirectoryError

    d = shutil.copytree(CLIP_DIR, tmp_path / "size")
    pp = json.loads((d / "preprocessor_config.json").read_text())
    h = pp["crop_size"]["height"] if isinstance(pp.get("crop_size"), dict) else pp["crop_size"]
    pp.update(crop_size={"height": 64, "width": 64}, size={"shortest_edge": 64})
    (d / "preprocessor_config.json").write_text(json.dumps(pp))
    cfg = json.loads((d / "config.json").read_text())
    cfg["vision_config"].pop("image_size", None)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelDirectoryError, match=rf"vision_model.onnx takes {h}x{h} images, but the preprocessing config in .* makes 64x64: it is another model's"):
        models.load(d, device="cpu").embed_images(np.zeros((1, 3, 64, 64), np.float32))
    checked = 0
    for src, other in ((CLIP_DIR, EMBEDDER_DIR), (EMBEDDER_DIR, CLIP_DIR)):
        d = shutil.copytree(src, tmp_path / f"tok-{src.name}")
        shutil.copy(other / "tokenizer.json", d / "tokenizer.json")
        mine = json.loads((src / "config.json").read_text())
        size = (mine.get("text_config") or mine)["vocab_size"]
        theirs = models.load(other, device="cpu").tokenizer.tokenizer.get_vocab_size(with_added_tokens=True)
        if theirs > size:
            with pytest.raises(ModelDirectoryError, match=rf"tokenizer.json has {theirs:,} tokens but config.json's .*vocab_size is {size:,}: the tokenizer is another model's"):
                models.load(d, device="cpu")
            checked += 1
    assert checked == 1


def test_clip_logit_scale_and_similarity(clip):
    r = ref(CLIP_DIR)
    assert clip.logit_scale == pytest.approx(float(r["logit_scale"]), rel=1e-6)
    sim = clip.similarity(r["image_embeds"], r["text_embeds"])
    assert sim.shape == (len(r["image_embeds"]), len(r["text_embeds"]))
    expect = r["image_embeds"] @ r["text_embeds"].T
    np.testing.assert_allclose(sim, expect, atol=1e-5)


def test_logit_scale_defaults_to_100_without_the_exported_value(tmp_path):
    d = shutil.copytree(CLIP_DIR, tmp_path / "clip")
    cfg = json.loads((d / "config.json").read_text())
    del cfg["interleaf"]
    (d / "config.json").write_text(json.dumps(cfg))
    assert models.load(d).logit_scale == 100.0


def test_the_clip_trained_on_the_sample_scores_as_in_torch_and_separates_its_pairs(sample_dir):
    """clip-sample (scripts/make_test_models.py): the one CLIP fixture whose scores mean
    something, on the bundled pairs it was trained on."""
    d = FIXTURES / "clip-sample"
    r = ref(d)
    clip = models.load(d, device="cpu")
    # The torch reference read the images with convert("RGB") (alpha dropped).
    img, _ = clip.embed_images([(sample_dir / name).read_bytes() for name in r["image_files"]], alpha="drop")
    txt, _ = clip.embed_texts([str(t) for t in r["captions"]])
    cos = img @ txt.T
    np.testing.assert_allclose(cos, r["cosine"], atol=2e-3)
    source = [name.split("/")[-1].split("_")[0].split(".")[0] for name in r["image_files"]]
    apart = np.array([[a != b for b in source] for a in source])
    assert np.diag(cos).min() > 0.5 and cos[apart].max() < 0.0


def test_bad_images_leave_nan_rows_and_errors_only_for_themselves(clip, sample_images):
    good = list(sample_images.values())[:3]
    batch = [good[0], b"", b"\x89PNG\r\n\x1a\n garbage", None, good[1], good[2][:200], good[2]]
    emb, errors = clip.embed_images(batch, batch_size=3)
    kinds = [None if e is None else e["kind"] for e in errors]
    assert kinds[0] is None and kinds[4] is None and kinds[6] is None
    assert kinds[1] == "empty_image" and kinds[3] == "missing_image"
    assert kinds[2] in ("corrupt_image", "truncated_image") and kinds[5] in ("corrupt_image", "truncated_image")
    bad = [i for i, k in enumerate(kinds) if k]
    assert np.isnan(emb[bad]).all() and np.isfinite(emb[[0, 4, 6]]).all()
    alone, _ = clip.embed_images([good[0], good[1], good[2]])
    np.testing.assert_allclose(emb[[0, 4, 6]], alone, atol=1e-6)
    # One batch: the decoded images after the failed ones move into their rows and back.
    whole, _ = clip.embed_images(batch, batch_size=len(batch))
    np.testing.assert_allclose(whole, emb, atol=1e-6)


def test_decoded_rows_packs_the_good_rows_moving_only_as_many_as_failed():
    from interleaf.models.base import decoded_rows

    rng = np.random.default_rng(0)
    for _ in range(500):
        ok = rng.random(int(rng.integers(1, 20))) < rng.random()
        if not ok.any():
            continue
        pixels = rng.random((len(ok), 3, 2, 2)).astype(np.float32)
        before = pixels.copy()
        block, rows = decoded_rows(pixels, ok)
        assert block.base is pixels or block is pixels or np.shares_memory(block, pixels)
        assert sorted(rows.tolist()) == np.flatnonzero(ok).tolist()
        assert np.array_equal(block, before[rows])
        # Rows already in place stay: only the failed slots among the first ok.sum() change.
        assert np.array_equal(rows[ok[: len(rows)]], np.flatnonzero(ok[: len(rows)]))


def test_preprocessed_arrays_of_the_wrong_shape_are_rejected(clip):
    with pytest.raises(ValueError, match=r"\(n, 3, 224, 224\)"):
        clip.embed_images(np.zeros((2, 3, 64, 64), dtype=np.float32))
    with pytest.raises(ValueError, match="floating point"):
        clip.embed_images(np.zeros((1, 3, 224, 224), dtype=np.uint8))


def test_bad_texts_are_values_and_empty_text_is_fine(clip):
    texts = ["a cat", None, b"\xff\xfe not utf-8", "bad \udcff surrogate", "", b"a cat"]
    emb, errors = clip.embed_texts(texts)
    kinds = [None if e is None else e["kind"] for e in errors]
    assert kinds == [None, "missing_text", "invalid_utf8", "invalid_utf8", None, None]
    assert np.isnan(emb[[1, 2, 3]]).all() and np.isfinite(emb[[0, 4, 5]]).all()
    np.testing.assert_allclose(emb[0], emb[5], atol=1e-6)
    with pytest.raises(TypeError, match="text 0 is int"):
        clip.embed_texts([3])


def test_batch_size_and_bucketing_do_not_change_results(clip, embedder):
    r = ref(CLIP_DIR)
    texts = [str(t) for t in r["texts"]]
    a, _ = clip.embed_texts(texts, batch_size=1)
    b, _ = clip.embed_texts(texts, batch_size=64)
    np.testing.assert_allclose(a, b, atol=2e-5)
    c, _ = embedder.embed(texts, batch_size=1)
    d, _ = embedder.embed(texts, batch_size=5)
    np.testing.assert_allclose(c, d, atol=2e-5)


# -------------------------------------------------------------------------- text embedder


def test_embedder_matches_sentence_transformers(embedder):
    r = ref(EMBEDDER_DIR)
    texts = [str(t) for t in r["texts"]]
    emb, _ = embedder.embed(texts, batch_size=4)
    assert emb.shape == (len(texts), 32)
    assert cosines(emb, r["embeddings"]).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_embedder_overrides_the_padding_and_truncation_baked_into_tokenizer_json(embedder):
    r = ref(EMBEDDER_DIR)
    assert embedder.tokenizer.baked_truncation["max_length"] == 8  # what the fixture bakes in
    assert embedder.tokenizer.baked_padding["length"] == 16
    assert embedder.max_seq_length == 32 and embedder.pooling == ["mean"] and embedder.normalize
    texts = [str(t) for t in r["texts"]]
    ids, _, truncated = embedder.tokenizer.encode(texts)
    assert [len(x) for x in ids] == r["token_counts"].tolist()
    from tokenizers import Tokenizer

    full = Tokenizer.from_file(str(EMBEDDER_DIR / "tokenizer.json"))
    full.no_truncation()
    full.no_padding()
    assert truncated.tolist() == [len(e.ids) > 32 for e in full.encode_batch(texts)]
    assert 0 < truncated.sum() < len(texts)
    batches = list(embedder.tokenizer.batches(["short", "a somewhat longer text than that"], 2, bucket=True))
    assert batches[0].input_ids.shape[1] < 16  # padded to its longest text, not to 16


def test_pooling_modes_agree_with_their_definitions():
    from interleaf.models.text_embedder import pool

    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    np.testing.assert_allclose(pool(h, mask, ["mean"])[1], h[1, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(pool(h, mask, ["max"])[0], h[0, :3].max(0), rtol=1e-6)
    np.testing.assert_allclose(pool(h, mask, ["cls"]), h[:, 0])
    np.testing.assert_allclose(pool(h, mask, ["lasttoken"])[0], h[0, 2])
    np.testing.assert_allclose(pool(h, mask, ["mean_sqrt_len"])[0], h[0, :3].sum(0) / np.sqrt(3), rtol=1e-6)
    w = np.array([1, 2, 3], dtype=np.float32)[:, None]
    np.testing.assert_allclose(pool(h, mask, ["weightedmean"])[0], (h[0, :3] * w).sum(0) / 6, rtol=1e-6)
    assert pool(h, mask, ["cls", "mean"]).shape == (2, 6)


# ------------------------------------------------------------------------------ causal LM


def test_clip_edge_images_match_torch(clip):
    """A blank white, a blank black and a 1x1 image through the tiny CLIP against the torch
    model's embeddings (the ``edge_*`` keys of reference.npz, scripts/make_test_models.py)."""
    r = ref(CLIP_DIR)
    data, off = r["edge_images"].tobytes(), r["edge_offsets"]
    ours, errors = clip.embed_images([data[a:b] for a, b in zip(off[:-1], off[1:], strict=True)])
    assert errors.to_list() == [None] * len(r["edge_names"]) == [None] * 3
    assert cosines(ours, r["edge_image_embeds"]).min() >= 0.9999
    np.testing.assert_allclose(ours, r["edge_image_embeds"], atol=1e-5)


def test_mean_nll_equals_a_per_row_log_softmax_in_any_pieces_and_threads():
    """The block kernel behind perplexity against each row's log-softmax by hand (float64),
    with pieces of one row over two threads, float16 logits, and rows of 0, 1 and 2 tokens."""
    from interleaf.models.causal_lm import mean_nll

    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3.0, size=(9, 12, 40)).astype(np.float32)
    ids = rng.integers(0, 40, (9, 12))
    lengths = np.array([12, 0, 1, 2, 5, 12, 7, 3, 11])
    want = np.full(9, np.nan)
    for r, L in enumerate(lengths):
        if L >= 2:
            x = logits[r, : L - 1].astype(np.float64)
            lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
            want[r] = (lse - x[np.arange(L - 1), ids[r, 1:L]]).mean()
    for kw in ({}, {"threads": 2, "piece_floats": 1}, {"threads": 1, "piece_floats": 500}):
        np.testing.assert_allclose(mean_nll(logits, ids, lengths, **kw), want, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(mean_nll(logits.astype(np.float16), ids, lengths, threads=2, piece_floats=1), want, rtol=2e-3, equal_nan=True)
    with pytest.raises(ValueError, match="at most the width"):
        mean_nll(logits, ids, lengths + 1)


def test_perplexity_matches_transformers(lm):
    r = ref(LM_DIR)
    texts = [str(t) for t in r["texts"]]
    df = lm.perplexity(texts, batch_size=3)
    assert df.columns == ["perplexity", "nll", "tokens", "truncated", "error"]
    np.testing.assert_allclose(df["perplexity"].to_numpy(), r["perplexity"], rtol=1e-3)
    np.testing.assert_allclose(np.exp(df["nll"].to_numpy()), df["perplexity"].to_numpy(), rtol=1e-12)
    assert df["tokens"].to_list() == (r["token_counts"] - 1).tolist()
    long = [i for i, t in enumerate(texts) if len(t) > 1000]
    assert df["truncated"].to_list() == [i in long for i in range(len(texts))]


def test_perplexity_with_a_start_token_scores_every_token(lm):
    r = ref(LM_DIR)
    texts = [str(t) for t in r["texts"]]
    df = lm.perplexity(texts, add_bos=True)
    np.testing.assert_allclose(df["perplexity"].to_numpy(), r["perplexity_bos"], rtol=1e-3)
    assert df["tokens"].to_list() == np.minimum(r["token_counts"], 63).tolist()


def test_perplexity_bad_and_short_texts_are_null_with_errors(lm):
    df = lm.perplexity(["", None, b"\xc3\x28", "A real sentence about rockets."])
    kinds = [None if e is None else e["kind"] for e in df["error"].to_list()]
    assert kinds == ["too_few_tokens", "missing_text", "invalid_utf8", None]
    assert df["perplexity"].null_count() == 3 and df["perplexity"][3] > 0


def test_perplexity_of_a_padded_batch_equals_one_text_at_a_time(lm):
    texts = ["Short one.", "A much longer sentence that needs padding for the short one beside it in the batch."]
    together = lm.perplexity(texts, batch_size=2)["perplexity"].to_numpy()
    alone = np.array([lm.perplexity([t])["perplexity"][0] for t in texts])
    np.testing.assert_allclose(together, alone, rtol=1e-5)


# ---------------------------------------------------------------------- info, list and CLI


def test_info_describes_the_graphs():
    d = models.info(CLIP_DIR)
    assert d["kind"] == "clip" and d["dim"] == 16 and d["context_length"] == 77 and d["image_size"] == 224
    vision = d["onnx"]["onnx/vision_model.onnx"]
    assert vision["inputs"][0]["name"] == "pixel_values" and vision["outputs"][0]["name"] == "image_embeds"
    net = models.info(FIXTURES / "inception-tiny")
    assert net["kind"] == "image-features" and net["image_size"] == [64, 64]
    assert [o["name"] for o in net["onnx"]["onnx/model.onnx"]["outputs"]] == ["features", "logits"]
    assert models.info(FIXTURES / "lpips-tiny")["kind"] == "image-distance"


def test_list_finds_models_and_reports_broken_ones(tmp_path, monkeypatch):
    shutil.copytree(LM_DIR, tmp_path / "lm")
    (tmp_path / "junk").mkdir()
    monkeypatch.setenv("INTERLEAF_MODELS", str(tmp_path))
    rows = {r["name"]: r for r in models.list_models()}
    assert rows["lm"]["kind"] == "causal-lm" and rows["lm"]["error"] is None
    assert rows["junk"]["kind"] is None and "not a model directory" in rows["junk"]["error"]
    assert isinstance(models.load("lm", device="cpu"), models.CausalLM)  # a name under the home


def test_cli_models_info_and_list(tmp_path, capsys):
    assert cli_main(["models", "info", str(EMBEDDER_DIR), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "text-embedder"
    shutil.copytree(CLIP_DIR, tmp_path / "clip")
    assert cli_main(["models", "list", "--root", str(tmp_path)]) == 0
    assert "clip" in capsys.readouterr().out
    assert cli_main(["models", "info", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_cli_export_without_torch_says_what_to_install(tmp_path, capsys):
    assert cli_main(["models", "export", "causal-lm", "--from-transformers", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "pip install 'interleaf[export]'" in capsys.readouterr().err


def test_cli_export_checks_its_arguments(capsys):
    assert cli_main(["models", "export", "clip"]) == 2
    assert "exactly one of --from-transformers" in capsys.readouterr().err


def test_pull_downloads_only_what_the_loaders_read_from_a_hub(tmp_path, monkeypatch, capsys):
    """``models pull`` against a local hub (tests/hub_server.py: the hub's REST protocol, plain
    HTTP files) through the real huggingface_hub client: only configs, tokenizer and the graphs
    the loaders run come down; fp16 graphs only when asked; the download loads."""
    pytest.importorskip("huggingface_hub")
    from hub_server import HubServer

    from interleaf.models.hub import pull

    repo = tmp_path / "hub" / "lm"
    shutil.copytree(LM_DIR, repo)
    (repo / "pytorch_model.bin").write_bytes(b"torch weights")
    shutil.copy(repo / "onnx" / "model.onnx", repo / "onnx" / "model_quantized.onnx")
    shutil.copy(repo / "onnx" / "model.onnx", repo / "onnx" / "model_fp16.onnx")
    ckpt = tmp_path / "hub" / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "pytorch_model.bin").write_bytes(b"torch weights")
    monkeypatch.setenv("INTERLEAF_MODELS", str(tmp_path / "home"))
    with HubServer({"org/lm": repo, "org/checkpoint": ckpt}) as hub:
        dest = pull("org/lm", endpoint=hub.url)
        assert dest == tmp_path / "home" / "org--lm"
        assert hub.fetched() == {"config.json", "tokenizer.json", "onnx/model.onnx"}
        lm = models.load("org/lm", device="cpu")
        ref = models.load(LM_DIR, device="cpu")
        assert isinstance(lm, models.CausalLM)
        assert lm.perplexity(["a short text to score"])["perplexity"].to_list() == ref.perplexity(["a short text to score"])["perplexity"].to_list()

        hub.requests.clear()
        assert cli_main(["models", "pull", "org/lm", "--out", str(tmp_path / "f16"), "--fp16", "--endpoint", hub.url]) == 0
        assert f"org/lm -> {tmp_path / 'f16'}" in capsys.readouterr().out
        assert hub.fetched() == {"config.json", "tokenizer.json", "onnx/model.onnx", "onnx/model_fp16.onnx"}
        hub.requests.clear()
        pull("org/lm", tmp_path / "f16", fp16=True, endpoint=hub.url, revision=hub.commit("org/lm"))  # complete: nothing fetched again
        assert hub.fetched() == set()

        with pytest.raises(ModelDirectoryError, match="interleaf models export"):
            pull("org/checkpoint", endpoint=hub.url)
        with pytest.raises(ConnectionError, match="could not download org/x.*RepositoryNotFound"):
            pull("org/x", endpoint=hub.url)
        with pytest.raises(ConnectionError, match="could not download org/lm.*RevisionNotFound"):
            pull("org/lm", tmp_path / "v2", revision="v2", endpoint=hub.url)
        url = hub.url
    with pytest.raises(ConnectionError, match="could not download org/lm"):  # the hub is gone
        pull("org/lm", tmp_path / "gone", endpoint=url)


def test_arguments_are_checked_when_loading_and_calling(clip, lm):
    with pytest.raises(ValueError, match="device must be one of"):
        models.load(LM_DIR, device="gpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        models.load(LM_DIR, precision="half")
    for bs in (0, "2", 2.0):
        with pytest.raises(ValueError, match=r"batch_size must be an int \[1, 1048576\]"):
            lm.perplexity(["some text"], batch_size=bs)
    with pytest.raises(TypeError, match="not one str: wrap it in a list"):
        lm.perplexity("a single string")
    with pytest.raises(TypeError, match="not one bytes/str"):
        clip.embed_images(b"\xff\xd8 one image, not a list")
    with pytest.raises(ValueError, match="applies to text models, not to a clip model"):
        models.load(CLIP_DIR, max_length=10)


def test_empty_inputs_give_empty_outputs(clip, embedder, lm):
    assert clip.embed_images([])[0].shape == (0, 16)
    assert clip.embed_texts([])[0].shape == (0, 16)
    assert embedder.embed([])[0].shape == (0, 32)
    assert lm.perplexity([]).shape == (0, 5)


def test_max_length_is_honoured_and_capped_by_the_positions():
    assert models.load(LM_DIR, max_length=16).max_length == 16
    assert models.load(LM_DIR, max_length=10_000).max_length == 64  # n_positions
    df = models.load(LM_DIR, max_length=16, device="cpu").perplexity(["word " * 40])
    assert df["tokens"][0] == 15 and df["truncated"][0]
    assert models.load(EMBEDDER_DIR, max_length=8).max_seq_length == 8


def test_graphs_with_a_fixed_sequence_axis_get_padded_batches(embedder):
    from types import SimpleNamespace

    from interleaf.models.base import Model

    fixed = models.load(EMBEDDER_DIR, device="cpu")
    Model._fit_sequence(SimpleNamespace(input_shapes={"input_ids": ["batch", 24]}), fixed.tokenizer)
    assert fixed.tokenizer.pad_to == 24 and fixed.tokenizer.max_length == 24  # 24 < max_seq_length 32
    texts = ["short", "a longer text about rockets and coffee cups on tables", "word " * 60]
    assert {b.input_ids.shape[1] for b in fixed.tokenizer.batches(texts, 2)} == {24}
    np.testing.assert_allclose(fixed.embed(texts[:2])[0], embedder.embed(texts[:2])[0], atol=2e-5)


def test_add_bos_keeps_a_start_token_the_tokenizer_already_added(lm):
    text = "Rockets launch from the pad at night."
    first = lm.tokenizer.encode([text])[0][0][0]
    plain = lm.perplexity([text])["perplexity"][0]
    m = models.load(LM_DIR, device="cpu")
    m.bos_token_id = first  # as if the tokenizer prepended its start token itself
    df = m.perplexity([text], add_bos=True)
    assert df["perplexity"][0] == pytest.approx(plain, rel=1e-6)
    assert df["tokens"][0] == lm.perplexity([text])["tokens"][0]


def test_kind_can_be_given_when_the_files_do_not_tell(tmp_path):
    d = shutil.copytree(LM_DIR, tmp_path / "lm")
    cfg = json.loads((d / "config.json").read_text())
    for k in ("model_type", "architectures"):
        cfg.pop(k, None)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelDirectoryError, match="cannot tell the kind"):
        models.load(d)
    assert isinstance(models.load(d, kind="causal-lm"), models.CausalLM)


def test_info_agrees_with_the_loaded_models(clip, embedder, lm):
    assert models.info(EMBEDDER_DIR)["dim"] == embedder.dim and models.info(EMBEDDER_DIR)["max_seq_length"] == embedder.max_seq_length
    assert models.info(LM_DIR)["context_length"] == lm.max_length
    assert models.info(CLIP_DIR)["logit_scale"] == clip.logit_scale


def test_info_on_a_corrupt_graph_is_a_clear_error(tmp_path, capsys):
    d = shutil.copytree(LM_DIR, tmp_path / "lm")
    (d / "onnx" / "model.onnx").write_bytes(b"junk")
    assert cli_main(["models", "info", str(d)]) == 2
    assert "could not be loaded by ONNX Runtime" in capsys.readouterr().err


def test_bad_config_values_name_the_file_and_the_key(tmp_path):
    src = FIXTURES / "clip-tiny"
    d = tmp_path / "clip"
    shutil.copytree(src, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["projection_dim"] = "sixteen"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(models.ModelDirectoryError, match=r"clip/config.json: projection_dim must be an integer, got 'sixteen'"):
        models.load(d)
    (d / "config.json").write_text((src / "config.json").read_text())
    pre = json.loads((d / "preprocessor_config.json").read_text())
    pre["size"] = {"shortest_edge": "big"}
    (d / "preprocessor_config.json").write_text(json.dumps(pre))
    with pytest.raises(ValueError, match=r"preprocessor_config.json: bad preprocessing config"):
        models.load(d)
