"""Evaluation of generated interleaved content (CoMM, arXiv 2406.10462; MGCC, arXiv 2405.18304; GILL).

:func:`clip_image_similarity` is GILL's and MGCC's CLIP-I: the cosine of the CLIP image
embeddings of each generated image and its ground truth, averaged over the examples that have
both (MGCC reports 0.652 on VIST and 0.660 on VisDial with CLIP ViT-L/14 at 224 px; GILL 0.641
and 0.645). Examples missing either image, or whose image cannot be decoded, are skipped and
counted, never scored as 0. The samples those numbers come from: :mod:`interleaf.evaluate.vist`
and :mod:`interleaf.evaluate.visdial` (GILL's contexts and targets).

:func:`image_metrics` is CoMM's SSIM and PSNR: both images as Pillow's ``convert("RGB")``,
resized to 256 x 256 with Pillow's bicubic filter, scored as scikit-image's
``structural_similarity(..., data_range=255, channel_axis=2)`` and
``peak_signal_noise_ratio(..., data_range=255)`` (all in Rust, pairs in parallel); index-matched
pairs by default, or CoMM's all-cross-pairs per example.

:func:`text_metrics` is pycocoevalcap's BLEU-1..4, ROUGE-L and CIDEr (CIDEr-D) in Rust, equal to
pycocoevalcap 1.2's scorers on the same tokens, as CoMM computes them for its text task; with
Java, PTB tokenisation and METEOR through pycocoevalcap itself (SPICE too where its CoreNLP
models are installed).

:func:`fid`, :func:`inception_score` and :func:`lpips` run networks you supply as ONNX
(:mod:`interleaf.models.image_networks`; no weights are fetched), computed as torchmetrics
computes them (CoMM's task 2).

:mod:`interleaf.evaluate.comm` builds CoMM's four tasks and reads predictions back;
:mod:`interleaf.evaluate.judge` is CoMM's LLM judge; ``interleaf eval`` runs them with a report.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl

from interleaf._checks import not_one

__all__ = [
    "PAIRINGS",
    "PTB_PUNCTUATIONS",
    "TOKENIZERS",
    "clip_image_similarity",
    "fid",
    "frechet_distance",
    "image_metrics",
    "inception_score",
    "java_unavailable",
    "lpips",
    "text_metrics",
    "tokenize",
]

#: How :func:`image_metrics` pairs images: ``index`` (generated[i] with reference[i]) or
#: ``cross`` (CoMM's: every reference image of an example with every generated one).
PAIRINGS = ("index", "cross")
#: Image pairs embedded per call by :func:`clip_image_similarity` (between progress updates).
CLIP_I_CHUNK = 1024


def _image_bytes(x: Any) -> bool:
    """Whether ``x`` is an encoded image (bytes-like; None is a missing one); anything else, a
    path above all, is a TypeError."""
    if x is None:
        return False
    if not isinstance(x, bytes | bytearray | memoryview):
        raise TypeError(f"images must be encoded bytes or None, not {type(x).__name__}" + (" (a path? read the file's bytes)" if isinstance(x, str | os.PathLike) else ""))
    return True


def _present(x: Any) -> bool:
    return _image_bytes(x) and len(x) > 0


def clip_image_similarity(generated: Any, reference: Any, clip: Any, *, batch_size: int | None = None, progress: bool = False) -> tuple[dict[str, Any], pl.DataFrame]:
    """GILL's CLIP image similarity of index-matched image pairs.

    ``generated`` and ``reference``: encoded images (bytes, None or empty where an example has
    none; anything else, a path say, is a TypeError as in :func:`image_metrics`), the same length;
    ``clip``: a CLIP model or its directory (the papers use ViT-L/14).

    Returns ``(summary, per_example)``: ``summary`` holds ``clip_i`` (the unweighted mean cosine
    over the scored pairs, None when none), ``n``, ``scored`` and ``skipped`` (reason -> count:
    ``missing_generated``, ``missing_reference``, or the decoding error's kind);
    ``per_example`` one row per pair: ``similarity`` (Float32, null when skipped) and
    ``skipped`` (the reason, or null). ``progress``: a progress line (pairs, images, bytes and
    rates) on stderr."""
    from interleaf import models
    from interleaf._progress import Progress

    gen, ref = list(generated), list(reference)
    if len(gen) != len(ref):
        raise ValueError(f"generated and reference differ in length ({len(gen)} vs {len(ref)})")
    has_gen, has_ref = [_present(g) for g in gen], [_present(r) for r in ref]  # a path raises here
    if isinstance(clip, str) or hasattr(clip, "__fspath__"):
        clip = models.load(clip, kind="clip")
    reasons: list[str | None] = [None if g and r else ("missing_generated" if not g else "missing_reference") for g, r in zip(has_gen, has_ref, strict=True)]
    idx = [i for i, why in enumerate(reasons) if why is None]
    sim = np.full(len(gen), np.nan, dtype=np.float32)
    prog = Progress("clip-i", enabled=progress, units=("pairs", "images"))
    nbytes = 0
    # Chunks of pairs, so a progress line can follow a long folder (same results as one call).
    for start in range(0, len(idx), CLIP_I_CHUNK):
        chunk = idx[start : start + CLIP_I_CHUNK]
        eg, errg = clip.embed_images([bytes(gen[i]) for i in chunk], batch_size=batch_size)
        er, errr = clip.embed_images([bytes(ref[i]) for i in chunk], batch_size=batch_size)
        for j, (i, a, b) in enumerate(zip(chunk, errg.to_list(), errr.to_list(), strict=True)):
            if a is not None or b is not None:
                reasons[i] = f"generated {a['kind']}" if a is not None else f"reference {b['kind']}"
            else:
                sim[i] = float(np.dot(eg[j].astype(np.float64), er[j].astype(np.float64)))
        nbytes += sum(len(gen[i]) + len(ref[i]) for i in chunk)
        prog.update(start + len(chunk), 2 * (start + len(chunk)), nbytes)
    prog.close()
    ok = ~np.isnan(sim)
    summary = {
        "clip_i": float(sim[ok].astype(np.float64).mean()) if ok.any() else None,
        "n": len(gen),
        "scored": int(ok.sum()),
        "skipped": dict(sorted(Counter(r for r in reasons if r is not None).items())),
    }
    per_example = pl.DataFrame({"similarity": sim, "skipped": reasons}, schema={"similarity": pl.Float32, "skipped": pl.String}, nan_to_null=True)
    return summary, per_example


def _pair_lists(generated: Any, reference: Any, pairing: str) -> tuple[list[list[bytes]], list[list[bytes]]]:
    """Per example, the generated and the reference images to pair: one each (``index``,
    None where missing) or the example's lists (``cross``)."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    gen, ref = list(generated), list(reference)
    if len(gen) != len(ref):
        raise ValueError(f"generated and reference differ in length ({len(gen)} vs {len(ref)})")
    if pairing == "index":
        return [[g] if g is not None else [] for g in gen], [[r] if r is not None else [] for r in ref]
    for what, lists in (("generated", gen), ("reference", ref)):
        bad = next((i for i, x in enumerate(lists) if x is not None and (isinstance(x, bytes | bytearray | memoryview | str) or not hasattr(x, "__iter__"))), None)
        if bad is not None:
            raise TypeError(f"pairing='cross': {what}[{bad}] must be a list of images (one list per example)")
    return [[g for g in (x or []) if g is not None] for x in gen], [[r for r in (x or []) if r is not None] for x in ref]


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

    int_arg("size", size, 7, 4096)
    int_arg("threads", threads, 1, 512, optional=True)
    gen_lists, ref_lists = _pair_lists(generated, reference, pairing)
    gen = gen_lists
    images: list[bytes | None] = []
    a: list[int] = []
    b: list[int] = []
    owner: list[int] = []
    pair_images: list[tuple[int, int]] = []
    # One entry per distinct image object: an image listed many times is sent (and decoded) once.
    slot: dict[int, int] = {}

    def index(x: Any) -> int:
        if not _image_bytes(x):
            images.append(None)
            return len(images) - 1
        if id(x) not in slot:
            slot[id(x)] = len(images)
            images.append(bytes(x))
        return slot[id(x)]

    for ex, (gl, rl) in enumerate(zip(gen_lists, ref_lists, strict=True)):
        gi = [index(g) for g in gl]
        ri = [index(r) for r in rl]
        for r in ri:
            for g in gi:
                a.append(r)
                b.append(g)
                owner.append(ex)
                pair_images.append((r, g))
    pairs, errors = _native.image_compare(pl.Series("images", images, dtype=pl.Binary), a, b, size, None, None, threads)
    err = errors.to_list()
    ssim_v, psnr_v = pairs["ssim"].to_numpy(), pairs["psnr"].to_numpy()
    rows: list[dict[str, Any]] = []
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
    r"(?:https?|ftp)://[^\s<>\"]*[^\s<>\".,;:!?)\]}']|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\*+|</?[a-z][^<>\n]*>|&#\d+;|"
    # PTB's contractions it splits: gonna, gotta, wanna, lemme, gimme ("gon na"...), 'tis.
    r"(?<![\w'-])(?:gon(?=na(?![\w'-]))|got(?=ta(?![\w'-]))|wan(?=na(?![\w'-]))|lem(?=me(?![\w'-]))|gim(?=me(?![\w'-])))|'t(?=(?:is|was)\b)|"
    # Numbers with thousands separators (1,000,000; ,5), hashtags and mentions, C# and F#.
    r"\d*(?:,\d+)+(?:\.\d+)*|#[^\W\d_]+|@[^\W\d_]\w*|(?<!\w)[cf]#|"
    rf"\bcan(?=not\b)|(?<=\bcan)not\b|\w+(?=n't\b)|n't\b|'(?:s|m|d|ll|re|ve)\b|(?:[^\W\d_]\.){{2,}}|(?:{_ABBREVIATIONS})\.(?=\s|$)"
    r"|\w+(?:(?:[-/.]|'(?!(?:s|m|d|ll|re|ve)\b))\w+)*|\.\.\.|--|``|''|[!?]+|[^\w\s]"
)
# HTML entities PTB reads (the rest stay text): &amp; &lt; &gt; &quot; as their characters,
# &nbsp; as a space.
_ENTITIES = re.compile(r"&(amp|lt|gt|quot|nbsp);", re.IGNORECASE)
_ENTITY_CHARS = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "nbsp": " "}
# Invisible format characters: PTB drops the BOM and the soft hyphen, and splits words at the
# zero-width space, word joiner and zero-width (non-)joiners.
_INVISIBLE = {0xFEFF: None, 0x00AD: None, 0x200B: " ", 0x2060: " ", 0x200C: " ", 0x200D: " "}
_EDGE_UNDERSCORES = re.compile(r"(?<![^\W_])_+|_+(?![^\W_])")
_LINE_BREAKS = re.compile(r"[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
# Characters outside the Basic Multilingual Plane (emoji), which PTB drops.
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


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

    ``simple`` mimics the PTB pipeline in Python: lower case; ``n't`` (and ``not`` of
    ``cannot``) and the clitics ``'s``,
    ``'m``, ``'d``, ``'ll``, ``'re``, ``'ve`` split off; hyphenated words, ``a/b``, numbers like
    ``3.5`` and ``o'clock`` kept whole, and so are URLs, e-mail addresses and runs of ``*``;
    underscores at the edge of a word split off (``__init__``: ``__ init __``); initialisms
    (``u.s.``) and common abbreviations (``mr.``) keep their period; brackets become PTB's ``-lrb-`` / ``-rrb-`` / ``-lsb-`` ...;
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
        t = _ASTRAL.sub("", _LINE_BREAKS.sub(" ", t).translate(_INVISIBLE).lower())
        t = _ENTITIES.sub(lambda m: _ENTITY_CHARS[m.group(1).lower()], t)
        t = _EDGE_UNDERSCORES.sub(lambda m: f" {m.group(0)} ", t)
        words = _joined_marks(t)
        out.append(" ".join(_BRACKETS.get(w, w) for w in words if w not in PTB_PUNCTUATIONS))
    return out


def _joined_marks(text: str) -> list[str]:
    """The tokens of ``text``, with combining marks (Unicode category M, which Python's ``\\w``
    leaves out: a decomposed accent, a Devanagari vowel sign) kept inside the word they are
    written in, as PTB keeps them; a tag's spaces become no-break spaces, as PTB writes them."""
    import unicodedata

    words: list[str] = []
    end = -1
    for m in _TOKEN.finditer(text):
        w = m.group(0)
        if w.startswith("<"):
            w = w.replace(" ", "\u00a0")
        marks = all(unicodedata.category(c).startswith("M") for c in w)
        after_mark = bool(words) and unicodedata.category(words[-1][-1]).startswith("M") and (w[0].isalnum() or w[0] == "_")
        if words and m.start() == end and (marks or after_mark):
            words[-1] += w
        else:
            words.append(w)
        end = m.end()
    return words


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
    twice, both after cutting the predicted and the reference steps to the shorter count
    (CoMM's ``parse_data_for_task1``): step k against step k (one reference each), and the
    predicted steps joined by spaces against the *cut* reference steps joined by spaces, so a
    prediction of one step is compared with the first reference step only, not with the whole
    reference document; pass those pairs (:func:`interleaf.evaluate.comm.metrics` does).

    An empty prediction against an empty reference (CoMM's whole-text pair for an output with no
    step) scores ROUGE-L 1.0, BLEU and CIDEr 0, as pycocoevalcap does (``"".split(" ")`` is one
    empty token on each side) and so as CoMM's numbers count it.

    Returns ``(summary, per_example)``: ``summary`` has the metrics, ``n``, ``scored``,
    ``skipped`` (reason -> count), ``tokenizer`` and ``unavailable``; ``per_example`` has
    ``bleu_1``..``bleu_4`` (sentence BLEU, as pycocoevalcap's per-image list), ``rouge_l``,
    ``cider``, ``meteor``, ``spice`` and ``skipped``."""
    from interleaf import _native

    not_one("predictions", predictions)
    not_one("references", references, "texts or lists of texts")
    tokenizer = _resolve_tokenizer(tokenizer)
    preds = list(predictions)
    refs = [[r] if isinstance(r, str) else ([] if r is None else [x for x in r if x is not None]) for r in references]
    if len(preds) != len(refs):
        raise ValueError(f"predictions and references differ in length ({len(preds)} vs {len(refs)})")
    reasons: list[str | None] = [("missing_prediction" if p is None else "missing_reference" if not r else None) for p, r in zip(preds, refs, strict=True)]
    idx = [i for i, why in enumerate(reasons) if why is None]
    # One tokenizer pass (one JVM start for PTB) over predictions and references.
    flat = cast("list[str]", tokenize([preds[i] for i in idx] + [x for i in idx for x in refs[i]], tokenizer))  # no None in (idx), so none out
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
            score, per_ex, why = _java_metric(name, tok_r, tok_p)
            if why is not None:
                unavailable[name] = why
                continue
            summary[name] = score
            cols[name.lower()][idx] = per_ex
    summary |= {"n": len(preds), "scored": len(idx), "skipped": dict(sorted(Counter(r for r in reasons if r is not None).items())), "tokenizer": tokenizer, "unavailable": unavailable}
    per = pl.DataFrame({**cols, "skipped": reasons}, schema={**dict.fromkeys(cols, pl.Float64), "skipped": pl.String}, nan_to_null=True)
    return summary, per


# --- metrics through user-supplied networks (interleaf.models.image_networks) --------------------


def _network(net: Any, kind: str) -> Any:
    if isinstance(net, str) or hasattr(net, "__fspath__"):
        from interleaf import models

        return models.load(net, kind=kind)
    if getattr(net, "kind", None) != kind:
        raise TypeError(f"expected an {kind} model (or its directory), got {type(net).__name__}")
    return net


def _features(images: Any, net: Any, output: str, batch_size: int | None) -> tuple[np.ndarray, dict[str, int]]:
    """The rows of ``output`` for the images that decoded, float64, and the skipped counts."""
    imgs = list(images)
    present = [b for b in imgs if b is not None]
    skipped: Counter[str] = Counter({"missing": len(imgs) - len(present)} if len(present) < len(imgs) else {})
    if not present:
        return np.zeros((0, 0)), dict(skipped)
    out, errors = net.run(present, outputs=(output,), batch_size=batch_size)
    ok = errors.is_null().to_numpy()
    for e in errors.drop_nulls().to_list():
        skipped[e["kind"]] += 1
    return out[output][ok].astype(np.float64), dict(sorted(skipped.items()))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of two feature sets (rows), as torchmetrics computes FID: unbiased
    covariances, ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 * sum(sqrt(eig(S_a S_b)))`` in
    float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FID needs at least 2 feature rows per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    s_a, s_b = np.atleast_2d(s_a), np.atleast_2d(s_b)
    c = np.sqrt(np.linalg.eigvals(s_a @ s_b).astype(np.complex128)).real.sum()
    return float(np.square(mu_a - mu_b).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * c)


def fid(generated: Any, reference: Any, network: Any, *, batch_size: int | None = None) -> dict[str, Any]:
    """FID of a set of generated images against a set of reference images, on the ``features``
    of an ``image-features`` network you supply (its directory or the loaded model; e.g. the
    Inception of pytorch-fid or torchmetrics exported to ONNX; interleaf fetches no weights).
    Equal to torchmetrics' ``FrechetInceptionDistance`` with that network (CoMM's task 2). Images
    that are missing or cannot be decoded are left out and counted.

    Returns ``{"fid", "generated", "reference", "skipped_generated", "skipped_reference"}``
    (``fid`` is None, with ``reason``, when a set has fewer than 2 images)."""
    net = _network(network, "image-features")
    fa, sa = _features(generated, net, "features", batch_size)
    fb, sb = _features(reference, net, "features", batch_size)
    out: dict[str, Any] = {"fid": None, "generated": len(fa), "reference": len(fb), "skipped_generated": sa, "skipped_reference": sb}
    if len(fa) < 2 or len(fb) < 2:
        out["reason"] = "FID needs at least 2 scored images in each set"
        return out
    out["fid"] = frechet_distance(fa, fb)
    return out


def inception_score(images: Any, network: Any, *, splits: int = 10, shuffle_seed: int | None = 0, batch_size: int | None = None) -> dict[str, Any]:
    """The Inception Score of a set of images, on the ``logits`` of an ``image-features``
    network you supply, computed as torchmetrics' ``InceptionScore``: softmax over the logits,
    the images cut into ``splits`` chunks as ``torch.chunk`` cuts them, per chunk
    ``exp(mean KL(p(y|x) || p(y)))``; the mean and the (unbiased) standard deviation over the
    chunks. torchmetrics shuffles the images with torch's random generator first; here the order
    is shuffled with numpy's generator seeded by ``shuffle_seed`` (None: input order), so the
    chunks, and with ``splits > 1`` the value, differ from one torchmetrics run as its runs differ
    from each other; with ``splits=1`` the two are equal.

    Returns ``{"inception_score", "std", "images", "splits", "skipped"}``."""
    from interleaf._checks import int_arg

    int_arg("splits", splits, 1, 1_000_000)
    net = _network(network, "image-features")
    logits, skipped = _features(images, net, "logits", batch_size)
    out: dict[str, Any] = {"inception_score": None, "std": None, "images": len(logits), "splits": splits, "skipped": skipped}
    if not len(logits):
        out["reason"] = "no scored image"
        return out
    if shuffle_seed is not None:
        logits = logits[np.random.default_rng(shuffle_seed).permutation(len(logits))]
    z = logits - logits.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    p = np.exp(log_p)
    size = -(-len(p) // splits)  # torch.chunk: chunks of ceil(n / splits), the last shorter
    scores = []
    for i in range(0, len(p), size):
        pc, lc = p[i : i + size], log_p[i : i + size]
        marginal = pc.mean(0, keepdims=True)
        scores.append(float(np.exp((pc * (lc - np.log(marginal))).sum(1).mean())))
    out["inception_score"] = float(np.mean(scores))
    out["std"] = float(np.std(scores, ddof=1)) if len(scores) > 1 else None
    return out


def lpips(generated: Any, reference: Any, network: Any, *, pairing: str = "index", batch_size: int | None = None) -> tuple[dict[str, Any], pl.DataFrame]:
    """LPIPS of generated images against their references through an ``image-distance``
    network you supply (e.g. the lpips package's AlexNet or SqueezeNet LPIPS exported to ONNX),
    paired as :func:`image_metrics` pairs (``index``, or CoMM's ``cross``: the mean over every
    pair of an example). Its ``preprocessor_config.json`` decides the pixels: LPIPS takes
    [-1, 1] (mean 0.5, std 0.5). CoMM's own script divides by 255 twice, which puts every input
    near -1 and its LPIPS near 0; that is not reproduced.

    Returns ``(summary, per_example)``: ``lpips`` (mean over examples), ``n``, ``scored``,
    ``skipped``; per example ``lpips``, ``pairs`` and ``skipped``."""
    net = _network(network, "image-distance")
    gen_lists, ref_lists = _pair_lists(generated, reference, pairing)
    a: list[bytes] = []
    b: list[bytes] = []
    owner: list[int] = []
    for ex, (gl, rl) in enumerate(zip(gen_lists, ref_lists, strict=True)):
        for r in rl:
            for g in gl:
                # Checked as the other metrics check theirs: a path or an int is a TypeError
                # (bytes(n) made n zero bytes), a missing image an empty one (its row's error).
                a.append(bytes(r) if _image_bytes(r) else b"")
                b.append(bytes(g) if _image_bytes(g) else b"")
                owner.append(ex)
    dist, errors = net.distance(a, b, batch_size=batch_size) if a else (np.zeros(0), pl.Series([], dtype=pl.Null))
    err = errors.to_list()
    rows = []
    reasons: Counter[str] = Counter()
    by: dict[int, list[int]] = {}
    for k, ex in enumerate(owner):
        by.setdefault(ex, []).append(k)
    for ex, (gl, rl) in enumerate(zip(gen_lists, ref_lists, strict=True)):
        ks = [k for k in by.get(ex, []) if np.isfinite(dist[k])]
        why = "missing_generated" if not gl else "missing_reference" if not rl else None
        if why is None and not ks:
            first = next((e for k in by.get(ex, []) if (e := err[k]) is not None), None)
            why = first["kind"] if first else "unscorable"
        if why is not None:
            reasons[why] += 1
        rows.append({"lpips": float(np.mean(dist[ks])) if why is None else None, "pairs": len(ks) if why is None else 0, "skipped": why})
    per = pl.DataFrame(rows, schema={"lpips": pl.Float64, "pairs": pl.Int64, "skipped": pl.String}, orient="row")
    scored = per.filter(pl.col("skipped").is_null())
    summary = {"lpips": scored["lpips"].mean() if scored.height else None, "n": per.height, "scored": scored.height, "skipped": dict(sorted(reasons.items()))}
    return summary, per
