"""Evaluation metrics against manual computations and reference libraries."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from interleaf import models
from interleaf.evaluate import clip_image_similarity

CLIP = "tests/fixtures/models/clip-tiny"


def test_clip_image_similarity_against_a_manual_computation(sample_images):
    clip = models.load(CLIP, kind="clip")
    photos = list(sample_images.values())
    blank = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 255, 255)).save(blank, "PNG")
    gen = [photos[0], photos[1], None, photos[3], b"broken", blank.getvalue(), photos[2]]
    ref = [photos[0], photos[2], photos[2], None, photos[4], photos[5], b""]
    summary, per = clip_image_similarity(gen, ref, clip)
    # By hand: embeddings of each image, cosine of the scored pairs (0, 1 and 5), plain mean.
    e, _ = clip.embed_images([photos[0], photos[1], photos[2], blank.getvalue(), photos[5]])
    cos = [float(e[0] @ e[0]), float(e[1] @ e[2]), float(e[3] @ e[4])]
    np.testing.assert_allclose(per["similarity"].to_numpy()[[0, 1, 5]], cos, atol=1e-6)
    assert per["similarity"][0] == pytest.approx(1.0, abs=1e-5)  # an image against itself
    assert summary["clip_i"] == pytest.approx(np.mean(cos), abs=1e-6)
    assert (summary["n"], summary["scored"]) == (7, 3)
    assert summary["skipped"] == {"generated unknown_image_format": 1, "missing_generated": 1, "missing_reference": 2}
    assert per["skipped"].to_list() == [None, None, "missing_generated", "missing_reference", "generated unknown_image_format", None, "missing_reference"]
    empty, per0 = clip_image_similarity([None], [None], clip)
    assert empty["clip_i"] is None and empty["scored"] == 0 and per0["similarity"].to_list() == [None]
    with pytest.raises(ValueError, match="differ in length"):
        clip_image_similarity([photos[0]], [], clip)


def test_clip_image_similarity_in_chunks_with_progress_is_the_same(sample_images, monkeypatch, capsys):
    import interleaf.evaluate as ev

    clip = models.load(CLIP, kind="clip")
    photos = list(sample_images.values())
    gen, ref = [photos[0], None, photos[1], b"broken", photos[3]], [photos[2], photos[2], photos[4], photos[5], photos[3]]
    whole, per = clip_image_similarity(gen, ref, clip)
    monkeypatch.setattr(ev, "CLIP_I_CHUNK", 2)
    chunked, per2 = clip_image_similarity(gen, ref, clip, progress=True)
    assert chunked == whole and per2.equals(per)
    err = capsys.readouterr().err
    assert "clip-i: 4 pairs, 8 images" in err and "docs" not in err


def test_clip_image_similarity_refuses_paths_as_image_metrics_does(sample_images):
    from interleaf.evaluate import image_metrics

    photo = next(iter(sample_images.values()))
    for gen, ref in (([photo], ["ref.jpg"]), ([None], [Path("ref.jpg")]), (["gen.jpg"], [photo])):
        with pytest.raises(TypeError, match=r"images must be encoded bytes or None, not .*\(a path\? read the file's bytes\)"):
            clip_image_similarity(gen, ref, CLIP)
        with pytest.raises(TypeError, match=r"\(a path\? read the file's bytes\)"):
            image_metrics(gen, ref)


def test_eval_clip_i_with_no_pair_scored_exits_1_with_the_metrics_written(tmp_path, capsys):
    from interleaf.cli import main

    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    (gen / "a.png").write_bytes(b"not an image")
    (ref / "a.png").write_bytes(b"nor this")
    out = tmp_path / "clipi"
    assert main(["eval", "clip-i", str(gen), str(ref), "--clip", CLIP, "--out", str(out), "--quiet"]) == 1
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["clip_i"] is None and metrics["scored"] == 0
    assert "no image pair gave a metric" in capsys.readouterr().err


def _distorted(data: bytes, how: str) -> bytes:
    from PIL import ImageFilter

    im = Image.open(io.BytesIO(data)).convert("RGB")
    if how == "blur":
        im = im.filter(ImageFilter.GaussianBlur(3))
    elif how == "noise":
        rng = np.random.default_rng(0)
        arr = np.asarray(im).astype(np.int16) + rng.integers(-25, 26, size=(im.height, im.width, 3))
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif how == "small":
        im = im.resize((max(1, im.width // 5), max(1, im.height // 5)))
    buf = io.BytesIO()
    im.save(buf, "JPEG" if how != "png" else "PNG", quality=40)
    return buf.getvalue()


def _skimage_pair(a: bytes, b: bytes, size: int = 256) -> tuple[float, float]:
    # CoMM's code: PIL open, convert("RGB"), resize((256, 256)) with Pillow's default filter.
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
    with np.errstate(divide="ignore"):
        return structural_similarity(x, y, data_range=255, channel_axis=2), peak_signal_noise_ratio(x, y, data_range=255)


def test_image_metrics_equal_scikit_image_on_real_photographs(sample_images):
    from interleaf.evaluate import image_metrics

    photos = list(sample_images.values())[:5]
    one = io.BytesIO()
    Image.new("RGB", (1, 1), (10, 200, 30)).save(one, "PNG")
    blank = io.BytesIO()
    Image.new("RGB", (300, 200), (255, 255, 255)).save(blank, "PNG")
    ref, gen = [], []
    for p in photos:
        for how in ("blur", "noise", "small", "png"):
            ref.append(p)
            gen.append(_distorted(p, how))
    ref += [photos[0], one.getvalue(), blank.getvalue(), photos[1]]
    gen += [photos[0], photos[2], photos[3], blank.getvalue()]
    summary, per = image_metrics(gen, ref)
    expected = [_skimage_pair(r, g) for r, g in zip(ref, gen, strict=True)]
    # Tolerance: sums are exact in both; only the order of the final float divisions differs.
    np.testing.assert_allclose(per["ssim"].to_numpy(), [e[0] for e in expected], rtol=0, atol=1e-10)
    finite = [e[1] for e in expected if np.isfinite(e[1])]
    got = per["psnr"].drop_nulls().to_numpy()
    np.testing.assert_allclose(got, finite, rtol=1e-12)
    assert per.row(len(ref) - 4, named=True)["identical"] == 1 and per.row(len(ref) - 4, named=True)["psnr"] is None  # an image against itself
    # The PNG copies hold the decoded JPEG's pixels: identical too.
    assert summary["identical_pairs"] == sum(1 for e in expected if np.isinf(e[1])) == 6 and summary["scored"] == len(ref)
    assert summary["ssim"] == pytest.approx(np.mean([e[0] for e in expected]), abs=1e-10)
    assert summary["psnr"] == pytest.approx(np.mean(finite), rel=1e-12)


def test_image_metrics_cross_pairs_and_failures(sample_images):
    from interleaf.evaluate import image_metrics

    p = list(sample_images.values())
    gen = [[p[0], p[1]], [p[2]], [], [b"broken"], None]
    ref = [[p[3], p[4], p[5]], [p[2], p[0]], [p[1]], [p[1]], [p[0]]]
    summary, per = image_metrics(gen, ref, pairing="cross")
    # CoMM's protocol: the mean over every (reference, generated) pair of the example.
    ex0 = [_skimage_pair(r, g) for r in ref[0] for g in gen[0]]
    assert per.row(0, named=True)["pairs"] == 6
    assert per.row(0, named=True)["ssim"] == pytest.approx(np.mean([e[0] for e in ex0]), abs=1e-10)
    assert per.row(0, named=True)["psnr"] == pytest.approx(np.mean([e[1] for e in ex0]), rel=1e-12)
    assert per.row(1, named=True)["pairs"] == 2 and per.row(1, named=True)["identical"] == 1
    assert per["skipped"].to_list() == [None, None, "missing_generated", "unknown_image_format", "missing_generated"]
    assert summary["scored"] == 2 and summary["skipped"] == {"missing_generated": 2, "unknown_image_format": 1}
    with pytest.raises(TypeError, match="list of images"):
        image_metrics([p[0]], [[p[1]]], pairing="cross")
    with pytest.raises(ValueError, match="pairing must be"):
        image_metrics([p[0]], [p[1]], pairing="all")


def _real_captions(sample_dir) -> list[str]:
    import json

    caps = [json.loads(line)["caption"] for line in (sample_dir / "pairs.jsonl").read_text().splitlines() if line.strip()]
    for line in (sample_dir / "comm.jsonl").read_text().splitlines():
        if line.strip():
            caps += [item["content"] for step in json.loads(line)["step_info"] for item in step if item["type"] == "text"]
    return caps


def _perturb(text: str, rng) -> str:
    w = text.split()
    op = rng.integers(0, 4)
    if op == 0 and len(w) > 3:
        del w[int(rng.integers(0, len(w)))]
    elif op == 1 and len(w) > 2:
        i = int(rng.integers(0, len(w) - 1))
        w[i], w[i + 1] = w[i + 1], w[i]
    elif op == 2:
        w = w[: max(1, len(w) // 2)]
    else:
        w = w + ["and", "more"]
    return " ".join(w)


def test_text_metrics_equal_pycocoevalcap_on_real_captions(sample_dir):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from interleaf.evaluate import text_metrics, tokenize

    rng = np.random.default_rng(0)
    caps = tokenize(_real_captions(sample_dir))
    refs = [[c, caps[(i + 1) % len(caps)], caps[(i + 7) % len(caps)]] if i % 3 == 0 else [c] for i, c in enumerate(caps)]
    hyps = [_perturb(c, rng) for c in caps]
    # Edge cases: an empty and a one-word prediction, an exact copy, a one-word reference.
    hyps[1], hyps[2], hyps[4] = "", caps[2].split()[0], caps[4]
    refs[5] = ["cat"]
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    b_corpus, b_per = Bleu(4).compute_score(gts, res, verbose=0)
    r_mean, r_per = Rouge().compute_score(gts, res)
    c_mean, c_per = Cider().compute_score(gts, res)
    summary, per = text_metrics(hyps, refs, tokenizer="none", java_metrics=False)
    for k in range(4):
        assert summary[f"BLEU-{k + 1}"] == pytest.approx(b_corpus[k], rel=1e-13, abs=1e-300)
        np.testing.assert_allclose(per[f"bleu_{k + 1}"].to_numpy(), b_per[k], rtol=1e-13, atol=0)
    np.testing.assert_allclose(per["rouge_l"].to_numpy(), r_per, rtol=1e-14, atol=0)
    np.testing.assert_allclose(per["cider"].to_numpy(), c_per, rtol=1e-12, atol=1e-15)
    assert summary["ROUGE-L"] == pytest.approx(r_mean, rel=1e-14) and summary["CIDEr"] == pytest.approx(c_mean, rel=1e-12)
    assert summary["scored"] == len(caps) and summary["skipped"] == {}
    # Missing predictions and references are skipped and counted, not scored as 0.
    s2, per2 = text_metrics([None, "a cat", "a dog"], [["a cat"], [], "a dog"], tokenizer="simple", java_metrics=False)
    assert s2["skipped"] == {"missing_prediction": 1, "missing_reference": 1} and s2["scored"] == 1
    assert per2["skipped"].to_list() == ["missing_prediction", "missing_reference", None] and per2["bleu_1"][2] == pytest.approx(1.0)


def test_simple_tokenizer():
    from interleaf.evaluate import tokenize

    assert tokenize(["A Cat's toy, (red)... isn't it?\nYes!", None, ""]) == ["a cat 's toy -lrb- red -rrb- is n't it yes", None, ""]
    assert tokenize(["The U.S. e-mail at 3.5 o'clock, and/or Mr. Smith's cat 😀."]) == ["the u.s. e-mail at 3.5 o'clock and/or mr. smith 's cat"]
    # What PTB 3.4.1 gives (pycocoevalcap, checked in the test below where Java is installed):
    # runs of ! and ?, thousands separators, hashtags and mentions, its split contractions,
    # HTML entities and tags, combining accents inside their word, invisible characters.
    text = "Wow!! 1,000,000 people #tag @user gonna &amp; <b>x</b> cafe\u0301 \ufeffhi"
    assert tokenize([text]) == ["wow !! 1,000,000 people #tag @user gon na & <b> x </b> cafe\u0301 hi"]
    with pytest.raises(ValueError, match="tokenizer must be"):
        tokenize(["x"], "nltk")


def _needs_java():
    from interleaf.evaluate import java_unavailable

    why = java_unavailable()
    if why is not None:
        pytest.skip(why)


def test_ptb_tokenizer_equals_pycocoevalcap_and_simple_is_close(sample_dir):
    """tokenizer="ptb" gives pycocoevalcap's PTBTokenizer output exactly; the Python "simple"
    tokenizer equals it on the sample's real captions and step texts (measured: the difference
    is confined to rare constructs, e.g. "#tag" and "x.." below)."""
    _needs_java()
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from interleaf.evaluate import tokenize

    caps = _real_captions(sample_dir)
    tricky = ["Don't stop (now)!", 'He said "hi" [loudly] {ok}', "colour e-mail... U.S. Mr. Smith's cats'", "50/50 and/or", "can't won't I'm you're they'd", "one", ""]
    tricky += ["!!!", "....!!!???", "wow!! really?!", "1,000,000 $5 #tag @user", "12,34 1,2345 3.5 10,000.50 ,5 1,000people", "gonna gotta wanna lemme gimme wanna-be lemme's", "'tis", "C# and F#"]
    tricky += ["&amp; &lt; &gt; &quot;hi&quot; &#39; &nbsp;x &AMP;", "<b>bold</b> <a href='x'>link</a> <br/>", "cafe\u0301. e\u0301t\u00e9 \u0915\u093f", "\ufeffhello soft\u00adhyphen zero\u200bwidth a\u2060b x\u200cy\u200dz"]
    texts = caps + tricky
    ref = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    ours = tokenize(texts + [None], "ptb")
    assert ours[-1] is None and ours[:-1] == [ref[i][0] for i in range(len(texts))]
    simple = tokenize(texts, "simple")
    assert simple == ours[:-1]
    # Where they still part (rare): PTB keeps a word's doubled period ("x.."), splits a unit
    # from its number ("3.5kg") and an underscore inside a hashtag; counted, not hidden.
    odd = ["x... y.. z", "3.5kg", "#foo_bar"]
    for o, s, p in zip(odd, tokenize(odd, "simple"), tokenize(odd, "ptb"), strict=True):
        assert s != p, o


def test_meteor_equals_pycocoevalcap(sample_dir):
    """METEOR through pycocoevalcap's jar on PTB tokens, as COCOEvalCap computes it (corpus
    score and per-example scores); SPICE without its CoreNLP models is reported unavailable."""
    _needs_java()
    from pycocoevalcap.meteor.meteor import Meteor

    from interleaf.evaluate import text_metrics, tokenize

    caps = _real_captions(sample_dir)[:12]
    rng = np.random.default_rng(1)
    hyps = [_perturb(c, rng) for c in caps]
    hyps[3] = ""
    refs = [[c, caps[(i + 1) % len(caps)]] for i, c in enumerate(caps)]
    summary, per = text_metrics(hyps, refs, tokenizer="ptb")
    tok_h, tok_r = tokenize(hyps, "ptb"), [tokenize(r, "ptb") for r in refs]
    m = Meteor()
    score, per_ref = m.compute_score({i: r for i, r in enumerate(tok_r)}, {i: [h] for i, h in enumerate(tok_h)})
    assert summary["tokenizer"] == "ptb"
    assert summary["METEOR"] == pytest.approx(score, abs=1e-12)
    np.testing.assert_allclose(per["meteor"].to_numpy(), per_ref, atol=1e-12)
    if summary["SPICE"] is None:
        assert "SPICE" in summary["unavailable"]
    else:  # SPICE needs Stanford CoreNLP's models, which pycocoevalcap fetches on first use
        assert 0.0 <= summary["SPICE"] <= 1.0 and "SPICE" not in summary.get("unavailable", {})


NETS = Path(__file__).parent / "fixtures" / "models"


def _photos(sample_dir, names):
    return [(sample_dir / "images" / str(n)).read_bytes() for n in names]


def test_image_features_network_equals_torch_and_fid_is_equal_torchmetrics(sample_dir):
    """The tiny random Inception stand-in (scripts/make_image_networks.py): our Rust decode +
    Pillow-exact bilinear resize + ONNX equals Pillow + torch; FID and IS equal torchmetrics'
    with that network as the feature extractor."""
    from interleaf import models
    from interleaf.evaluate import fid, frechet_distance, inception_score

    net = models.load(NETS / "inception-tiny")
    assert net.kind == "image-features" and net.outputs == ["features", "logits"]
    with np.load(NETS / "inception-tiny" / "reference.npz") as z:
        names, feats, logits = list(z["names"]), z["features"], z["logits"]
        ref_fid, half, ref_is = float(z["fid"]), int(z["fid_half"]), float(z["inception_score"])
    imgs = _photos(sample_dir, names)
    out, err = net.run(imgs + [b"broken", None], outputs=("features", "logits"))
    np.testing.assert_allclose(out["features"][: len(imgs)], feats, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"][: len(imgs)], logits, rtol=1e-4, atol=1e-4)
    assert np.isnan(out["features"][-2:]).all() and err.to_list()[-1]["kind"] == "missing_image"
    r = fid(imgs[:half], imgs[half:] + [b"broken", None], net)
    assert r["fid"] == pytest.approx(ref_fid, rel=1e-4) and r["skipped_reference"] == {"missing": 1, "unknown_image_format": 1}
    assert frechet_distance(feats[:half], feats[half:]) == pytest.approx(ref_fid, rel=1e-6)
    assert fid(imgs[:1], imgs, NETS / "inception-tiny")["fid"] is None
    s1 = inception_score(imgs, net, splits=1)
    assert s1["inception_score"] == pytest.approx(ref_is, rel=1e-5) and s1["std"] is None
    # More splits: torch.chunk's cut (ceil(n/splits) per chunk), the order as given.
    s = inception_score(imgs, net, splits=4, shuffle_seed=None)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    size = -(-len(p) // 4)
    parts = [p[i : i + size] for i in range(0, len(p), size)]
    expect = [np.exp((c * (np.log(c) - np.log(c.mean(0)))).sum(1).mean()) for c in parts]
    assert s["inception_score"] == pytest.approx(np.mean(expect), rel=1e-4) and s["std"] == pytest.approx(np.std(expect, ddof=1), rel=1e-3)


def test_lpips_network_equals_torch(sample_dir):
    from interleaf import models
    from interleaf.evaluate import lpips

    with np.load(NETS / "lpips-tiny" / "reference.npz") as z:
        names, dist, shift = list(z["names"]), z["distance"], int(z["shift"])
    imgs = _photos(sample_dir, names)
    net = models.load(NETS / "lpips-tiny")
    assert net.kind == "image-distance"
    rolled = imgs[-shift:] + imgs[:-shift]  # reference pairs: image i with image i - shift
    d, err = net.distance(imgs, rolled)
    np.testing.assert_allclose(d, dist, rtol=1e-4, atol=1e-5)
    summary, per = lpips(rolled + [None, b"x"], imgs + [imgs[0], imgs[0]], net)
    np.testing.assert_allclose(per["lpips"].to_numpy()[: len(imgs)], dist, rtol=1e-4, atol=1e-5)
    assert summary["scored"] == len(imgs) and summary["skipped"] == {"missing_generated": 1, "unknown_image_format": 1}
    # CoMM's cross pairs: the mean over every (reference, generated) pair of an example.
    s2, per2 = lpips([[rolled[0], rolled[1]]], [[imgs[0], imgs[1]]], net, pairing="cross")
    pair = lambda r, g: net.distance([r], [g])[0][0]  # noqa: E731
    expect = np.mean([pair(imgs[i], rolled[j]) for i in (0, 1) for j in (0, 1)])
    assert per2["pairs"][0] == 4 and per2["lpips"][0] == pytest.approx(expect, rel=1e-9)
    # Inputs are checked as the other metrics check theirs: bytes(n) made n zero bytes of an int.
    with pytest.raises(TypeError, match=r"a path\? read the file's bytes"):
        lpips([str(sample_dir / "images" / "coffee.jpg")], [imgs[0]], net)
    with pytest.raises(TypeError, match="not int"):
        lpips([imgs[0]], [10**9], net)


def test_image_network_directories_are_checked(tmp_path):
    import shutil

    from interleaf import models
    from interleaf.models import ModelDirectoryError

    d = tmp_path / "net"
    shutil.copytree(NETS / "lpips-tiny", d)
    (d / "preprocessor_config.json").unlink()
    with pytest.raises(ModelDirectoryError, match="missing preprocessor_config.json"):
        models.load(d)
    with pytest.raises(ModelDirectoryError, match="holds a image-features model, not a image-distance"):
        models.load(NETS / "inception-tiny", kind="image-distance")
    with pytest.raises(TypeError, match="expected an image-distance model"):
        from interleaf.evaluate import lpips

        lpips([b"x"], [b"y"], models.load(NETS / "inception-tiny"))


def test_clip_i_does_not_follow_links_out_of_its_folders(tmp_path, sample_images):
    """An image in a generated or reference folder that is a symbolic link leaving it is not
    read (its pair is skipped with the reason), as every reader treats such paths."""
    from interleaf.evaluate.generations import folder_pairs

    gen, ref, secret = tmp_path / "gen", tmp_path / "ref", tmp_path / "secret"
    for d in (gen, ref, secret):
        d.mkdir()
    jpg = sample_images["chelsea.jpg"]
    (secret / "private.jpg").write_bytes(jpg)
    (gen / "a.jpg").symlink_to(secret / "private.jpg")
    (gen / "b.jpg").write_bytes(jpg)
    (gen / "c.jpg").symlink_to(gen / "b.jpg")  # a link that stays inside is read
    for n in "abc":
        (ref / f"{n}.jpg").write_bytes(jpg)
    names, g, r, errors = folder_pairs(gen, ref)
    assert names == ["a", "b", "c"]
    assert g[0] is None and "resolves outside its folder" in errors[0]
    assert g[1] == jpg and g[2] == jpg and errors[1:] == [None, None]


def test_vist_stories_follow_gills_protocol(tmp_path, sample_images):
    """GILL's VIST samples: the context is every step's caption and every image but the last,
    the target the last image; a story missing a context image is skipped with the file named,
    a missing target only leaves the target empty; VIST's raw SIS file gives the same stories."""
    from interleaf.evaluate.generations import folder_pairs
    from interleaf.evaluate.vist import vist_stories

    imgs = list(sample_images.values())
    root = tmp_path / "val_images"
    root.mkdir()
    for i in range(9):
        if i != 6:  # image 6 (story b's second) is missing
            (root / f"{100 + i}.png").write_bytes(imgs[i])
    (tmp_path / "secret.png").write_bytes(imgs[0])
    stories = {"a": [{"image_id": str(100 + i), "caption": f"a caption {i}"} for i in range(5)], "b": [{"image_id": str(105 + i), "caption": f"b caption {i}"} for i in range(4)] + [{"image_id": "../secret", "caption": "b last"}], "c": [{"image_id": "100", "caption": "alone"}]}
    gill = tmp_path / "val_formatted.json"
    gill.write_text(json.dumps({"annotations": stories}))
    got = vist_stories(gill, root)
    assert got["story_id"].to_list() == ["a", "b", "c"]
    a = got.row(0, named=True)
    assert a["captions"] == [f"a caption {i}" for i in range(5)] and a["target_image_id"] == "104" and a["error"] is None
    assert a["context_images"] == imgs[:4] and a["target_image"] == imgs[4]
    b = got.row(1, named=True)
    assert b["error"] == "context image 106.png: not found" and b["context_images"] is None
    assert b["target_image"] is None and b["target_error"] == "../secret.png: resolves outside the image root"  # not read
    assert got.row(2, named=True)["error"] == "a story needs 2 steps or more, this one has 1"
    # VIST's SIS layout (one-item lists, steps by worker_arranged_photo_order, shuffled here).
    sis = [[{"story_id": "a", "photo_flickr_id": str(100 + i), "worker_arranged_photo_order": i, "text": f"a caption {i}", "album_id": "x"}] for i in (3, 0, 4, 1, 2)]
    raw = vist_stories({"annotations": sis}, root)
    assert raw.row(0, named=True) == a
    # A malformed story or step is that story's error; the others go on.
    bad = vist_stories({"ok": stories["a"], "no-caption": [{"image_id": "1", "caption": None}, {"image_id": "2", "caption": "x"}], "not-a-list": 3}, root)
    assert bad.get_column("error").to_list() == [None, "step 0: expected an 'image_id' (text or number) and a 'caption' (text)", "expected a list of {'image_id', 'caption'} steps"]
    sis_bad = vist_stories([[{"story_id": "a", "photo_flickr_id": "1", "worker_arranged_photo_order": "x", "text": "t"}], *sis], root)
    assert sis_bad.get_column("error")[0].startswith("annotation 0: expected worker_arranged_photo_order")
    with pytest.raises(ValueError, match="no story_id"):
        vist_stories({"annotations": [[{"text": "a"}]]})
    # An item without a story among good ones is a row of its own; the stories are all there.
    orphan = vist_stories({"annotations": [*sis[:2], None, *sis[2:]]}, root)
    assert orphan.row(0, named=True) == a and orphan.height == 2
    assert orphan.row(1, named=True)["story_id"] is None and orphan["error"][1].startswith("annotation 2: no story_id")
    # The generated image saved as <target id>.png pairs with the ground truth for CLIP-I.
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / f"{a['target_image_id']}.png").write_bytes(imgs[4])
    names, g, r, errors = folder_pairs(gen, root)
    k = names.index("104")
    summary, _ = clip_image_similarity([g[k]], [r[k]], models.load("tests/fixtures/models/clip-tiny", kind="clip"))
    assert summary["clip_i"] == pytest.approx(1.0, abs=1e-5)
    # The command writes the same table.
    from interleaf.cli import main

    assert main(["eval", "vist", str(gill), "--image-root", str(root), "--out", str(tmp_path / "vist.parquet")]) == 0
    assert pl.read_parquet(tmp_path / "vist.parquet").equals(got)
    assert main(["eval", "vist", str(gill), "--out", str(tmp_path / "vist.parquet")]) == 2  # exists: --overwrite replaces it
    assert main(["eval", "vist", str(gill), "--out", str(tmp_path / "vist.parquet"), "--overwrite"]) == 0
    assert pl.read_parquet(tmp_path / "vist.parquet").get_column("target_image").null_count() == 3


def test_visdial_dialogs_follow_gills_protocol(tmp_path, sample_images):
    """GILL's VisDial samples: the context is every round as 'Q: <question>?' and 'A: <answer>'
    lines (no caption), the target the dialogue's image, VisualDialog_<split>_<12-digit id>.jpg;
    a malformed dialogue is that row's error; the generated <id>.png pairs with the real image
    for CLIP-I through --reference-prefix."""
    from interleaf.evaluate.generations import folder_pairs
    from interleaf.evaluate.visdial import visdial_dialogs

    imgs = list(sample_images.values())
    questions = ["is the photo in color", "how many people are there", "is it sunny", "what color is the cat"]
    answers = ["yes", "2", "no, it is cloudy", "orange and white"]
    rnd = lambda q, a: {"question": q, "answer": a, "answer_options": [a], "gt_index": 0}  # noqa: E731
    dialogs = [
        {"image_id": 185565, "caption": "two people walking a cat", "dialog": [rnd(0, 0), rnd(1, 1), rnd(2, 2)]},
        {"image_id": 7, "caption": "a cat", "dialog": [rnd(3, 3), {"question": 0}]},  # test split: last round unanswered
        {"image_id": 8, "caption": "bad", "dialog": [rnd(0, 0), rnd(1, 99)]},
        {"image_id": "9", "caption": "bad id", "dialog": [rnd(0, 0)]},
        {"image_id": 10, "caption": "no rounds", "dialog": []},
        "not a dialog",
        {"image_id": 11, "caption": "image outside the root", "dialog": [rnd(0, 0)]},
        {"image_id": 1 << 63, "caption": "too large an id", "dialog": [rnd(0, 0)]},
    ]
    visdial = {"version": "1.0", "split": "val2018", "data": {"questions": questions, "answers": answers, "dialogs": dialogs}}
    path = tmp_path / "visdial_1.0_val.json"
    path.write_text(json.dumps(visdial))
    root = tmp_path / "VisualDialog_val2018"
    root.mkdir()
    (root / "VisualDialog_val2018_000000185565.jpg").write_bytes(imgs[0])
    (tmp_path / "secret.jpg").write_bytes(imgs[1])
    (root / "VisualDialog_val2018_000000000011.jpg").symlink_to(tmp_path / "secret.jpg")
    got = visdial_dialogs(path, root)
    assert got.height == len(dialogs)
    a = got.row(0, named=True)
    assert a["name"] == "000000185565" and a["caption"] == "two people walking a cat" and a["error"] is None
    assert a["context"] == "Q: is the photo in color?\nA: yes\nQ: how many people are there?\nA: 2\nQ: is it sunny?\nA: no, it is cloudy"
    assert a["questions"] == questions[:3] and a["answers"] == answers[:3] and a["target_image"] == imgs[0]
    b = got.row(1, named=True)
    assert b["context"] == "Q: what color is the cat?\nA: orange and white\nQ: is the photo in color?" and b["answers"] == ["orange and white", None]
    assert b["target_image"] is None and b["error"] is None  # a missing image: generated anyway, skipped by CLIP-I
    assert got.get_column("error").to_list()[2:] == [
        "round 2: the question or answer index is not in the file's lists",
        "dialog 3: image_id must be an integer in [0, 2**63)",
        "no dialogue rounds",
        "dialog 5: expected an object with image_id, caption and dialog",
        None,
        "dialog 7: image_id must be an integer in [0, 2**63)",
    ]
    assert b["target_error"] == "VisualDialog_val2018_000000000007.jpg: not found"
    six = got.row(6, named=True)  # a link out of the image root is not read
    assert six["target_image"] is None and six["target_error"] == "VisualDialog_val2018_000000000011.jpg: resolves outside the image root"
    # rounds, split and the file name template.
    two = visdial_dialogs(visdial, root, rounds=2)
    assert two["context"][0] == "Q: is the photo in color?\nA: yes\nQ: how many people are there?\nA: 2"
    (root / "COCO_train2014_000000185565.jpg").write_bytes(imgs[2])
    assert visdial_dialogs(visdial, root, image_name="COCO_{split}_{image_id:012d}.jpg", split="train2014")["target_image"][0] == imgs[2]
    with pytest.raises(ValueError, match="only {split} and {image_id}"):
        visdial_dialogs(visdial, root, image_name="{id}.jpg")
    with pytest.raises(ValueError, match="rounds must be 1 or more"):
        visdial_dialogs(visdial, rounds=0)
    with pytest.raises(ValueError, match="VisDial's v1.0 file"):
        visdial_dialogs({"data": {"dialogs": []}})
    # The generated <name>.png pairs with the real image once the prefix is taken off.
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / f"{a['name']}.png").write_bytes(imgs[0])
    names, g, r, errors = folder_pairs(gen, root, reference_prefix="VisualDialog_val2018_")
    k = names.index("000000185565")
    assert g[k] == r[k] == imgs[0] and "VisualDialog_val2018_000000185565" not in names
    summary, _ = clip_image_similarity([g[k]], [r[k]], models.load("tests/fixtures/models/clip-tiny", kind="clip"))
    assert summary["clip_i"] == pytest.approx(1.0, abs=1e-5)
    from interleaf.cli import main

    assert main(["eval", "visdial", str(path), "--image-root", str(root), "--out", str(tmp_path / "visdial.parquet")]) == 0
    assert pl.read_parquet(tmp_path / "visdial.parquet").equals(got)
    assert main(["eval", "visdial", str(path), "--out", str(tmp_path / "visdial.parquet")]) == 2  # exists
    assert main(["eval", "clip-i", str(gen), str(root), "--reference-prefix", "VisualDialog_val2018_", "--clip", "tests/fixtures/models/clip-tiny", "--out", str(tmp_path / "clipi"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "clipi" / "metrics.json").read_text())["metrics"]
    assert metrics["scored"] == 1 and metrics["clip_i"] == pytest.approx(1.0, abs=1e-5)
    # Folders with no name in common (VisDial's ground truth without the prefix): said, with
    # the hint, not a null score.
    only_ref = tmp_path / "only-ref"
    only_ref.mkdir()
    for p in root.glob("VisualDialog_*"):
        shutil.copy(p, only_ref / p.name)
    assert main(["eval", "clip-i", str(gen), str(only_ref), "--clip", "tests/fixtures/models/clip-tiny", "--out", str(tmp_path / "clipi2"), "--quiet"]) == 2
    assert not (tmp_path / "clipi2").exists()
