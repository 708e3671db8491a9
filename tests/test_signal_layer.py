"""The Signal layer: each Signal class against its function form and the reference path (the
tiny CLIP, embedder and LM fixtures, numpy transcriptions of the formulas), on real images and
text; bad input stays in its own row."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xxhash
from conftest import SKIMAGE_DATA, batch_of, encode
from PIL import Image
from test_models import CLIP_DIR, EMBEDDER_DIR, LM_DIR

import interleaf
from interleaf import models
from interleaf import schema as S
from interleaf.signals import (
    ClipAlignment,
    Context,
    ImageStats,
    Perplexity,
    SequenceConsistency,
    TextCoherence,
    TextStats,
    clip_scores,
    compute,
    mmc4_assign,
    sequence_consistency,
    text_coherence,
    text_stats,
)


@pytest.fixture(scope="module")
def clip():
    return models.load(CLIP_DIR, device="cpu")


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    names = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "motorcycle_left.png", "hubble_deep_field.jpg"]
    return [(SKIMAGE_DATA / n).read_bytes() for n in names]


CAPTIONS = ["An astronaut in a white suit.", "A cup of coffee on a saucer.", "A tabby cat looking up.", "A rocket on the launch pad.", "A man with a camera.", "A red motorcycle.", "Galaxies in deep space."]


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --------------------------------------------------------------------------------- compute


def test_compute_keys_every_node_and_document_and_checks_signals(photos):
    b = batch_of([[("image", photos[0]), ("text", CAPTIONS[0])], [("text", "only text here")]])
    nodes, docs = compute(b, [TextStats(), TextStats("doc", name="doc_text")])
    assert nodes.select("doc_index", "doc_id", "pos").equals(b.select("doc_index", "doc_id", "pos"))
    assert docs.get_column("doc_id").to_list() == ["d0", "d1"]
    # The image node has no text statistics; text nodes have OBELICS's.
    assert nodes.get_column("text_n_words").to_list() == [None, 6, 3]
    with pytest.raises(ValueError, match="both make the node column"):
        compute(b, [TextStats(), TextStats()])
    with pytest.raises(TypeError, match="not a Signal"):
        compute(b, [object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="needs a clip model"):
        compute(b, [ClipAlignment()])
    with pytest.raises(ValueError, match="lacks the node columns"):
        compute(pl.DataFrame({"text": ["a"]}), [TextStats()])


def test_text_stats_signal_equals_the_function_form():
    texts = ["The cat sat on the mat, and the dog sat on the log.", "", "buy buy buy buy buy buy buy buy buy buy buy", "Short one.\n\nA second paragraph that is long enough, with words and a comma, to be kept by the filter."]
    b = batch_of([[("text", texts[0]), ("text", texts[1])], [("text", texts[2]), ("image", b"junk"), ("text", texts[3])], [("image", b"junk")]])
    nodes, docs = compute(b, [TextStats(paragraphs=True), TextStats("doc")])
    want = text_stats(texts, level="paragraph")
    got = nodes.filter(pl.col("text_n_words").is_not_null()).select([f"text_{c}" for c in want.columns])
    assert got.rename(lambda c: c.removeprefix("text_")).equals(want)
    assert nodes.get_column("text_removed_reasons").to_list()[4] == ["words"]
    # OBELICS joins the non-empty texts: the empty second node adds no "\n\n" (which would
    # count as special characters and flip its 0.275 rule here: 0.302 against 0.2745).
    doc_texts = [texts[0], texts[2] + "\n\n" + texts[3], ""]
    want_doc = text_stats(doc_texts, level="document")
    assert docs.select([f"text_{c}" for c in want_doc.columns]).rename(lambda c: c.removeprefix("text_")).equals(want_doc)
    assert docs.get_column("text_n_images").to_list() == [0, 1, 1]
    assert docs.get_column("text_n_texts").to_list() == [2, 2, 0]
    # The node statistics come from the paragraph filter's pass where a node is one paragraph
    # as it is; whitespace to standardise, several paragraphs and other n-grams give the same.
    odd = [*texts, "Tabs\tand\u00a0odd spaces, in one paragraph that standardising changes.", "Hello"]
    b = batch_of([[("text", t)] for t in odd])
    for kw in ({}, {"char_ngram": 3, "word_ngram": 2}):
        nodes, _ = compute(b, [TextStats(paragraphs=True, **kw)])
        want = text_stats(odd, level="paragraph", **kw)
        assert nodes.select([f"text_{c}" for c in want.columns]).rename(lambda c: c.removeprefix("text_")).equals(want), kw


# ----------------------------------------------------------------------------------- image


def test_image_stats_signal_equals_image_stats_with_the_published_rules(photos):
    blank = encode(Image.new("RGB", (300, 300), "white"), "PNG")
    one = encode(Image.new("RGB", (1, 1), "red"), "PNG")
    wide = encode(Image.new("RGB", (700, 200), "gray"), "JPEG")
    images = [*photos, blank, one, wide, b"not an image"]
    b = batch_of([[("image", im), ("text", "x")] for im in images] + [[("image", None)]])
    nodes, _ = compute(b, [ImageStats()])
    img = nodes.filter(pl.col("pos") == 0)
    want = interleaf.image.stats(images + [None])
    for c in ("width", "height", "blur", "entropy", "format"):
        assert img.get_column(f"image_{c}").to_list() == want.get_column(c).to_list(), c
    w, h, fmt = want.get_column("width").to_list(), want.get_column("height").to_list(), want.get_column("format").to_list()

    def expect(wi, he, f, rule):
        if wi is None:
            return None
        short, long, aspect = min(wi, he), max(wi, he), wi / he
        return {
            "mmc4_ok": f in ("JPEG", "PNG") and short >= 150 and 0.5 <= aspect <= 2,
            "obelics_ok": f in ("JPEG", "PNG", "WEBP") and short >= 150 and long <= 20000 and 0.5 <= aspect <= 2,
            "datacomp_ok": short >= 200 and long / short <= 3,
        }[rule]

    for rule in ("mmc4_ok", "obelics_ok", "datacomp_ok"):
        assert img.get_column(f"image_{rule}").to_list() == [expect(*x, rule) for x in zip(w, h, fmt, strict=True)], rule
    # 700x200: aspect 3.5 fails every rule; 1x1 fails on size; blank 300x300 passes all.
    assert img.row(len(photos) + 2, named=True)["image_mmc4_ok"] is False
    assert img.row(len(photos), named=True)["image_datacomp_ok"] is True
    errors = img.get_column("image_error").struct.field("kind").to_list()
    assert errors[-2:] == ["unknown_image_format", "missing_image"] and errors[: len(photos)] == [None] * len(photos)


def test_datacomp_rule_reads_the_original_size_img2dataset_records(tmp_path):
    """DataComp's apply_filter.py applies its size rule to the pool's original_width /
    original_height: img2dataset stored a 1500x540 image at 512x184 and wrote the original size
    in the sample's json, so it passes (184 < 200 would fail it); a 150x150 original stored
    at 300x300 fails; a sample without the fields is judged by the image read."""
    import json
    import tarfile

    samples = [
        ("000000", (512, 184), {"original_width": 1500, "original_height": 540}, True),
        ("000001", (300, 300), {"original_width": 150, "original_height": 150}, False),
        ("000002", (512, 184), {}, False),
        ("000003", (300, 300), {"original_width": "n/a", "original_height": 540}, True),
    ]
    shard = tmp_path / "pool-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, size, meta, _ in samples:
            for ext, data in (("jpg", encode(Image.new("RGB", size, "gray"), "JPEG")), ("txt", b"a gray picture of nothing"), ("json", json.dumps({"key": key, "width": size[0], "height": size[1], **meta}).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    b = pl.concat(interleaf.read(str(shard)))
    nodes, _ = compute(b, [ImageStats()])
    img = nodes.join(b.select("doc_index", "pos", "kind"), on=["doc_index", "pos"]).filter(pl.col("kind") == "image").sort("doc_index")
    assert img.get_column("image_datacomp_ok").to_list() == [want for *_, want in samples]
    assert img.get_column("image_original_width").to_list() == [1500, 150, None, None]
    assert img.get_column("image_height").to_list() == [184, 300, 184, 300]
    # A document of two images: the record's size is no image's own.
    two = batch_of([[("image", encode(Image.new("RGB", (512, 184), "gray"), "JPEG")), ("image", encode(Image.new("RGB", (512, 184), "gray"), "JPEG"))]])
    two = two.with_columns(pl.lit(json.dumps({"original_width": 1500, "original_height": 540})).alias("meta"))
    nodes, _ = compute(two, [ImageStats()])
    assert nodes.get_column("image_datacomp_ok").to_list() == [False, False] and nodes.get_column("image_original_width").to_list() == [None, None]
    assert nodes.get_column("image_height").to_list() == [184, 184]


def test_an_image_named_by_url_says_it_was_never_downloaded(tmp_path):
    """OBELICS and MMC4 publish URLs: such an image has no bytes, and its error says why
    (a local file that is missing keeps the reader's own message)."""
    src = tmp_path / "o.jsonl"
    rec = {"id": "o1", "texts": ["A paragraph.", None, None], "images": [None, "https://example.com/a.jpg", "missing.jpg"]}
    src.write_text(json.dumps(rec) + "\n")
    b = pl.concat(list(interleaf.read(src, format="obelics")))
    nodes, _ = compute(b, [ImageStats()])
    images = b.filter(pl.col("kind") == "image").select("doc_index", "pos")
    err = images.join(nodes, on=["doc_index", "pos"], how="left", maintain_order="left").get_column("image_error").to_list()
    assert err[0]["kind"] == "missing_image" and err[0]["message"].startswith("the image is a URL, never downloaded (https://example.com/a.jpg)")
    assert err[1]["kind"] == "missing_image" and "missing.jpg" in err[1]["message"] and "URL" not in err[1]["message"]


# ------------------------------------------------------------------------------- alignment


def test_clip_score_and_pair_alignment_equal_the_reference_path(clip, photos):
    got = clip_scores(clip, photos + [b"junk"], CAPTIONS + ["a caption"])
    ie, _ = clip.embed_images(photos)
    te, _ = clip.embed_texts(CAPTIONS)
    want = np.diag(clip.similarity(ie, te))
    assert got.get_column("clip_score").to_numpy()[:-1] == pytest.approx(want, abs=1e-6)
    assert got.row(-1, named=True)["clip_score"] is None and got.row(-1, named=True)["error"]["kind"] == "unknown_image_format"
    b = batch_of([[("image", im), ("text", t)] for im, t in zip(photos, CAPTIONS, strict=True)] + [[("image", b"junk"), ("text", "x")], [("image", photos[0])], [("text", "no image")]])
    nodes, _ = compute(b, [ClipAlignment()], Context(clip=clip))
    img = nodes.filter(pl.col("clip_alignment_method").is_not_null())
    assert img.get_column("clip_alignment_method").unique().to_list() == ["pair"]
    assert img.get_column("clip_alignment_score").to_numpy()[: len(photos)] == pytest.approx(want, abs=1e-6)
    assert img.get_column("clip_alignment_text_pos").to_list()[: len(photos)] == [1] * len(photos)
    kinds = img.get_column("clip_alignment_error").struct.field("kind").to_list()
    assert kinds[len(photos) :] == ["unknown_image_format", "no_text"]
    assert img.get_column("clip_alignment_score").to_list()[len(photos) :] == [None, None]


def test_step_alignment_compares_each_image_with_its_steps_text(clip, photos):
    steps = [[("text", "Boil the water.", 0), ("image", photos[1], 0)], [("text", "Add the tea", 1), ("text", "and wait.", 1), ("image", photos[2], 1)], [("image", photos[3], 2)]]
    b = batch_of([[node for step in steps for node in step]])
    nodes, _ = compute(b, [ClipAlignment()], Context(clip=clip))
    img = nodes.filter(pl.col("clip_alignment_method").is_not_null())
    assert img.get_column("clip_alignment_method").to_list() == ["step"] * 3
    ie, _ = clip.embed_images([photos[1], photos[2]])
    te, _ = clip.embed_texts(["Boil the water.", "Add the tea and wait."])
    assert img.get_column("clip_alignment_score").to_numpy()[:2] == pytest.approx(np.diag(clip.similarity(ie, te)), abs=1e-6)
    assert img.get_column("clip_alignment_text_pos").to_list() == [0, 2, None]
    assert img.row(2, named=True)["clip_alignment_error"]["kind"] == "no_text"


def test_mmc4_alignment_equals_the_assignment_of_the_clip_matrix(clip, photos):
    sentences = ["A white space suit.", "Coffee in a cup.", "Some unrelated words about taxes.", "A cat.", "A launch.", "The end."]
    docs = [
        [("text", sentences[0]), ("image", photos[0]), ("text", sentences[1]), ("image", photos[1]), ("image", photos[2]), ("text", sentences[2]), ("text", sentences[3])],
        [("image", photos[3]), ("image", photos[4]), ("image", b"junk"), ("text", sentences[4])],  # more images than sentences
        [("image", photos[5]), ("image", photos[6])],  # no sentences
    ]
    b = batch_of(docs)
    for threshold in (0.15, -1.0, 0.99):
        nodes, _ = compute(b, [ClipAlignment("mmc4", threshold=threshold)], Context(clip=clip))
        got = nodes.filter(pl.col(S.POS).is_in([1, 3, 4]) & (pl.col("doc_index") == 0) | (pl.col("doc_index") == 1) & (pl.col(S.POS) < 2))
        for d, img_pos, txt_pos in ((0, [1, 3, 4], [0, 2, 5, 6]), (1, [0, 1], [3])):
            ie, _ = clip.embed_images([docs[d][p][1] for p in img_pos])
            te, _ = clip.embed_texts([docs[d][p][1] for p in txt_pos])
            sim = (unit(ie) @ unit(te).T).astype(np.float32)
            want = mmc4_assign(sim, threshold)
            rows = got.filter(pl.col("doc_index") == d)
            assert rows.get_column("clip_alignment_text_pos").to_list() == [txt_pos[j] if j >= 0 else None for j in want], (d, threshold)
            best = [sim[i, j] if j >= 0 else sim[i].max() for i, j in enumerate(want)]
            assert rows.get_column("clip_alignment_score").to_numpy() == pytest.approx(best, abs=1e-5)
            kinds = rows.get_column("clip_alignment_error").struct.field("kind").to_list()
            assert kinds == [None if j >= 0 else "below_threshold" for j in want]
        rest = nodes.filter((pl.col("doc_index") >= 1) & pl.col("clip_alignment_method").is_not_null())
        kinds = rest.get_column("clip_alignment_error").struct.field("kind").to_list()
        assert kinds[2:] == ["unknown_image_format", "no_text", "no_text"]
        # Assigning again among every image changes nothing; among fewer, it is the assignment
        # of the smaller matrix (doc 0 without its first image).
        sig = ClipAlignment("mmc4", threshold=threshold)
        cols = ["clip_alignment_score", "clip_alignment_text_pos", "clip_alignment_error"]
        assert sig.reassign(nodes).select(cols).equals(nodes.select(cols))
        fewer = sig.reassign(nodes.filter(~((pl.col("doc_index") == 0) & (pl.col(S.POS) == 1))))
        ie, _ = clip.embed_images([docs[0][p][1] for p in (3, 4)])
        te, _ = clip.embed_texts([docs[0][p][1] for p in (0, 2, 5, 6)])
        want = mmc4_assign((unit(ie) @ unit(te).T).astype(np.float32), threshold)
        got = fewer.filter((pl.col("doc_index") == 0) & pl.col(S.POS).is_in([3, 4])).get_column("clip_alignment_text_pos").to_list()
        assert got == [[0, 2, 5, 6][j] if j >= 0 else None for j in want], threshold
        assert nodes.filter(pl.col("clip_alignment_method").is_not_null()).get_column("clip_alignment_sentence_pos").to_list()[:3] == [[0, 2, 5, 6]] * 3


# ----------------------------------------------------------------------- sequence, coherence


def comm_f(x: np.ndarray) -> float:
    x = unit(x)
    n = len(x)
    adjacent = np.mean([x[i] @ x[i - 1] for i in range(1, n)])
    far = np.mean([x[i] @ x[j] for i in range(n) for j in range(i - 1)])
    return float(adjacent - far)


def test_sequence_consistency_signal_equals_comms_f_on_clip_embeddings(clip, photos):
    docs = [[("image", p) for p in photos[:5]], [("image", photos[0]), ("text", "t"), ("image", photos[1])], [("image", photos[2]), ("image", b"junk"), ("image", photos[3]), ("image", photos[4])], [("text", "no images")]]
    _, out = compute(batch_of(docs), [SequenceConsistency()], Context(clip=clip))
    e, _ = clip.embed_images(photos[:5])
    e2, _ = clip.embed_images([photos[2], photos[3], photos[4]])
    f = out.get_column("sequence_f").to_list()
    assert f[0] == pytest.approx(comm_f(e), abs=1e-6) and f[2] == pytest.approx(comm_f(e2), abs=1e-6)
    assert f[1] is None and f[3] is None
    assert out.get_column("sequence_images").to_list() == [5, 2, 3, 0]
    assert out.get_column("sequence_error").struct.field("kind").to_list() == [None, "too_few_images", None, "too_few_images"]
    # The function form on the same embeddings, and NaN embeddings give NaN, not a crash.
    assert sequence_consistency(e, [0, 5])[0] == pytest.approx(comm_f(e), abs=1e-9)
    bad = e.copy()
    bad[1] = np.nan
    assert np.isnan(sequence_consistency(bad, [0, 5])[0])


def test_text_coherence_signal_equals_the_function_on_the_embedders_vectors():
    emb = models.load(EMBEDDER_DIR, device="cpu")
    docs = [
        [("text", "First, boil water.", 0), ("image", b"x", 0), ("text", "Then add tea", 1), ("text", "leaves.", 1), ("text", "Finally pour it.", 2)],
        [("text", "One sentence."), ("text", "Another sentence."), ("text", "A third.")],
        [("text", "Alone.")],
        [("image", b"x")],
    ]
    _, out = compute(batch_of(docs), [TextCoherence(shuffles=4, seed=3)], Context(text_embedder=emb))
    v0, _ = emb.embed(["First, boil water.", "Then add tea leaves.", "Finally pour it."])
    v1, _ = emb.embed(["One sentence.", "Another sentence.", "A third."])
    # Each document's shuffles are seeded by the xxh3 of its step texts joined by NUL.
    keys = [xxhash.xxh3_64_intdigest("\x00".join(t).encode()) for t in (["First, boil water.", "Then add tea leaves.", "Finally pour it."], ["One sentence.", "Another sentence.", "A third."], ["Alone."])] + [0]
    want = text_coherence(np.concatenate([v0, v1]), [0, 3, 6, 6, 6], shuffles=4, seed=3, keys=keys)
    got = out.select("coherence_mean_cos", "coherence_min_cos", "coherence_margin")
    assert got.rename(lambda c: c.removeprefix("coherence_")).equals(want)
    assert out.get_column("coherence_steps").to_list() == [3, 3, 1, 0]
    assert out.get_column("coherence_error").struct.field("kind").to_list() == [None, None, "too_few_steps", "too_few_steps"]
    with pytest.raises(ValueError, match="one value per document"):
        text_coherence(v0, [0, 3], keys=[1, 2])


def test_blank_step_texts_are_no_text_for_coherence_and_alignment():
    """A step whose text nodes are blank (whitespace only) is no step: a document of blank
    steps is too_few_steps (it scored a mean cosine of 1.0 over three empty steps), blank steps
    beside two real ones leave its margin null (two of them made a positive margin), and an
    image whose step text is blank has no_text (it was scored against "")."""
    emb = models.load(EMBEDDER_DIR, device="cpu")
    real = [("text", "First, boil water.", 0), ("text", "Then pour it over the tea leaves.", 1)]
    docs = [
        [("text", "", 0), ("text", " ", 1), ("text", "\n\t", 2)],
        [*real, ("text", " ", 2), ("text", "\u3000", 3)],
        real,
    ]
    _, out = compute(batch_of(docs), [TextCoherence(shuffles=4, seed=3)], Context(text_embedder=emb))
    assert out.get_column("coherence_steps").to_list() == [0, 2, 2]
    assert out.get_column("coherence_error").struct.field("kind").to_list()[0] == "too_few_steps" and out.get_column("coherence_mean_cos")[0] is None
    assert out.row(1, named=True) | {"doc_index": 0, "doc_id": ""} == out.row(2, named=True) | {"doc_index": 0, "doc_id": ""}
    im = encode(Image.new("RGB", (64, 64), "red"), "PNG")
    nodes, _ = compute(batch_of([[("image", im, 0), ("text", "  ", 0), ("image", im, 1), ("text", "a red square", 1)]]), [ClipAlignment("step")], Context(clip=models.load(CLIP_DIR, device="cpu")))
    images = nodes.filter(pl.col("pos").is_in([0, 2])).sort("pos")
    assert images.get_column("clip_alignment_error").struct.field("kind").to_list() == ["no_text", None]
    assert images.get_column("clip_alignment_score")[0] is None and images.get_column("clip_alignment_score")[1] is not None


def test_a_documents_coherence_margin_does_not_depend_on_its_batch():
    # Seeded by its position in the batch, the margin changed with --batch-size and the shard
    # split (a review found 83 of 125 CoMM margins moving); seeded by its step texts it does not.
    emb = models.load(EMBEDDER_DIR, device="cpu")
    docs = [[("text", t) for t in h] for h in HOWTOS]
    sig = lambda: [TextCoherence(shuffles=3, seed=1)]  # noqa: E731
    cols = ["coherence_mean_cos", "coherence_min_cos", "coherence_margin"]
    _, whole = compute(batch_of(docs), sig(), Context(text_embedder=emb))
    for d in range(len(docs)):
        _, alone = compute(batch_of([docs[d]]), sig(), Context(text_embedder=emb))
        assert alone.select(cols).equals(whole.select(cols)[d])
    _, backwards = compute(batch_of(docs[::-1]), sig(), Context(text_embedder=emb))
    assert backwards.select(cols).reverse().equals(whole.select(cols))
    # By position, the same documents get other margins (what the keys remove).
    v, _ = emb.embed([t for h in HOWTOS for t in h])
    offsets = np.arange(0, 6 * len(HOWTOS) + 1, 6)
    by_position = text_coherence(v, offsets, shuffles=3, seed=1)["margin"].to_numpy()
    by_position_backwards = text_coherence(np.concatenate([v[o : o + 6] for o in offsets[:-1][::-1]]), offsets, shuffles=3, seed=1)["margin"].to_numpy()[::-1]
    assert not np.array_equal(by_position, by_position_backwards)


# Real step sequences (how-to instructions in order), for the real MiniLM weights.
HOWTOS = [
    ["Fill the kettle with fresh water.", "Switch the kettle on and wait for the water to boil.", "Put a tea bag into a mug.", "Pour the boiling water over the tea bag.", "Let the tea steep for three minutes.", "Remove the tea bag and add milk if you like."],
    ["Choose a pot with a drainage hole.", "Put a layer of gravel at the bottom of the pot.", "Fill the pot halfway with potting soil.", "Place the plant in the centre and add soil around it.", "Press the soil down gently.", "Water the plant until water runs out of the hole."],
    ["Crack two eggs into a bowl.", "Whisk the eggs with a pinch of salt.", "Melt butter in a frying pan over medium heat.", "Pour the eggs into the pan.", "Stir slowly until the eggs are just set.", "Serve the scrambled eggs on toast."],
    ["Turn the bicycle upside down.", "Remove the wheel with the flat tyre.", "Lever the tyre off the rim.", "Pull out the inner tube and find the hole.", "Patch the hole and let the glue dry.", "Refit the tube and tyre, then pump it up."],
    ["Preheat the oven to 180 degrees.", "Grease a cake tin with butter.", "Mix flour, sugar and eggs into a batter.", "Pour the batter into the tin.", "Bake for thirty minutes.", "Let the cake cool before slicing it."],
]


MINILM_HOWTOS = Path(__file__).parent / "fixtures" / "minilm_howtos.npz"


def test_real_step_sequences_beat_their_shuffles_on_stored_minilm_embeddings():
    # all-MiniLM-L6-v2 embeddings of HOWTOS computed by sentence-transformers in torch, stored
    # (the test below checks the real weights' ONNX export against them).
    with np.load(MINILM_HOWTOS) as z:
        e = z["embeddings"]
    offsets = np.cumsum([0] + [len(h) for h in HOWTOS])
    t = text_coherence(e, offsets, shuffles=16)
    assert (t.get_column("margin").to_numpy() > 0).all() and t.get_column("margin").mean() > 0.02
    # Reversed order keeps the consecutive cosines; a random order loses them.
    rev = np.concatenate([e[offsets[d] : offsets[d + 1]][::-1] for d in range(len(HOWTOS))])
    assert text_coherence(rev, offsets, shuffles=16).get_column("mean_cos").to_numpy() == pytest.approx(t.get_column("mean_cos").to_numpy(), abs=1e-6)
    rng = np.random.default_rng(0)
    mixed = np.concatenate([e[offsets[d] : offsets[d + 1]][rng.permutation(6)] for d in range(len(HOWTOS))])
    assert text_coherence(mixed, offsets).get_column("mean_cos").mean() < t.get_column("mean_cos").mean()


def test_real_step_sequences_beat_their_shuffles_with_real_minilm(real_minilm):
    emb = models.load(real_minilm, device="cpu")
    b = batch_of([[("text", s, k) for k, s in enumerate(h)] for h in HOWTOS])
    _, res = compute(b, [TextCoherence(shuffles=16)], Context(text_embedder=emb))
    margins = res.get_column("coherence_margin").to_numpy()
    assert margins.mean() > 0.02 and (margins > 0).sum() >= 4, margins
    with np.load(MINILM_HOWTOS) as z:
        stored = z["embeddings"]
    assert emb.embed([s for h in HOWTOS for s in h])[0] == pytest.approx(stored, abs=1e-5)


# ------------------------------------------------------------------------------- perplexity


def test_perplexity_per_node_and_token_weighted_per_document():
    lm = models.load(LM_DIR, device="cpu")
    texts = ["The cat sat on the mat.", "A longer sentence about the weather and the sea today.", "", "Hi"]
    b = batch_of([[("text", texts[0]), ("image", b"x"), ("text", texts[1])], [("text", texts[2])], [("text", texts[3])]])
    nodes, docs = compute(b, [Perplexity(), Perplexity("doc", name="doc_ppl")], Context(lm=lm))
    want = lm.perplexity(texts)
    got = nodes.filter(b.get_column(S.KIND) == "text")  # node rows are the batch's, in order
    assert got.get_column("lm_perplexity").fill_null(np.nan).to_numpy() == pytest.approx(want.get_column("perplexity").fill_null(np.nan).to_numpy(), nan_ok=True, rel=1e-9)
    nll, tok = want.get_column("nll").to_numpy(), want.get_column("tokens").to_numpy()
    assert docs.get_column("doc_ppl_perplexity").to_list()[0] == pytest.approx(float(np.exp((nll[0] * tok[0] + nll[1] * tok[1]) / (tok[0] + tok[1]))), rel=1e-9)
    assert docs.get_column("doc_ppl_error").struct.field("kind").to_list()[1] == "too_few_tokens"
    assert got.get_column("lm_ok").to_list()[:2] == [p <= 1500 for p in want.get_column("perplexity").to_list()[:2]]


def test_perplexity_per_step_text_on_the_steps_text_nodes():
    """level="step": a CoMM step's text is its text nodes joined by a space, scored once, and
    every text node of the step carries that value; a title outside the steps and a document
    without steps are scored per node; a step text with nothing to score is the step's error."""
    lm = models.load(LM_DIR, device="cpu")
    first, second, third = "Preheat the oven to two hundred degrees.", "Butter the tin.", "Bake the cake for forty minutes until golden."
    b = batch_of(
        [
            [("text", "Sponge cake"), ("text", first, 0), ("text", second, 0), ("image", b"x", 0), ("image", b"y", 1), ("text", third, 1)],
            [("text", "No steps here."), ("image", b"z"), ("text", "A second node.")],
            [("text", "", 0), ("image", b"w", 0), ("text", None, 1)],
        ]
    )
    nodes, _ = compute(b, [Perplexity("step", name="s"), Perplexity(name="n")], Context(lm=lm))
    want = lm.perplexity(["Sponge cake", f"{first} {second}", third, "No steps here.", "A second node.", ""])
    ppl, tok = want.get_column("perplexity").to_list(), want.get_column("tokens").to_list()
    text = (b.get_column(S.KIND) == "text").to_list()
    got = nodes.filter(pl.Series(text))
    assert got.get_column("s_perplexity").to_list()[:6] == pytest.approx([ppl[0], ppl[1], ppl[1], ppl[2], ppl[3], ppl[4]], rel=1e-9)
    assert got.get_column("s_tokens").to_list()[:6] == [tok[0], tok[1], tok[1], tok[2], tok[3], tok[4]]
    # Where a step has one text node, the step's value is the node's.
    assert got.get_column("s_perplexity").to_list()[3:6] == pytest.approx(got.get_column("n_perplexity").to_list()[3:6], rel=1e-9)
    assert got.get_column("s_perplexity")[1] != pytest.approx(got.get_column("n_perplexity")[1], rel=1e-6)
    # A blank text node is no text: its step has none (the model has nothing to score in it
    # either, as at node level).
    assert got.get_column("s_perplexity")[6] is None and got.get_column("s_error").struct.field("kind")[6] == "missing_text"
    assert got.get_column("n_perplexity")[6] is None and want.get_column("error").struct.field("kind")[5] == "too_few_tokens"
    assert nodes.filter(~pl.Series(text)).get_column("s_perplexity").null_count() == 4  # images carry none
    # A text node without text is in no step's text: missing_text, as at node level.
    assert got.get_column("s_error").struct.field("kind")[7] == got.get_column("n_error").struct.field("kind")[7] == "missing_text"
    with pytest.raises(ValueError, match="not 'step'"):
        Perplexity("step", paragraphs=True)


def test_document_perplexity_of_the_paragraphs_obelics_keeps():
    # OBELICS scores the document text left after its paragraph filter: a junk paragraph and a
    # node with no surviving paragraph do not count.
    from interleaf.signals import obelics_paragraphs

    lm = models.load(LM_DIR, device="cpu")
    good = "The museum opened a new wing this spring, and the visitors were delighted by the paintings that it shows."
    junk = "zxq vbn qwp zxq vbn qwp zxq vbn"
    texts = [good + "\n\n" + junk, junk]
    b = batch_of([[("text", texts[0]), ("image", b"x"), ("text", texts[1])]])
    _, docs = compute(b, [Perplexity("doc", name="p", paragraphs=True), Perplexity("doc", name="raw")], Context(lm=lm))
    kept = obelics_paragraphs(texts).get_column("text").to_list()
    assert kept == [good, None]
    assert docs.get_column("p_perplexity")[0] == pytest.approx(lm.perplexity([good]).get_column("perplexity")[0], rel=1e-9)
    assert docs.get_column("p_tokens")[0] == lm.perplexity([good]).get_column("tokens")[0]
    assert docs.get_column("raw_tokens")[0] > docs.get_column("p_tokens")[0]


# -------------------------------------------------------------------------- shared, hostile


def test_one_decode_serves_clip_and_statistics(clip, photos):
    b = batch_of([[("image", p), ("text", c)] for p, c in zip(photos, CAPTIONS, strict=True)] + [[("image", b"junk"), ("text", "x")]])
    ctx = Context(clip=clip)
    before = clip.stats["images"]
    both, _ = compute(b, [ImageStats(), ClipAlignment()], ctx)
    # The embeddings went in as preprocessed pixels from the shared decode: one embedding call
    # for the decodable images, and the same values as each signal alone.
    assert clip.stats["images"] - before == len(photos)
    alone_img, _ = compute(b, [ImageStats()])
    alone_clip, _ = compute(b, [ClipAlignment()], Context(clip=clip))
    assert both.select(alone_img.columns).equals(alone_img)
    assert both.get_column("clip_alignment_score").to_numpy() == pytest.approx(alone_clip.get_column("clip_alignment_score").to_numpy(), abs=1e-6, nan_ok=True)


def test_phash_steps_take_their_hashes_from_the_statistics_decode(clip, photos, monkeypatch):
    """With share_phash, the image statistics (alone, or with CLIP pixels) give each image's
    pHash from their own decode: the run's pHash dedup steps then decode nothing again, and
    their values equal a separate phash() call, for documents whose first image node is
    missing or does not decode too."""
    from interleaf import _native
    from interleaf.dedup.perceptual import phash
    from interleaf.pipeline import _document_phash, _signature_frame
    from interleaf.recipes import DedupStep

    b = batch_of(
        [[("image", p), ("text", c), ("image", photos[(i + 1) % len(photos)])] for i, (p, c) in enumerate(zip(photos, CAPTIONS, strict=True))]
        + [[("text", "no image yet"), ("image", None), ("image", photos[2])], [("image", b"junk"), ("image", photos[3])], [("text", "text only")]]
    )
    calls = []
    real = _native.analyze_images
    monkeypatch.setattr(_native, "analyze_images", lambda *a, **k: calls.append(k.get("hashes")) or real(*a, **k))
    doc_step = DedupStep(name="near", method="phash", scope="document", radius=5)
    set_step = DedupStep(name="p", method="phash", radius=5)
    alone_doc, alone_set = _document_phash(b, doc_step), _signature_frame(b, set_step)
    assert len(calls) == 2
    want = phash(b.filter(pl.col(S.KIND) == "image").get_column(S.IMAGE)).get_column("hash")
    plain = compute(b, [ImageStats()])[0]
    for sigs, ctx in (([ImageStats()], Context()), ([ImageStats(), ClipAlignment()], Context(clip=clip))):
        ctx.share_phash()
        calls.clear()
        got, _ = compute(b, sigs, ctx)
        assert len(calls) == 1 and calls[0] == ["phash"]
        hashes = ctx.image_phash(b)
        assert hashes.equals(want)
        assert _document_phash(b, doc_step, hashes).equals(alone_doc)
        assert _signature_frame(b, set_step, image_hashes=hashes).equals(alone_set)
        assert len(calls) == 1
        # The statistics are those of a plain call, without the hash columns.
        assert got.select(plain.columns).equals(plain)
    # A drafted hash decodes on its own (its own failures stay its own): never shared.
    drafted = phash(b.filter(pl.col(S.KIND) == "image").get_column(S.IMAGE), draft=64).get_column("hash")
    calls.clear()
    assert ctx.image_phash(b, 64).equals(drafted)
    assert len(calls) == 1
    # The document with a missing first image takes its second; the one whose first does not
    # decode has no hash, as phash of its first image gives.
    assert alone_set.get_column("value").to_list()[-3:] == [phash([photos[2]]).get_column("hash")[0], None, None]


def test_bad_input_leaves_the_rest_unchanged(clip, photos):
    good = [[("image", photos[0]), ("text", CAPTIONS[0]), ("image", photos[1]), ("text", CAPTIONS[1]), ("image", photos[2])]]
    bad = [
        [("image", b"\xff\xd8\xff\xe0 truncated jpeg")],
        [("text", "")],
        [("text", None)],
        [("image", photos[3])],
        [("text", f"Sentence number {i} of a very long document.") for i in range(10_000)] + [("image", photos[4])],
    ]
    sigs = [ImageStats(), TextStats(), TextStats("doc", name="doc_text"), ClipAlignment(), SequenceConsistency(), TextCoherence()]
    ctx = lambda: Context(clip=clip, text_embedder=models.load(EMBEDDER_DIR, device="cpu"))  # noqa: E731
    n_alone, d_alone = compute(batch_of(good), sigs, ctx())
    n_all, d_all = compute(batch_of(good + bad), sigs, ctx())
    assert n_all.head(n_alone.height).equals(n_alone) and d_all.head(1).equals(d_alone)
    rest = d_all.tail(len(bad))
    assert rest.get_column("sequence_f").null_count() == len(bad)
    assert rest.get_column("sequence_error").struct.field("kind").to_list() == ["too_few_images"] * len(bad)
    assert rest.get_column("coherence_error").struct.field("kind").to_list()[:4] == ["too_few_steps"] * 4
    assert rest.get_column("coherence_steps").to_list()[-1] == 10_000 and rest.get_column("coherence_margin").to_list()[-1] is not None
    big = n_all.filter((pl.col("doc_index") == 5) & pl.col("clip_alignment_method").is_not_null())
    assert big.get_column("clip_alignment_method").to_list() == ["mmc4"] and big.get_column("clip_alignment_score").to_list()[0] is not None
    img_errors = n_all.filter(pl.col("doc_index") == 1).get_column("image_error").struct.field("kind").to_list()
    assert img_errors == ["truncated_image"] or img_errors == ["corrupt_image"]


def test_signals_over_a_read_of_the_bundled_comm_sample(sample_dir, clip):
    batch = pl.concat(list(interleaf.read(sample_dir / "comm.jsonl", format="comm")))
    nodes, docs = compute(batch, [ImageStats(), ClipAlignment(), SequenceConsistency(), TextStats("doc")], Context(clip=clip))
    assert nodes.height == batch.height and docs.height == batch.get_column("doc_index").n_unique()
    img = nodes.filter(pl.col("clip_alignment_method").is_not_null())
    assert set(img.get_column("clip_alignment_method").to_list()) == {"step"}
    assert img.get_column("clip_alignment_score").null_count() == 0
    assert docs.get_column("sequence_f").null_count() == (docs.get_column("sequence_images") < 3).sum()
    json.dumps(docs.select("doc_id", "sequence_f").to_dicts())


def test_top_k_equals_numpy_ranking_and_document_perplexity_the_weighted_mean():
    from interleaf.signals import document_perplexity, top_k

    rng = np.random.default_rng(4)
    q, k = rng.normal(size=(40, 24)).astype(np.float32), rng.normal(size=(300, 24)).astype(np.float32)
    k[7] = k[3]  # a tie: the lower index first
    q[0] = k[3]
    idx, val = top_k(q, k, 5)
    cos = unit(q) @ unit(k).T
    for i in range(len(q)):
        want = sorted(range(len(k)), key=lambda j: (-round(cos[i, j], 5), j))[:5]
        assert idx[i].tolist() == want, i
        assert val[i] == pytest.approx(cos[i, want], abs=1e-5)
    assert idx[0, :2].tolist() == [3, 7]
    small_idx, small_val = top_k(q[:2], k[:3], 5)
    assert (small_idx[:, 3:] == -1).all() and np.isnan(small_val[:, 3:]).all()
    with pytest.raises(ValueError, match="columns"):
        top_k(q, k[:, :3], 2)
    nll, tok = np.array([2.0, np.nan, 1.0, 3.0]), np.array([10, 0, 30, 5])
    got = document_perplexity(nll, tok, [0, 3, 3, 4])
    assert got[0] == pytest.approx(np.exp((2.0 * 10 + 1.0 * 30) / 40)) and np.isnan(got[1]) and got[2] == pytest.approx(np.exp(3.0))


def test_title_nodes_are_not_steps_and_key_dtypes_are_cast():
    emb = models.load(EMBEDDER_DIR, device="cpu")
    b = batch_of([[("text", "A title"), ("text", "Step one.", 0), ("text", "Step two.", 1)]])
    _, out = compute(b, [TextCoherence()], Context(text_embedder=emb))
    assert out.get_column("coherence_steps").to_list() == [2]
    nodes, _ = compute(b.with_columns(pl.col("pos").cast(pl.Int64)), [TextStats()])
    assert nodes.schema["pos"] == pl.Int32 and nodes.get_column("text_n_words").to_list() == [2, 2, 2]


def test_models_given_by_path_load_once_per_process(tmp_path):
    import os
    import shutil

    first = Context(clip=str(CLIP_DIR), device="cpu").model("clip")
    assert Context(clip=CLIP_DIR, device="cpu").model("clip") is first  # a second shard's context
    assert Context(clip=str(CLIP_DIR), device="cpu", threads=1).model("clip") is not first
    copy = tmp_path / "clip"
    shutil.copytree(CLIP_DIR, copy)
    other = Context(clip=str(copy), device="cpu").model("clip")
    assert other is not first
    # A re-exported model (a file changed) is loaded again.
    f = copy / "config.json"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = Context(clip=str(copy), device="cpu").model("clip")
    assert again is not other
    # At most SHARED_MODELS are kept.
    assert len(models._SHARED) <= models.SHARED_MODELS
    np.testing.assert_array_equal(again.embed_texts(["a photo"])[0], first.embed_texts(["a photo"])[0])
