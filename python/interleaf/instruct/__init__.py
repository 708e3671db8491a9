"""MM-Instruct: visual instructions from caption data (MM-Instruct, arXiv 2406.19736).

1. :func:`generate`: an LLM writes instructions from detailed captions and a few seed
   instructions; :func:`cluster` embeds them (a text embedder) and groups them with FAISS
   k-means; :func:`summarise` turns each cluster into one final instruction (MM-Instruct: about
   50K -> about 300).
2. :func:`match`: each image gets an instruction by retrieval: the cosine of the instruction's
   CLIP text embedding and the image's CLIP image embedding, then the argmax or a temperature
   sample over the top-k (MM-Instruct does not say which: both are offered; default argmax).
3. :func:`answer`: an LLM answers each instruction seeing only the image's caption (and optional
   in-context examples).
4. :func:`compare`: the benchmark's pairwise judge: every pair is judged twice with the order
   swapped; the verdicts count only when they agree, otherwise the pair is a tie.

Every step returns one row per input (a result or an ``error``), in order. The prompts are ours,
written from the paper's description.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from interleaf._checks import int_arg
from interleaf.llm import Client, parse_failure, parse_json
from interleaf.llm.records import as_records

__all__ = ["DEFAULT_SEEDS", "MATCH_MODES", "answer", "cluster", "compare", "generate", "match", "summarise"]

#: Seed instructions of our own (MM-Instruct's seed set is not published with the numbers
#: here): varied task types for the generator to imitate.
DEFAULT_SEEDS = (
    "Describe the scene in detail, including the objects, their colours and positions.",
    "What might have happened just before this picture was taken? Explain your reasoning.",
    "Write a short story inspired by this image.",
    "List the steps someone would follow to recreate what is shown.",
    "Compare the two most prominent objects in the image.",
    "What safety concerns, if any, does this scene raise?",
    "Explain the image to a child in three sentences.",
    "Suggest a title for this image and justify it.",
    "Which details in the image reveal the time of day or the season?",
    "Write a product description for the main object shown.",
)

#: How :func:`match` picks among the top-k instructions of an image.
MATCH_MODES = ("argmax", "sample")


def _texts(values: Any, what: str) -> list[str | None]:
    if isinstance(values, pl.Series):
        values = values.to_list()
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise TypeError(f"{what}: expected a sequence of strings, got {type(values).__name__}")
    return [v if isinstance(v, str) and v.strip() else None for v in values]


def generate(captions: Any, client: Client, *, seeds: Sequence[str] = DEFAULT_SEEDS, per_caption: int = 3, n_seeds: int = 3, seed: int = 0, progress: bool = False) -> pl.DataFrame:
    """Instructions written by the LLM from each detailed caption, imitating ``n_seeds`` seed
    instructions drawn (with ``seed``) from ``seeds``: ``per_caption`` per caption. Returns
    ``caption_index``, ``instruction`` and ``error``: one row per instruction, or one row with
    the error for a caption that produced none (blank captions are not sent)."""
    caps = _texts(captions, "captions")
    seeds = [s for s in seeds if isinstance(s, str) and s.strip()]
    if not seeds:
        raise ValueError("seeds: at least one seed instruction is needed")
    if not isinstance(per_caption, int) or per_caption < 1:
        raise ValueError(f"per_caption must be an integer >= 1, got {per_caption!r}")
    rng = np.random.default_rng(seed)
    schema = {"type": "object", "properties": {"instructions": {"type": "array", "items": {"type": "string", "maxLength": 300}, "minItems": 1, "maxItems": per_caption}}, "required": ["instructions"], "additionalProperties": False}
    reqs, slots = [], []
    rows: list[dict[str, Any]] = []
    for i, cap in enumerate(caps):
        if cap is None:
            rows.append({"caption_index": i, "instruction": None, "error": "blank caption"})
            continue
        picked = [seeds[j] for j in rng.choice(len(seeds), size=min(n_seeds, len(seeds)), replace=False)]
        prompt = (
            f"Image description:\n{cap}\n\nExamples of instructions a user might give about an image:\n"
            + "".join(f"- {s}\n" for s in picked)
            + f"\nWrite {per_caption} new, diverse instructions a user could give about THIS image, answerable from what it shows. "
            'Answer with a JSON object only: {"instructions": ["...", ...]}.'
        )
        reqs.append({"messages": [{"role": "system", "content": "You write instructions for training visual assistants."}, {"role": "user", "content": prompt}], "schema": schema, "schema_name": "instructions"})
        slots.append(i)
    answers = dict(zip(slots, client.chat(reqs, progress=progress, label="instruct generate"), strict=True))
    out: list[dict[str, Any]] = []
    blank = {r["caption_index"]: r for r in rows}
    for i in range(len(caps)):
        if i in blank:
            out.append(blank[i])
            continue
        resp = answers[i]
        obj, err = parse_json(resp.text) if resp.ok else (None, resp.error)
        items = obj.get("instructions") if obj is not None else None
        good = [s.strip() for s in items if isinstance(s, str) and s.strip()][:per_caption] if isinstance(items, list) else []
        if not good:
            msg = err if not resp.ok else parse_failure(resp, err if obj is None else "instructions: expected a non-empty list of strings")
            out.append({"caption_index": i, "instruction": None, "error": msg})
        else:
            out += [{"caption_index": i, "instruction": s, "error": None} for s in good]
    schema_out = {"caption_index": pl.Int64, "instruction": pl.String, "error": pl.String}
    return pl.DataFrame(out, schema=schema_out, orient="row") if out else pl.DataFrame(schema=schema_out)


def cluster(instructions: Any, embedder: Any, k: int, *, seed: int = 1234, niter: int = 20, device: str = "auto") -> pl.DataFrame:
    """Embeds the instructions with ``embedder`` (a text embedder or its model directory) and
    clusters them with FAISS spherical k-means into ``min(k, n)`` clusters (``seed`` fixes the
    result). Returns ``instruction`` and ``cluster`` (Int64; null, with ``error``, for blank or
    failed texts)."""
    from interleaf import models
    from interleaf.search import kmeans

    texts = _texts(instructions, "instructions")
    if isinstance(embedder, str) or hasattr(embedder, "__fspath__"):
        embedder = models.load(embedder, kind="text-embedder")
    ok = [i for i, t in enumerate(texts) if t is not None]
    labels = np.full(len(texts), -1, dtype=np.int64)
    errors: list[str | None] = ["blank instruction" if t is None else None for t in texts]
    if ok:
        emb, err = embedder.embed([texts[i] for i in ok])
        good = [j for j, e in enumerate(err.to_list()) if e is None]
        for j, e in enumerate(err.to_list()):
            if e is not None:
                errors[ok[j]] = f"{e['kind']}: {e['message']}"
        if good:
            lab, _ = kmeans(emb[good], k, seed=seed, niter=niter, device=device)
            labels[[ok[j] for j in good]] = lab
    return pl.DataFrame({"instruction": texts, "cluster": [int(c) if c >= 0 else None for c in labels], "error": errors}, schema={"instruction": pl.String, "cluster": pl.Int64, "error": pl.String})


def summarise(clustered: pl.DataFrame, client: Client, *, max_members: int = 20, seed: int = 0, progress: bool = False) -> pl.DataFrame:
    """One final instruction per cluster of a :func:`cluster` table: the LLM sees up to
    ``max_members`` of the cluster's instructions (drawn with ``seed`` when there are more) and
    writes the one instruction that represents them. Returns ``cluster``, ``size``,
    ``instruction`` and ``error``, by cluster id."""
    if not {"instruction", "cluster"}.issubset(clustered.columns):
        raise ValueError(f"summarise needs the columns instruction and cluster (from interleaf.instruct.cluster), got {', '.join(clustered.columns)}")
    groups = clustered.filter(pl.col("cluster").is_not_null()).group_by("cluster").agg(pl.col("instruction")).sort("cluster")
    rng = np.random.default_rng(seed)
    schema = {"type": "object", "properties": {"instruction": {"type": "string", "maxLength": 300}}, "required": ["instruction"], "additionalProperties": False}
    reqs, meta = [], []
    for cid, members in groups.iter_rows():
        shown = members if len(members) <= max_members else [members[j] for j in sorted(rng.choice(len(members), size=max_members, replace=False))]
        prompt = "Instructions from one cluster:\n" + "".join(f"- {m}\n" for m in shown) + '\nWrite the single instruction that best represents this cluster, general enough to apply to many images. Answer with a JSON object only: {"instruction": "..."}.'
        reqs.append({"messages": [{"role": "user", "content": prompt}], "schema": schema, "schema_name": "cluster_instruction"})
        meta.append((cid, len(members)))
    rows = []
    for (cid, size), resp in zip(meta, client.chat(reqs, progress=progress, label="instruct summarise"), strict=True):
        obj, err = parse_json(resp.text) if resp.ok else (None, resp.error)
        text = obj.get("instruction") if obj is not None else None
        if isinstance(text, str) and text.strip():
            rows.append({"cluster": cid, "size": size, "instruction": text.strip(), "error": None})
        else:
            rows.append({"cluster": cid, "size": size, "instruction": None, "error": err if not resp.ok else parse_failure(resp, err if obj is None else "instruction: expected a non-empty string")})
    schema_out = {"cluster": pl.Int64, "size": pl.Int64, "instruction": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema_out, orient="row") if rows else pl.DataFrame(schema=schema_out)


def match(instructions: Any, images: Any, clip: Any, *, top_k: int = 5, mode: str = "argmax", temperature: float = 0.05, seed: int = 0) -> pl.DataFrame:
    """Matches each image to an instruction by CLIP retrieval: the cosine of the image's CLIP
    image embedding and each instruction's CLIP text embedding; ``mode="argmax"`` takes the best,
    ``"sample"`` draws from the ``top_k`` best with probabilities ``softmax(cosine /
    temperature)`` (seeded). Blank instructions (None, empty or whitespace) are never chosen.
    Returns ``image_index``, ``instruction_index`` (into ``instructions`` as given, blanks
    included), ``instruction``, ``score`` (the chosen cosine) and ``error`` (an image that could
    not be embedded)."""
    from interleaf import models, search

    if mode not in MATCH_MODES:
        raise ValueError(f"mode must be one of {', '.join(MATCH_MODES)}, got {mode!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    int_arg("top_k", top_k, 1, 1 << 16)
    given = _texts(instructions, "instructions")
    where = np.array([i for i, t in enumerate(given) if t is not None], dtype=np.int64)  # position in the caller's list
    texts = [given[i] for i in where]
    if not texts:
        raise ValueError("instructions: none is a non-blank string")
    if isinstance(clip, str) or hasattr(clip, "__fspath__"):
        clip = models.load(clip, kind="clip")
    t_emb, t_err = clip.embed_texts(texts)
    if t_err.is_not_null().any():
        raise ValueError(f"instructions could not be embedded: {t_err.drop_nulls().to_list()[:3]}")
    i_emb, i_err = clip.embed_images(images)
    ok = i_err.is_null().to_numpy()
    chosen = np.full(len(i_emb), -1, dtype=np.int64)
    score = np.full(len(i_emb), np.nan, dtype=np.float32)
    if ok.any():
        sample = mode == "sample"
        s, i = search.nearest(i_emb[ok], t_emb, 1, top=min(top_k, len(texts)) if sample else None, temperature=temperature if sample else None, seed=seed)
        chosen[ok], score[ok] = where[i[:, 0]], s[:, 0]
    index = pl.Series("instruction_index", chosen).replace(-1, None)
    return pl.DataFrame(
        {
            "image_index": np.arange(len(i_emb), dtype=np.int64),
            "instruction_index": index,
            "instruction": pl.Series(given, dtype=pl.String).gather(index),
            "score": pl.Series(score, nan_to_null=True),
            "error": pl.DataFrame({"e": i_err}).select(pl.format("{}: {}", pl.col("e").struct.field("kind"), pl.col("e").struct.field("message"))).to_series(),
        },
        schema={"image_index": pl.Int64, "instruction_index": pl.Int64, "instruction": pl.String, "score": pl.Float32, "error": pl.String},
    )


def answer(pairs: Any, client: Client, *, examples: Sequence[dict[str, str]] = (), progress: bool = False) -> pl.DataFrame:
    """MM-Instruct's answer step: the LLM answers each ``instruction`` seeing only the image's
    ``caption`` (never the image), with optional in-context ``examples`` (``{"caption",
    "instruction", "answer"}`` dicts, sent as earlier turns). ``pairs``: dicts or a DataFrame with
    ``caption`` and ``instruction``. Returns ``caption``, ``instruction``, ``answer``, ``error``
    (also for an empty answer, or one cut off at ``max_tokens``: neither is kept, nor cached)."""
    recs = as_records(pairs, ("caption", "instruction"), "answer", required=(("instruction",),))
    system = "You are a visual assistant. You cannot see the image; you are given its detailed description. Answer the user's instruction as if you saw the image, using only what the description supports."
    shots: list[dict[str, Any]] = []
    for ex in examples:
        shots += [{"role": "user", "content": f"Image description: {ex['caption']}\n\nInstruction: {ex['instruction']}"}, {"role": "assistant", "content": ex["answer"]}]
    reqs, slots, rows = [], [], []
    for i, r in enumerate(recs):
        rows.append({"caption": r["caption"], "instruction": r["instruction"], "answer": None, "error": None})
        if not (_filled(r["caption"]) and _filled(r["instruction"])):
            rows[-1]["error"] = "caption and instruction must be non-blank strings"
            continue
        reqs.append([{"role": "system", "content": system}, *shots, {"role": "user", "content": f"Image description: {r['caption']}\n\nInstruction: {r['instruction']}"}])
        slots.append(i)
    for i, resp in zip(slots, client.chat(reqs, progress=progress, label="instruct answer"), strict=True):
        if not resp.ok:
            rows[i]["error"] = resp.error
        elif resp.finish_reason == "length" or not (resp.text and resp.text.strip()):
            # Not an answer to train on: removed from the cache, so the next run (more
            # max_tokens, another model) asks again.
            resp.uncache()
            rows[i]["error"] = "the answer was cut off at max_tokens" if resp.finish_reason == "length" else "empty answer"
        else:
            rows[i]["answer"] = resp.text.strip()
    schema = {"caption": pl.String, "instruction": pl.String, "answer": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def _filled(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


_VERDICT_SCHEMA = {"type": "object", "properties": {"better": {"type": "string", "enum": ["A", "B", "neither"]}}, "required": ["better"], "additionalProperties": False}


def _verdict(resp: Any) -> tuple[str | None, str | None]:
    if not resp.ok:
        return None, resp.error
    obj, err = parse_json(resp.text)
    v = obj.get("better") if obj is not None else None
    if isinstance(v, str) and v.strip().lower() in ("a", "b", "neither", "tie", "none"):
        v = v.strip().lower()
        return ("neither" if v in ("tie", "none") else v), None
    return None, parse_failure(resp, err if obj is None else f"better: expected A, B or neither, got {v!r}")


def compare(items: Any, client: Client, *, progress: bool = False) -> pl.DataFrame:
    """MM-Instruct's pairwise benchmark judge. ``items``: dicts or a DataFrame with
    ``instruction``, ``a`` and ``b`` (two answers) and optionally ``caption`` (the image's
    description, given to the judge). Each pair is judged twice, A/B and swapped; ``winner`` is
    ``"a"`` or ``"b"`` when both verdicts name the same answer, else ``"tie"`` (also when both say
    neither). Returns ``verdict_ab`` / ``verdict_ba`` (as seen from the original order: ``a``,
    ``b`` or ``neither``), ``winner`` and ``error``. A row whose instruction, ``a`` or ``b`` is
    missing or blank is an error, sent to no one (as :func:`answer` does for blank fields); a
    blank caption is left out of the prompt."""
    recs = as_records(items, ("instruction", "a", "b", "caption"), "compare", required=(("instruction",), ("a",), ("b",)))

    def request(r: dict[str, Any], first: str, second: str) -> dict[str, Any]:
        ctx = f"Image description: {r['caption']}\n\n" if _filled(r.get("caption")) else ""
        prompt = f"{ctx}Instruction: {r['instruction']}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}\n\nWhich answer follows the instruction better (helpful, correct, grounded in the image)? " 'Answer with a JSON object only: {"better": "A" | "B" | "neither"}.'
        return {"messages": [{"role": "system", "content": "You are an impartial judge of visual assistants' answers."}, {"role": "user", "content": prompt}], "schema": _VERDICT_SCHEMA, "schema_name": "verdict"}

    reqs, slots = [], []
    for i, r in enumerate(recs):
        if all(_filled(r[f]) for f in ("instruction", "a", "b")):
            reqs += [request(r, r["a"], r["b"]), request(r, r["b"], r["a"])]
            slots.append(i)
    out = client.chat(reqs, progress=progress, label="instruct compare")
    resps = {i: (out[2 * j], out[2 * j + 1]) for j, i in enumerate(slots)}
    swap = {"a": "b", "b": "a", "neither": "neither"}
    rows: list[dict[str, Any]] = []
    for i in range(len(recs)):
        if i not in resps:
            rows.append({"verdict_ab": None, "verdict_ba": None, "winner": None, "error": "instruction, a and b must be non-blank strings"})
            continue
        (v1, e1), (v2, e2) = _verdict(resps[i][0]), _verdict(resps[i][1])
        v2 = swap[v2] if v2 is not None else None
        if e1 or e2:
            rows.append({"verdict_ab": v1, "verdict_ba": v2, "winner": None, "error": e1 or e2})
        else:
            rows.append({"verdict_ab": v1, "verdict_ba": v2, "winner": v1 if v1 == v2 and v1 != "neither" else "tie", "error": None})
    schema = {"verdict_ab": pl.String, "verdict_ba": pl.String, "winner": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
