"""CoMM's LLM judge of generated interleaved content, tasks 1-4 (CoMM, arXiv 2406.10462), through an
:class:`interleaf.llm.Client`, and its aggregation as CoMM's ``cal_gpt4o_score.py`` does it.

The protocol follows CoMM's evaluation code (``docs/reference/evaluation-protocols.md`` §1(e)):

- task 1, one call: each predicted step's text followed by the images of the matching input
  step; the judge scores ``Completeness`` and ``Text Fidelity to Image``.
- task 2, three calls: the input step texts interleaved with the predicted images (tagged
  ``<Img_k>``) scored for image coherence and quality; the judge describes the images from the
  texts; each description is scored against its predicted image (consistency = text fidelity).
  CoMM's code leaves the images in the second call although its prompt says they are hidden;
  ``task2_hide_images=False`` (the default) keeps that for comparable numbers.
- tasks 3 and 4, three calls: INPUT + OUTPUT with images (``<Img_i>`` numbered on from the
  input's) scored for image coherence, completeness and image quality; INPUT + OUTPUT with the
  output's images removed (their tags kept), the judge predicting each hidden image; each
  prediction scored against the generated image. Task 3 samples whose input already holds
  :data:`~interleaf.evaluate.comm.MAX_IMAGES` images are not judged (as CoMM's).

At most 10 images per sample, each sent as JPEG at most 512 px on its longer edge. A sample
whose answers cannot be parsed is asked again (a new seed), ``attempts`` times in all, as CoMM
retries; then it is a failure, counted and excluded. Scores of ``"NA"`` or null count as 0, as
CoMM's aggregation does.

The system prompts are ours, written from the paper's criteria and asking for the JSON layout
CoMM's prompts ask for (CoMM's repository carries no licence, so its prompt files are not
shipped). For numbers comparable to CoMM's own, pass ``prompts=`` a folder holding CoMM's
``machine_evaluation_prompts`` files (:data:`PROMPT_FILES`); they are read by those names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from interleaf.evaluate.comm import MAX_IMAGES, check_task, parse_steps
from interleaf.llm import Client, image_part, image_urls, parse_json, text_part

__all__ = ["COHERENCE_KEYS", "PROMPT_FILES", "SCORE_KEYS", "aggregate", "judge", "prompts"]

#: The prompt names (CoMM's ``machine_evaluation_prompts/<name>.json`` files).
PROMPT_FILES = (
    "task_1",
    "document_completeness_image_coherence_task2",
    "texts_to_image_descriptions_task2",
    "document_completeness_image_coherence",
    "texts_to_image_descriptions",
    "descriptions_gt_images_consistency",
)

#: The four image-coherence sub-scores, reported separately.
COHERENCE_KEYS = ("style_consistency", "entity_consistency", "trend_consistency", "overall_consistency")

#: Score columns per task.
SCORE_KEYS = {
    "task1": ("completeness", "text_fidelity"),
    "task2": (*COHERENCE_KEYS, "text_fidelity", "image_quality"),
    "task3": (*COHERENCE_KEYS, "completeness", "image_quality", "text_fidelity"),
    "task4": (*COHERENCE_KEYS, "completeness", "image_quality", "text_fidelity"),
}

_BANDS = "Scores are integers from 0 to 10: 0-3 major deficiencies, misalignment or inconsistency; 4-7 minor gaps or partial alignment; 8-10 complete, thorough alignment and strong consistency."

_COHERENCE_JSON = """{
  "scores": {
    "Image_Coherence": {
      "pair_scores": {"image_K_and_K+1": {"justification": "...", "style_consistency": 0-10, "entity_consistency": 0-10}},
      "overall_score": {"justification": "...", "style_consistency": 0-10, "entity_consistency": 0-10, "trend_consistency": 0-10, "overall_consistency": 0-10}
    },%s
    "Image_Quality": {"Justification": "...", "Score": 0-10}
  }
}"""

_COMPLETENESS_JSON = '\n    "Completeness": {"Summarize": "...", "Justification": "...", "Score": 0-10},'

_DEFAULT_PROMPTS = {
    "task_1": (
        "You evaluate a model that wrote one text per step of a step-by-step guide from the guide's image sequence. "
        "You receive each generated step text followed by the images of that step.\n"
        "Completeness: do the texts together cover every step the images show, with nothing essential missing?\n"
        "Text Fidelity to Image: does each text describe what its images show, without contradicting them?\n"
        f"{_BANDS}\n"
        'Answer with JSON only:\n{"Completeness": {"Summarize": "...", "Justification": "...", "Score": 0-10}, '
        '"Text Fidelity to Image": {"overall_score": 0-10, "Justification": "..."}}'
    ),
    "document_completeness_image_coherence_task2": (
        "You evaluate a model that generated one image per step of a step-by-step guide from the step texts. "
        "You receive each step text followed by its generated images, tagged <Img_k>...</Img_k>.\n"
        "Image Coherence: for each consecutive pair of images, are their style and the entities they show consistent? "
        "Overall: style, entity and trend consistency (does the sequence progress as the texts do) and an overall consistency.\n"
        "Image Quality: realism, completeness, clarity and balanced composition of the images.\n"
        f"{_BANDS}\nAnswer with JSON only:\n" + _COHERENCE_JSON % ""
    ),
    "texts_to_image_descriptions_task2": (
        "You read a step-by-step guide whose images are hidden; each image's place is marked <Img_k></Img_k>, k from 0. "
        "From the texts alone, predict what each image should show.\n"
        'Answer with JSON only:\n{"Tasks": {"Create an Interleaved Text-Image Document": {"Content of Image 0": "...", "Content of Image 1": "...", "...": "..."}}}'
    ),
    "document_completeness_image_coherence": (
        "You evaluate an interleaved text-and-image document a model generated (OUTPUT) for a request (INPUT). "
        "Images are tagged <Img_i>...</Img_i>.\n"
        "Image Coherence: for each consecutive pair of output images, are their style and entities consistent? "
        "Overall: style, entity and trend consistency (does the image sequence follow the text) and an overall consistency.\n"
        "Completeness: is the text complete, does it cover every step the request needs, are images missing?\n"
        "Image Quality: realism, completeness, clarity and balanced composition of the output images.\n"
        f"{_BANDS}\nAnswer with JSON only:\n" + _COHERENCE_JSON % _COMPLETENESS_JSON
    ),
    "texts_to_image_descriptions": (
        "You read a request (INPUT) and a generated interleaved document (OUTPUT) whose output images are hidden; "
        "each hidden image's place is kept as its tag <Img_i></Img_i>. From the text, predict what each hidden output image should show, "
        "keyed by its tag number i.\n"
        'Answer with JSON only:\n{"Tasks": {"Create an Interleaved Text-Image Document": {"Content of Image K": "...", "Content of Image K+1": "...", "...": "..."}}}'
    ),
    "descriptions_gt_images_consistency": (
        "You receive descriptions, each tagged <Description_i>, alternating with images tagged <Img_i>. "
        "Score how well each image matches the description before it. If a description or its image is missing, score that item 0.\n"
        f"{_BANDS}\n"
        'Answer with JSON only:\n{"Consistency": {"image_1_score": 0-10, "image_2_score": 0-10, "...": 0-10, "overall_score": 0-10, "Justification": "..."}}'
    ),
}


def prompts(folder: str | Path | None = None) -> dict[str, str]:
    """The six system prompts by name (:data:`PROMPT_FILES`): ours, or read from ``folder``
    (CoMM's ``machine_evaluation_prompts``: ``<name>.json`` files holding the prompt text)."""
    if folder is None:
        return dict(_DEFAULT_PROMPTS)
    root = Path(folder)
    missing = [n for n in PROMPT_FILES if not (root / f"{n}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"prompt folder {root} lacks {', '.join(n + '.json' for n in missing)} (CoMM's eval/tot_metric/machine_evaluation_prompts)")
    return {n: (root / f"{n}.json").read_text(encoding="utf-8") for n in PROMPT_FILES}


# --- content builders, as CoMM's judge lays the messages out ------------------------------------


class _Unsendable(Exception):
    pass


def _url(image: Any, urls: dict[int, str | None]) -> str:
    url = urls.get(id(image))
    if url is None:
        raise _Unsendable("an image of the sample is missing or unreadable")
    return url


def _task1_content(inputs: list[list[tuple[str, Any]]], outputs: list[list[tuple[str, Any]]], urls: dict[int, str | None]) -> list[dict[str, Any]]:
    texts = ["".join(" " + v for k, v in step if k == "text") for step in outputs]
    content: list[dict[str, Any]] = []
    for i, group in enumerate(inputs):
        if i >= len(texts):
            break
        content.append(text_part(texts[i]))
        content += [image_part(_url(v, urls)) for k, v in group if k == "image"]
    return content


def _tag_images(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    k = 0
    for part in content:
        if part["type"] == "text":
            out.append(part)
        else:
            out += [text_part(f"<Img_{k}>"), part, text_part(f"</Img_{k}>")]
            k += 1
    return out


def _tagged(start: int, steps: list[list[tuple[str, Any]]], urls: dict[int, str | None]) -> tuple[list[dict[str, Any]], int, list[Any]]:
    content: list[dict[str, Any]] = []
    images: list[Any] = []
    i = start
    for step in steps:
        for kind, v in step:
            if kind == "text":
                content.append(text_part(v))
            else:
                content += [text_part(f" <Img_{i}>"), image_part(_url(v, urls)), text_part(f"</Img_{i}>")]
                images.append(v)
                i += 1
    return content, i, images


def _interleaved(descriptions: list[str], images: list[Any], urls: dict[int, str | None]) -> list[dict[str, Any]]:
    if len(images) > len(descriptions):
        raise _Unsendable(f"the judge described {len(descriptions)} images, the sample has {len(images)}")
    content: list[dict[str, Any]] = []
    for i, d in enumerate(descriptions):
        content.append(text_part(f"<Description_{i}> {d} </Description_{i}> "))
        if i < len(images):
            content += [text_part(f"<Img_{i}>"), image_part(_url(images[i], urls)), text_part(f"</Img_{i}>")]
    return content


def _text_only(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in content if p["type"] == "text"]


def _json_object(text: str | None) -> dict[str, Any]:
    obj, err = parse_json(text)
    if obj is None:
        raise ValueError(err or "no JSON object in the answer")
    return obj


def _descriptions(answer: dict[str, Any], start: int, prefix: str) -> list[str]:
    tasks = answer.get("Tasks")
    block = tasks.get("Create an Interleaved Text-Image Document") if isinstance(tasks, dict) else None
    if not isinstance(block, dict):
        raise ValueError("no 'Tasks' -> 'Create an Interleaved Text-Image Document' object")
    out = []
    for i in range(start, start + len(block)):
        v = block.get(f"Content of Image {i}")
        if v is None:
            raise ValueError(f"no 'Content of Image {i}' in the descriptions")
        out.append(prefix + str(v))
    return out


def _score(v: Any, what: str) -> float:
    """A score as CoMM's aggregation takes it: NA/null count as 0; numbers (or numeric strings)
    in 0-10."""
    if isinstance(v, dict):
        v = v.get("Score", v.get("overall_score"))
    if v is None or (isinstance(v, str) and v.strip().upper() in ("NA", "N/A")):
        return 0.0
    if isinstance(v, bool):
        raise ValueError(f"{what}: {v!r} is not a score")
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        raise ValueError(f"{what}: {str(v)[:40]!r} is not a score") from None
    if not 0.0 <= f <= 10.0:
        raise ValueError(f"{what}: {f} is outside 0-10")
    return f


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            raise ValueError("no " + " -> ".join(repr(p) for p in path) + " in the answer")
        obj = obj[key]
    return obj


def _coherence(answer: dict[str, Any]) -> dict[str, float]:
    overall = _get(answer, "scores", "Image_Coherence", "overall_score")
    if not isinstance(overall, dict):
        raise ValueError("Image_Coherence overall_score is not an object")
    return {k: _score(overall.get(k), k) for k in COHERENCE_KEYS}


# --- the protocol --------------------------------------------------------------------------------


class _Sample:
    """One sample's judge state: the calls of its current stage, the answers so far."""

    def __init__(self, s: dict[str, Any], task: str, urls: dict[int, str | None], hide: bool):
        self.s, self.task, self.urls, self.hide = s, task, urls, hide
        self.scores: dict[str, float] | None = None
        self.answers: dict[str, Any] = {}
        self.error: str | None = s["error"]
        self.unanswered = False  # a request failed (the client already retried it)
        self.stage = 0
        self.first = 0
        if self.error is not None:
            return
        inputs, preds = s["input_images"], s["pred_images"]
        if task == "task1":
            self.inputs, _ = parse_steps(s["model_input"], inputs)
            self.outputs, _ = parse_steps(s["model_output"], [])
        elif task == "task2":
            self.outputs, _ = parse_steps(s["model_output"], preds)
            self.inputs, _ = parse_steps(s["model_input"], [])
        elif task == "task3":
            self.inputs, used = parse_steps(s["model_input"], inputs)
            if used >= MAX_IMAGES:
                self.error = f"not judged: the input holds {MAX_IMAGES} or more images"
            self.outputs, _ = parse_steps(s["model_output"], preds, used)
        else:
            self.inputs = [[("text", s["model_input"] or "")]]
            self.outputs, _ = parse_steps(s["model_output"], preds)

    def calls(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(prompt name, user content) of this stage's calls."""
        u = self.urls
        if self.task == "task1":
            return [("task_1", _task1_content(self.inputs, self.outputs, u))]
        if self.task == "task2":
            content = _tag_images(_task1_content(self.outputs, self.inputs, u))
            self.images = [v for step in self.outputs for k, v in step if k == "image"]
            if self.stage == 0:
                described = content if not self.hide else _text_only(content)
                return [("document_completeness_image_coherence_task2", content), ("texts_to_image_descriptions_task2", described)]
            return [("descriptions_gt_images_consistency", _interleaved(self.descriptions, self.images, u))]
        inp, k, _ = _tagged(0, self.inputs, u)
        out, _, self.images = _tagged(k, self.outputs, u)
        self.first = k
        if self.stage == 0:
            both = [text_part("INPUT:"), *inp, text_part("OUTPUT:")]
            return [("document_completeness_image_coherence", [*both, *out]), ("texts_to_image_descriptions", [*both, *_text_only(out)])]
        return [("descriptions_gt_images_consistency", _interleaved(self.descriptions, self.images, u))]

    def take(self, answers: list[dict[str, Any]]) -> bool:
        """Parses this stage's answers; True when the sample needs another stage."""
        if self.task == "task1":
            a = answers[0]
            self.answers["completeness_and_text_fidelity"] = a
            self.scores = {"completeness": _score(_get(a, "Completeness"), "Completeness"), "text_fidelity": _score(_get(a, "Text Fidelity to Image"), "Text Fidelity to Image")}
            return False
        if self.stage == 0:
            coherence, described = answers
            self.answers |= {"coherence_and_completeness": coherence, "texts_to_image_descriptions": described}
            self.partial = _coherence(coherence) | {"image_quality": _score(_get(coherence, "scores", "Image_Quality"), "Image_Quality")}
            if self.task != "task2":
                self.partial["completeness"] = _score(_get(coherence, "scores", "Completeness"), "Completeness")
            self.descriptions = _descriptions(described, 0 if self.task == "task2" else self.first, "" if self.task == "task2" else "Description:")
            self.stage = 1
            return True
        self.answers["descriptions_gt_images_consistency"] = answers[0]
        self.scores = self.partial | {"text_fidelity": _score(_get(answers[0], "Consistency", "overall_score"), "Consistency overall_score")}
        return False


def judge(
    samples: Sequence[dict[str, Any]],
    client: Client,
    task: str,
    *,
    prompts_folder: str | Path | None = None,
    temperature: float | None = 1.0,
    attempts: int = 3,
    max_edge: int = 512,
    task2_hide_images: bool = False,
    progress: bool = False,
) -> pl.DataFrame:
    """CoMM's judge over read predictions (:func:`interleaf.evaluate.comm.read_predictions`).

    Returns one row per sample, in order: ``sample``, ``data_id``, the task's scores
    (:data:`SCORE_KEYS`, Float64 0-10, null when not judged), ``answers`` (the judge's parsed
    answers as JSON, as CoMM's per-sample files hold them) and ``error`` (the sample's own error,
    why it was not sent, or why its answers could not be used after ``attempts`` tries).
    ``temperature``: CoMM samples at 1.0; None leaves the client's."""
    check_task(task)
    if not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be an integer >= 1, got {attempts!r}")
    system = prompts(prompts_folder)
    images: list[Any] = []
    for s in samples:
        if s["error"] is None:
            images += [x for x in (*s["input_images"], *s["pred_images"]) if x is not None]
    found = image_urls(images, max_edge) if images else []
    urls = {id(x): u for x, (u, _) in zip(images, found, strict=True)}
    states = [_Sample(s, task, urls, task2_hide_images) for s in samples]
    pending = [st for st in states if st.error is None]
    for attempt in range(attempts):
        for st in pending:
            st.stage, st.answers, st.error = 0, {}, None
        live = list(pending)
        while live:
            reqs: list[dict[str, Any]] = []
            owners: list[tuple[_Sample, int]] = []
            for st in live:
                try:
                    calls = st.calls()
                except _Unsendable as e:
                    st.error = str(e)
                    continue
                for name, content in calls:
                    req: dict[str, Any] = {"messages": [{"role": "system", "content": system[name]}, {"role": "user", "content": content}]}
                    if temperature is not None:
                        req["temperature"] = temperature
                    if attempt:
                        req["seed"] = attempt
                    reqs.append(req)
                    owners.append((st, len(calls)))
            answers = client.chat(reqs, progress=progress, label=f"{task} judge") if reqs else []
            by: dict[int, list[Any]] = {}
            order: list[_Sample] = []
            for (st, _), resp in zip(owners, answers, strict=True):
                if id(st) not in by:
                    order.append(st)
                by.setdefault(id(st), []).append(resp)
            live = []
            for st in order:
                resps = by[id(st)]
                bad = next((r for r in resps if not r.ok), None)
                if bad is not None:
                    st.error, st.unanswered = bad.error, True
                    continue
                try:
                    more = st.take([_json_object(r.text) for r in resps])
                except ValueError as e:
                    st.error = f"unusable judge answer: {e}"
                    for r in resps:  # not served from the cache again: the next run asks anew
                        r.uncache()
                    continue
                if more:
                    live.append(st)
        # Asked again (a new seed) only for answers that could not be used: a request the
        # client gave up on (a dead endpoint, a 401) is not sent ``attempts`` times more.
        pending = [st for st in pending if st.scores is None and not st.unanswered]
        if not pending:
            break
    keys = SCORE_KEYS[task]
    rows = []
    for st in states:
        row: dict[str, Any] = {"sample": st.s.get("sample"), "data_id": st.s.get("data_id")}
        row |= {k: (st.scores or {}).get(k) for k in keys}
        row |= {"answers": json.dumps(st.answers, ensure_ascii=False) if st.answers else None, "error": None if st.scores is not None else (st.error or "not judged")}
        rows.append(row)
    schema = {"sample": pl.String, "data_id": pl.String} | dict.fromkeys(keys, pl.Float64) | {"answers": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def aggregate(scores: pl.DataFrame) -> dict[str, Any]:
    """CoMM's aggregation: per score key, the plain mean over the judged samples (NA already
    counted as 0), and the counts ``samples``, ``judged``, ``failed``."""
    keys = [k for k in dict.fromkeys(k for ks in SCORE_KEYS.values() for k in ks) if k in scores.columns]
    ok = scores.filter(pl.col("error").is_null())
    out: dict[str, Any] = {"samples": scores.height, "judged": ok.height, "failed": scores.height - ok.height}
    for k in keys:
        out[k] = ok[k].mean() if ok.height else None
    return out
