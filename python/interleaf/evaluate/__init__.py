"""Evaluation of generated interleaved content (METHODS.md §1, §3).

:func:`clip_image_similarity` is GILL's and MGCC's CLIP-I: the cosine of the CLIP image
embeddings of each generated image and its ground truth, averaged over the examples that have
both (MGCC reports 0.652 on VIST and 0.660 on VisDial with CLIP ViT-L/14 at 224 px; GILL 0.641
and 0.645). Examples missing either image, or whose image cannot be decoded, are skipped and
counted, never scored as 0.

:func:`image_metrics` is CoMM's SSIM and PSNR: both images as Pillow's ``convert("RGB")``,
resized to 256 x 256 with Pillow's bicubic filter, scored as scikit-image's
``structural_similarity(..., data_range=255, channel_axis=2)`` and
``peak_signal_noise_ratio(..., data_range=255)`` (all in Rust, pairs in parallel); index-matched
pairs by default, or CoMM's all-cross-pairs per example.

:func:`text_metrics` is pycocoevalcap's BLEU-1..4, ROUGE-L and CIDEr (CIDEr-D) in Rust, equal to
pycocoevalcap 1.2's scorers on the same tokens, as CoMM computes them for its text task.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = ["PAIRINGS", "PTB_PUNCTUATIONS", "TOKENIZERS", "clip_image_similarity", "image_metrics", "text_metrics", "tokenize"]

#: How :func:`image_metrics` pairs images: ``index`` (generated[i] with reference[i]) or
#: ``cross`` (CoMM's: every reference image of an example with every generated one).
PAIRINGS = ("index", "cross")


def _present(x: Any) -> bool:
    return isinstance(x, bytes | bytearray | memoryview) and len(x) > 0


def clip_image_similarity(generated: Any, reference: Any, clip: Any, *, batch_size: int | None = None) -> tuple[dict[str, Any], pl.DataFrame]:
    """GILL's CLIP image similarity of index-matched image pairs.

    ``generated`` and ``reference``: encoded images (bytes, None where an example has none), the
    same length; ``clip``: a CLIP model or its directory (the papers use ViT-L/14).

    Returns ``(summary, per_example)``: ``summary`` holds ``clip_i`` (the unweighted mean cosine
    over the scored pairs, None when none), ``n``, ``scored`` and ``skipped`` (reason -> count:
    ``missing_generated``, ``missing_reference``, or the decoding error's kind);
    ``per_example`` one row per pair: ``similarity`` (Float32, null when skipped) and
    ``skipped`` (the reason, or null)."""
    from interleaf import models

    gen, ref = list(generated), list(reference)
    if len(gen) != len(ref):
        raise ValueError(f"generated and reference differ in length ({len(gen)} vs {len(ref)})")
    if isinstance(clip, str) or hasattr(clip, "__fspath__"):
        clip = models.load(clip, kind="clip")
    reasons: list[str | None] = [None if _present(g) and _present(r) else ("missing_generated" if not _present(g) else "missing_reference") for g, r in zip(gen, ref, strict=True)]
    idx = [i for i, why in enumerate(reasons) if why is None]
    sim = np.full(len(gen), np.nan, dtype=np.float32)
    if idx:
        eg, errg = clip.embed_images([bytes(gen[i]) for i in idx], batch_size=batch_size)
        er, errr = clip.embed_images([bytes(ref[i]) for i in idx], batch_size=batch_size)
        for j, (i, a, b) in enumerate(zip(idx, errg.to_list(), errr.to_list(), strict=True)):
            if a is not None or b is not None:
                reasons[i] = f"generated {a['kind']}" if a is not None else f"reference {b['kind']}"
            else:
                sim[i] = float(np.dot(eg[j].astype(np.float64), er[j].astype(np.float64)))
    ok = ~np.isnan(sim)
    summary = {
        "clip_i": float(sim[ok].astype(np.float64).mean()) if ok.any() else None,
        "n": len(gen),
        "scored": int(ok.sum()),
        "skipped": dict(sorted(Counter(r for r in reasons if r is not None).items())),
    }
    per_example = pl.DataFrame({"similarity": sim, "skipped": reasons}, schema={"similarity": pl.Float32, "skipped": pl.String}, nan_to_null=True)
    return summary, per_example


def image_metrics(generated: Any, reference: Any, *, size: int = 256, pairing: str = "index", threads: int | None = None) -> tuple[dict[str, Any], pl.DataFrame]:
    """SSIM and PSNR of generated images against their references, as CoMM's evaluation
    computes them (see the module docs): each image decoded once, resized to ``size`` x ``size``.

    ``pairing="index"``: ``generated`` and ``reference`` are equal-length sequences of encoded
    images (None where missing), scored pair by pair. ``pairing="cross"`` (CoMM's protocol, a
    quirk of its code kept for comparable numbers): both are sequences of image lists, one list
    per example, and an example's score is the mean over every (reference, generated) pair.

    Returns ``(summary, per_example)``. ``per_example``: ``ssim`` (mean over the example's
    scored pairs), ``psnr`` (mean over its pairs with a finite PSNR; identical images have an
    infinite one, counted in ``identical``), ``pairs`` (scored), ``skipped`` (why nothing was
    scored: ``missing_generated``, ``missing_reference``, or an image's error kind). ``summary``:
    ``ssim`` and ``psnr`` (means over the examples, as CoMM averages), ``n``, ``scored``,
    ``identical_pairs`` and ``skipped`` (reason -> count)."""
    from interleaf import _native
    from interleaf._checks import int_arg

    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    int_arg("size", size, 7, 4096)
    int_arg("threads", threads, 1, 512, optional=True)
    gen, ref = list(generated), list(reference)
    if len(gen) != len(ref):
        raise ValueError(f"generated and reference differ in length ({len(gen)} vs {len(ref)})")
    if pairing == "index":
        gen_lists = [[g] if g is not None else [] for g in gen]
        ref_lists = [[r] if r is not None else [] for r in ref]
    else:
        for what, lists in (("generated", gen), ("reference", ref)):
            bad = next((i for i, x in enumerate(lists) if x is not None and (isinstance(x, bytes | bytearray | memoryview | str) or not hasattr(x, "__iter__"))), None)
            if bad is not None:
                raise TypeError(f"pairing='cross': {what}[{bad}] must be a list of images (one list per example)")
        gen_lists = [[g for g in (x or []) if g is not None] for x in gen]
        ref_lists = [[r for r in (x or []) if r is not None] for x in ref]
    images: list[bytes | None] = []
    a: list[int] = []
    b: list[int] = []
    owner: list[int] = []
    pair_images: list[tuple[int, int]] = []
    for ex, (gl, rl) in enumerate(zip(gen_lists, ref_lists, strict=True)):
        gi = list(range(len(images), len(images) + len(gl)))
        images += [bytes(g) for g in gl]
        ri = list(range(len(images), len(images) + len(rl)))
        images += [bytes(r) for r in rl]
        for r in ri:
            for g in gi:
                a.append(r)
                b.append(g)
                owner.append(ex)
                pair_images.append((r, g))
    pairs, errors = _native.image_compare(pl.Series("images", images, dtype=pl.Binary), a, b, size, None, None, threads)
    err = errors.to_list()
    ssim_v, psnr_v = pairs["ssim"].to_numpy(), pairs["psnr"].to_numpy()
    rows = []
    reasons: Counter[str] = Counter()
    identical = 0
    by_example: dict[int, list[int]] = {}
    for k, ex in enumerate(owner):
        by_example.setdefault(ex, []).append(k)
    for ex, (gl, rl) in enumerate(zip(gen_lists, ref_lists, strict=True)):
        ks = [k for k in by_example.get(ex, []) if not np.isnan(ssim_v[k])]
        why = None
        if not gl:
            why = "missing_generated"
        elif not rl:
            why = "missing_reference"
        elif not ks:
            # The first image error among the example's pairs (generated side first).
            first = next((e for k in by_example.get(ex, []) for e in (err[pair_images[k][1]], err[pair_images[k][0]]) if e is not None), None)
            why = first["kind"] if first else "unscorable"
        if why is not None:
            reasons[why] += 1
            rows.append({"ssim": None, "psnr": None, "pairs": 0, "identical": 0, "skipped": why})
            continue
        finite = [psnr_v[k] for k in ks if np.isfinite(psnr_v[k])]
        inf = len(ks) - len(finite)
        identical += inf
        rows.append({"ssim": float(np.mean(ssim_v[ks])), "psnr": float(np.mean(finite)) if finite else None, "pairs": len(ks), "identical": inf, "skipped": None})
    per = pl.DataFrame(rows, schema={"ssim": pl.Float64, "psnr": pl.Float64, "pairs": pl.Int64, "identical": pl.Int64, "skipped": pl.String}, orient="row")
    scored = per.filter(pl.col("skipped").is_null())
    summary = {
        "ssim": scored["ssim"].mean() if scored.height else None,
        "psnr": scored["psnr"].drop_nulls().mean() if scored["psnr"].drop_nulls().len() else None,
        "n": len(gen),
        "scored": scored.height,
        "identical_pairs": identical,
        "skipped": dict(sorted(reasons.items())),
    }
    return summary, per


#: How :func:`text_metrics` tokenises: ``ptb`` (pycocoevalcap's: Stanford's PTBTokenizer
#: 3.4.1 run through Java, lower-cased, its punctuation list dropped; needs Java and the
#: ``eval`` extra), ``simple`` (our Python approximation of it, see :func:`tokenize`),
#: ``none`` (the texts are already tokenised, tokens separated by spaces) and ``auto``
#: (``ptb`` where Java and pycocoevalcap are installed, else ``simple``; the summary says which).
TOKENIZERS = ("auto", "ptb", "simple", "none")

#: The tokens pycocoevalcap's PTB step removes after tokenising (its ``PUNCTUATIONS``). PTB
#: lower-cases before, so its bracket escapes (``-lrb-``...) stay, as they do in CoMM's numbers.
PTB_PUNCTUATIONS = frozenset({"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";", '"'})

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_ABBREVIATIONS = "mr|mrs|ms|dr|prof|st|jr|sr|vs|etc|inc|ltd|co|corp|mt|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
_TOKEN = re.compile(
    rf"\w+(?=n't\b)|n't\b|'(?:s|m|d|ll|re|ve)\b|(?:[^\W\d_]\.){{2,}}|(?:{_ABBREVIATIONS})\.(?=\s|$)"
    r"|\w+(?:(?:[-/.]|'(?!(?:s|m|d|ll|re|ve)\b))\w+)*|\.\.\.|--|``|''|[^\w\s]"
)
_LINE_BREAKS = re.compile(r"[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")


def java_unavailable() -> str | None:
    """Why pycocoevalcap's Java tools (PTB tokenizer, METEOR) cannot run here, or None."""
    import importlib.util
    import shutil

    if shutil.which("java") is None:
        return "Java is not installed (e.g. apt-get install default-jre-headless)"
    if importlib.util.find_spec("pycocoevalcap") is None:
        return "pycocoevalcap is not installed (pip install 'interleaf[eval]')"
    return None


def _ptb(texts: list[str]) -> list[str]:
    """Stanford's PTBTokenizer as pycocoevalcap runs it (one line per text, lower-cased), then
    its punctuation dropped."""
    import os
    import subprocess
    import tempfile

    import pycocoevalcap.tokenizer.ptbtokenizer as ptb_module

    if not texts:
        return []
    jar = Path(ptb_module.__file__).with_name("stanford-corenlp-3.4.1.jar")
    with tempfile.TemporaryDirectory(prefix="interleaf-ptb-") as tmp:
        src = Path(tmp) / "captions.txt"
        src.write_text("\n".join(_LINE_BREAKS.sub(" ", t) for t in texts), encoding="utf-8")
        cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", str(src)]
        done = subprocess.run(cmd, capture_output=True, env=os.environ | {"LC_ALL": "C.UTF-8"}, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the PTB tokenizer failed (exit {done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    lines = done.stdout.decode("utf-8").split("\n")
    if len(lines) < len(texts):
        raise RuntimeError(f"the PTB tokenizer returned {len(lines)} lines for {len(texts)} texts")
    drop = PTB_PUNCTUATIONS - {'"'}
    return [" ".join(w for w in line.rstrip().split(" ") if w not in drop) for line in lines[: len(texts)]]


def _resolve_tokenizer(tokenizer: str) -> str:
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    if tokenizer == "auto":
        return "simple" if java_unavailable() else "ptb"
    if tokenizer == "ptb" and (why := java_unavailable()):
        raise RuntimeError(f"tokenizer='ptb' needs pycocoevalcap's Java tokenizer: {why}; or pass tokenizer='simple'")
    return tokenizer


def tokenize(texts: Sequence[str | None], tokenizer: str = "simple") -> list[str | None]:
    """Each text as space-separated tokens (None stays None), see :data:`TOKENIZERS`.

    ``simple`` mimics the PTB pipeline in Python: lower case; ``n't`` and the clitics ``'s``,
    ``'m``, ``'d``, ``'ll``, ``'re``, ``'ve`` split off; hyphenated words, ``a/b``, numbers like
    ``3.5`` and ``o'clock`` kept whole; initialisms (``u.s.``) and common abbreviations
    (``mr.``) keep their period; brackets become PTB's ``-lrb-`` / ``-rrb-`` / ``-lsb-`` ...;
    characters outside the Basic Multilingual Plane (emoji) dropped, as PTB drops them;
    pycocoevalcap's punctuation removed. On the bundled sample's captions and step texts it
    gives PTB's tokens exactly (``tests/test_evaluate.py`` measures it)."""
    tokenizer = _resolve_tokenizer(tokenizer)
    if tokenizer == "none":
        return list(texts)
    if tokenizer == "ptb":
        present = [t for t in texts if t is not None]
        it = iter(_ptb(present))
        return [None if t is None else next(it) for t in texts]
    out: list[str | None] = []
    for t in texts:
        if t is None:
            out.append(None)
            continue
        t = "".join(c for c in _LINE_BREAKS.sub(" ", t).lower() if ord(c) <= 0xFFFF)
        out.append(" ".join(_BRACKETS.get(w, w) for w in _TOKEN.findall(t) if w not in PTB_PUNCTUATIONS))
    return out


def _java_metric(name: str, refs: list[list[str]], hyps: list[str]) -> tuple[float | None, list[float] | None, str | None]:
    """pycocoevalcap's METEOR or SPICE on tokenised texts: (corpus score, per-example scores,
    why unavailable)."""
    if (why := java_unavailable()) is not None:
        return None, None, why
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    if name == "METEOR":
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            score, per = scorer.compute_score(gts, res)
        finally:
            close = getattr(scorer, "close", None)
            if close is not None:
                close()
        return float(score), [float(x) for x in per], None
    import pycocoevalcap.spice.spice as spice_module

    lib = Path(spice_module.__file__).with_name("lib")
    if not (lib / "stanford-corenlp-3.6.0.jar").is_file() or not (lib / "stanford-corenlp-3.6.0-models.jar").is_file():
        return None, None, f"SPICE needs Stanford CoreNLP 3.6.0 in {lib} (pycocoevalcap's get_stanford_models downloads it; interleaf never downloads)"
    try:
        score, items = spice_module.Spice().compute_score(gts, res)
    except Exception as e:  # SPICE's Java side fails on some JVMs; report it, keep the rest
        return None, None, f"SPICE failed: {e}"
    return float(score), [float(x["All"]["f"]) for x in items], None


def text_metrics(predictions: Sequence[str | None], references: Sequence[Any], *, tokenizer: str = "auto", java_metrics: bool = True) -> tuple[dict[str, Any], pl.DataFrame]:
    """pycocoevalcap's caption metrics of predictions against references: ``BLEU-1``..``BLEU-4``
    (corpus BLEU, reference length "closest"), ``ROUGE-L`` and ``CIDEr`` (CIDEr-D, document
    frequencies over these references; the mean over predictions), computed in Rust and equal
    to pycocoevalcap 1.2's ``Bleu(4)``, ``Rouge()`` and ``Cider()`` on the same tokens; and
    ``METEOR`` and ``SPICE`` through pycocoevalcap's Java tools where they run (with
    ``java_metrics``), else None with the reason under ``unavailable``.

    ``predictions``: one text per example (None: missing, skipped and counted);
    ``references``: per example a text or a list of texts (at least one). ``tokenizer``: see
    :data:`TOKENIZERS` (the summary's ``tokenizer`` says which ran). CoMM scores its text task
    twice: step k against step k (one reference each, truncated to the shorter document) and
    each whole document against the whole reference; pass those pairs
    (:func:`interleaf.evaluate.comm.metrics` does).

    Returns ``(summary, per_example)``: ``summary`` has the metrics, ``n``, ``scored``,
    ``skipped`` (reason -> count), ``tokenizer`` and ``unavailable``; ``per_example`` has
    ``bleu_1``..``bleu_4`` (sentence BLEU, as pycocoevalcap's per-image list), ``rouge_l``,
    ``cider``, ``meteor``, ``spice`` and ``skipped``."""
    from interleaf import _native

    tokenizer = _resolve_tokenizer(tokenizer)
    preds = list(predictions)
    refs = [[r] if isinstance(r, str) else ([] if r is None else [x for x in r if x is not None]) for r in references]
    if len(preds) != len(refs):
        raise ValueError(f"predictions and references differ in length ({len(preds)} vs {len(refs)})")
    reasons: list[str | None] = [("missing_prediction" if p is None else "missing_reference" if not r else None) for p, r in zip(preds, refs, strict=True)]
    idx = [i for i, why in enumerate(reasons) if why is None]
    # One tokenizer pass (one JVM start for PTB) over predictions and references.
    flat = tokenize([preds[i] for i in idx] + [x for i in idx for x in refs[i]], tokenizer)
    tok_p, flat = flat[: len(idx)], flat[len(idx) :]
    tok_r, at = [], 0
    for i in idx:
        tok_r.append(flat[at : at + len(refs[i])])
        at += len(refs[i])
    cols = {k: np.full(len(preds), np.nan) for k in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider", "meteor", "spice")}
    summary: dict[str, Any] = dict.fromkeys(("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr", "METEOR", "SPICE"))
    unavailable: dict[str, str] = {}
    if idx:
        corpus, per_bleu, rouge, cider = _native.caption_metrics(tok_p, tok_r)
        for k in range(4):
            cols[f"bleu_{k + 1}"][idx] = per_bleu[:, k]
            summary[f"BLEU-{k + 1}"] = corpus[k]
        cols["rouge_l"][idx] = rouge
        cols["cider"][idx] = cider
        summary["ROUGE-L"] = float(np.mean(rouge))
        summary["CIDEr"] = float(np.mean(cider))
        for name in ("METEOR", "SPICE"):
            if not java_metrics:
                unavailable[name] = "not asked (java_metrics=False)"
                continue
            score, per_ex, why = _java_metric(name, tok_r, tok_p)  # type: ignore[arg-type]
            if why is not None:
                unavailable[name] = why
                continue
            summary[name] = score
            cols[name.lower()][idx] = per_ex
    summary |= {"n": len(preds), "scored": len(idx), "skipped": dict(sorted(Counter(r for r in reasons if r is not None).items())), "tokenizer": tokenizer, "unavailable": unavailable}
    per = pl.DataFrame({**cols, "skipped": reasons}, schema={**dict.fromkeys(cols, pl.Float64), "skipped": pl.String}, nan_to_null=True)
    return summary, per
