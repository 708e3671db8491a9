"""CoMM's four tasks: inputs built as CoMM's loader builds them, the predictions folder read back
with its faults counted, the automatic metrics against the reference libraries, and the judge
protocol against the scripted server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest


@pytest.fixture()
def comm_docs(tmp_path, sample_dir) -> Path:
    """Real CoMM documents (the bundled sample, ids as CoMM's ``data_id``) plus the edge cases:
    a one-step document, a document without images, a step with two texts and a blank title."""
    import shutil

    shutil.copytree(sample_dir / "images", tmp_path / "images")
    docs = [json.loads(line) for line in (sample_dir / "comm.jsonl").read_text().splitlines() if line.strip()]
    assert all("data_id" in d for d in docs)
    img = "images/coffee.jpg"
    docs.append({"data_id": "one-step", "title": "Single", "step_info": [[{"type": "text", "content": "  Only  step.\n"}, {"type": "image", "image_path": img}]]})
    docs.append({"data_id": "no-image", "title": "Words", "step_info": [[{"type": "text", "content": "a"}], [{"type": "text", "content": "b"}]]})
    docs.append({"data_id": "two-texts", "title": None, "step_info": [[{"type": "text", "content": "First"}, {"type": "text", "content": " part."}, {"type": "image", "image_path": img}], [{"type": "image", "image_path": img}, {"type": "text", "content": "Second"}]]})
    p = tmp_path / "comm_gt.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return p


def _by(samples, task, data_id):
    return next(s for s in samples if s["task"] == task and s["data_id"] == data_id)


def test_task_builders_follow_comms_templates(comm_docs):
    from interleaf.evaluate import comm

    samples = comm.build_tasks(str(comm_docs))
    raw = {json.loads(line)["data_id"]: json.loads(line) for line in comm_docs.read_text().splitlines()}
    d = raw["comm-0001"]
    texts = [" ".join(it["content"].split()) for st in d["step_info"] for it in st if it["type"] == "text"]
    t = d["title"]
    s1 = _by(samples, "task1", "comm-0001")
    assert s1["model_input"] == f"Here are step-by-step instructions images sequence about {t}:" + "".join(f"({k}) <IMAGE> " for k in range(1, 6)) + "According to the above images, can you generate text for each step?"
    assert s1["target"] == " ".join(f"({k}) {x}" for k, x in enumerate(texts, 1))
    assert len(s1["input_images"]) == 5 and s1["output_images"] == [] and s1["skipped"] is None
    s2 = _by(samples, "task2", "comm-0001")
    assert s2["model_input"] == f"Here are step-by-step instructions without images about {t}:" + "".join(f"({k}) {x} " for k, x in enumerate(texts, 1)) + "According to the above steps, can you generate images for each step?"
    assert s2["target"] == " ".join(f"({k}) <IMAGE>" for k in range(1, 6)) and len(s2["output_images"]) == 5
    # Task 3: the first len(steps)//2 = 2 of 5 steps are the input; the rest numbered on.
    s3 = _by(samples, "task3", "comm-0001")
    assert s3["model_input"] == f"Here are step-by-step instructions with images about {t}:(1) {texts[0]} <IMAGE> (2) {texts[1]} <IMAGE> According to the above steps, can you generate the rest steps?"
    assert s3["target"] == f"(3) {texts[2]} <IMAGE> (4) {texts[3]} <IMAGE> (5) {texts[4]} <IMAGE>"
    assert len(s3["input_images"]) == 2 and len(s3["output_images"]) == 3
    s4 = _by(samples, "task4", "comm-0001")
    assert s4["model_input"] == f"Can you generate step-by-step instructions with images about {t}?" and s4["target"].startswith(f"(1) {texts[0]} <IMAGE> (2)")
    # The ground truth of task 1's text metrics: the raw text items of each step, concatenated.
    assert _by(samples, "task1", "two-texts")["reference_steps"] == ["First part.", "Second"]
    assert _by(samples, "task1", "two-texts")["target"] == "(1) First part. (2) Second"
    assert _by(samples, "task2", "two-texts")["model_input"].startswith("Here are step-by-step instructions without images about :(1) First part. (2) Second")
    # Single-step document: task 3 has no input step (split index -1), so no input image, and
    # CoMM's loader rejects it; the other tasks are built.
    one = {s["task"]: s for s in samples if s["data_id"] == "one-step"}
    assert one["task3"]["model_input"] == "Here are step-by-step instructions with images about Single:" and one["task3"]["skipped"] == "no_input_image"
    assert [one[t]["skipped"] for t in ("task1", "task2", "task4")] == [None, None, None]
    # Documents a task cannot be built from are skipped with the reason (CoMM's loader rejects them).
    assert {s["task"]: s["skipped"] for s in samples if s["data_id"] == "no-image"} == {"task1": "no_input_image", "task2": "no_output_image", "task3": "no_output_image", "task4": "no_output_image"}


def test_task3_needs_an_image_in_each_half(tmp_path, comm_docs):
    """CoMM's loader rejects a sample with an empty input image list: a document whose images
    are all in its second half gives tasks 1, 2 and 4 but no task 3."""
    from interleaf.evaluate import comm

    img = "images/coffee.jpg"
    late = {"data_id": "late", "title": "Late", "step_info": [[{"type": "text", "content": f"s{k}"}] + ([{"type": "image", "image_path": img}] if k >= 2 else []) for k in range(4)]}
    p = comm_docs.parent / "late.jsonl"
    p.write_text(json.dumps(late) + "\n")
    got = {s["task"]: s for s in comm.build_tasks(str(p))}
    assert {t: s["skipped"] for t, s in got.items()} == {"task1": None, "task2": None, "task3": "no_input_image", "task4": None}
    assert got["task3"]["input_images"] == [] and len(got["task3"]["output_images"]) == 2


def _write_predictions(root: Path, sample_images) -> None:
    """A model's predictions in CoMM's layout next to what write_tasks wrote."""
    jpgs = [b for n, b in sample_images.items() if n.endswith(".jpg")]
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        task = json.loads((folder / "task.json").read_text())
        n_in = len(task["input_image_list"])
        steps = [s for s in re.split(r"\(\d+\) ", task["target"]) if s]
        if task["task"] == "task1":
            out = " ".join(f"({k}) {s.strip()} extra words" for k, s in enumerate(steps, 1))
            preds = []
        else:
            out = task["target"]
            preds = []
            for j in range(len(task["output_gt_image_list"])):
                name = f"predict_{n_in + j + 1}.jpg"
                (folder / name).write_bytes(jpgs[(j + len(folder.name)) % len(jpgs)])
                preds.append(name)
        results = {"model_input": task["model_input"], "model_output": out, "input_image_list": task["input_image_list"], "output_gt_image_list": task["output_gt_image_list"], "prediction_image_list": preds}
        (folder / "results.json").write_text(json.dumps(results))


def test_write_read_and_metrics_with_faults(tmp_path, comm_docs, sample_images):
    from interleaf.evaluate import comm, image_metrics, text_metrics

    out = tmp_path / "tasks"
    summary = comm.write_tasks(comm.build_tasks(str(comm_docs)), out)
    assert summary["written"] == {"task1": 6, "task2": 6, "task3": 5, "task4": 6} and summary["skipped"] == {"no_input_image": 2, "no_output_image": 3}
    # CoMM's numbering: one counter per sample, inputs first; task 1 keeps no GT outputs.
    t3 = json.loads((out / "comm-0001_task3" / "task.json").read_text())
    assert t3["input_image_list"] == ["input_1.jpg", "input_2.jpg"] and t3["output_gt_image_list"] == ["output_gt_3.jpg", "output_gt_4.png", "output_gt_5.jpg"]
    assert (out / "comm-0001_task3" / "origin" / "output_gt_4.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "tasks.jsonl").read_text().splitlines()) == 23
    _write_predictions(out, sample_images)
    # Faults: a missing and a broken results.json, a prediction path leaving the folder, a missing image file.
    (out / "comm-0002_task1" / "results.json").unlink()
    (out / "comm-0003_task1" / "results.json").write_text("{not json")
    r = json.loads((out / "comm-0002_task2" / "results.json").read_text())
    r["prediction_image_list"][0] = "../../../../etc/passwd"
    (out / "comm-0002_task2" / "results.json").write_text(json.dumps(r))
    (out / "comm-0003_task2" / sorted(p.name for p in (out / "comm-0003_task2").glob("predict_*"))[0]).unlink()

    t1 = comm.read_predictions(out, "task1")
    assert [s["error"] for s in t1 if s["error"]] == ["missing results.json", "results.json: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"]
    s1, per1 = comm.metrics(t1, "task1", tokenizer="simple", java_metrics=False)
    # Equal to the metrics on CoMM's pairs, computed directly.
    ok = [s for s in t1 if s["error"] is None]
    pred = [comm.step_texts(s["model_output"]) for s in ok]
    steps_p = [x for p, s in zip(pred, ok, strict=True) for x in p[: len(s["reference_steps"])]]
    steps_r = [x for p, s in zip(pred, ok, strict=True) for x in s["reference_steps"][: len(p)]]
    direct, _ = text_metrics(steps_p, steps_r, tokenizer="simple", java_metrics=False)
    whole, _ = text_metrics([" ".join(p) for p in pred], [" ".join(s["reference_steps"]) for s in ok], tokenizer="simple", java_metrics=False)
    for k in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert s1["step_level"][k] == pytest.approx(direct[k], rel=1e-12)
        assert s1["whole_text"][k] == pytest.approx(whole[k], rel=1e-12)
    assert s1["evaluated"] == 4 and s1["samples"] == 6 and s1["step_level"]["scored"] == len(steps_p)
    assert per1.filter(per1["error"].is_null())["cider"].null_count() == 0

    t2 = comm.read_predictions(out, "task2", references=str(comm_docs))
    bad = {s["data_id"]: s["image_errors"] for s in t2 if s["image_errors"]}
    assert "resolves outside the sample folder" in bad["comm-0002"][0] and "not found" in bad["comm-0003"][0]
    s2, per2 = comm.metrics(t2, "task2")
    ok2 = [s for s in t2 if s["error"] is None]
    ref_sum, ref_per = image_metrics([[g for g in s["pred_images"] if g is not None] for s in ok2], [s["gt_images"] for s in ok2], pairing="cross")
    assert s2["ssim"] == pytest.approx(ref_sum["ssim"], rel=1e-12) and s2["psnr"] == pytest.approx(ref_sum["psnr"], rel=1e-12)
    np.testing.assert_allclose(per2["ssim"].to_numpy(), ref_per["ssim"].to_numpy())
    assert s2["errors"] == {"image files": 2} and s2["evaluated"] == 6
    # Those samples are scored on their other images; their rows name what was left out.
    shown = dict(per2.select("data_id", "image_errors").iter_rows())
    assert "resolves outside the sample folder" in shown["comm-0002"] and "not found" in shown["comm-0003"]
    assert sum(v is not None for v in shown.values()) == 2
    # Index pairing: image i with image i, per-sample means; LPIPS paired the same way.
    lp = Path(__file__).parent / "fixtures" / "models" / "lpips-tiny"
    s2i, per2i = comm.metrics(t2, "task2", pairing="index", lpips_network=lp)
    first = ok2[0]
    pairs = list(zip(first["pred_images"], first["gt_images"], strict=False))
    _, direct_i = image_metrics([g for g, _ in pairs], [r for _, r in pairs])
    assert per2i["ssim"][0] == pytest.approx(direct_i["ssim"].mean(), rel=1e-12)
    from interleaf.evaluate import lpips

    _, lp_direct = lpips([g for g, _ in pairs], [r for _, r in pairs], lp)
    assert per2i["lpips"][0] == pytest.approx(lp_direct["lpips"].mean(), rel=1e-9) and s2i["lpips"] is not None
    # The summary is the mean over samples of those per-sample means, never pooled over pairs
    # (which would weigh a sample by its image count); an image without a partner is counted.
    for k in ("ssim", "lpips"):
        got = [v for v in per2i[k].to_list() if v is not None]
        assert len(got) > 1 and s2i[k] == pytest.approx(sum(got) / len(got), rel=1e-12)
    short = [dict(s) for s in t2]
    k = next(i for i, s in enumerate(short) if s["error"] is None and len(s["pred_images"]) > 1)
    short[k]["pred_images"] = short[k]["pred_images"][:-1]
    s_short, _ = comm.metrics(short, "task2", pairing="index")
    assert s_short["image_pairs_skipped"]["missing_generated"] == s2i["image_pairs_skipped"].get("missing_generated", 0) + 1
    # Task 1 needs reference steps: a folder without task.json and no references is an error per sample.
    (out / "comm-0004_task1" / "task.json").unlink()
    t1b = comm.read_predictions(out, "task1")
    s1b, _ = comm.metrics(t1b, "task1", tokenizer="simple", java_metrics=False)
    assert s1b["evaluated"] == 3 and s1b["errors"]["no reference steps for this data_id"] == 1
    t1c = comm.read_predictions(out, "task1", references=str(comm_docs))
    assert next(s for s in t1c if s["data_id"] == "comm-0004")["reference_steps"] is not None


def test_hostile_predictions_are_errors_of_their_sample(tmp_path, comm_docs, sample_images, monkeypatch):
    """A task.json that is not an object or whose reference steps are not texts, an image name
    with a NUL byte, one file named many times (read and held once; over the per-sample byte
    limit, the sample's error): each stays with its sample, and the metrics of the rest run."""
    from interleaf.evaluate import comm

    out = tmp_path / "tasks"
    comm.write_tasks(comm.build_tasks(str(comm_docs)), out)
    _write_predictions(out, sample_images)
    (out / "comm-0001_task1" / "task.json").write_text("[1, 2]")
    t = json.loads((out / "comm-0002_task1" / "task.json").read_text())
    (out / "comm-0002_task1" / "task.json").write_text(json.dumps({**t, "reference_steps": [{"no": "text"}]}))
    r = json.loads((out / "comm-0001_task2" / "results.json").read_text())
    (out / "comm-0001_task2" / "results.json").write_text(json.dumps({**r, "prediction_image_list": ["bad\u0000name.jpg", *r["prediction_image_list"]]}))
    r = json.loads((out / "comm-0002_task2" / "results.json").read_text())
    (out / "comm-0002_task2" / "results.json").write_text(json.dumps({**r, "prediction_image_list": r["prediction_image_list"][:1] * 500}))
    t1 = comm.read_predictions(out, "task1")
    by = {s["sample"]: s for s in t1}
    assert by["comm-0001_task1"]["reference_steps"] is None and by["comm-0002_task1"]["reference_steps"] is None
    s1, _ = comm.metrics(t1, "task1", tokenizer="simple", java_metrics=False)
    assert s1["errors"]["no reference steps for this data_id"] == 2 and s1["evaluated"] == 4
    t2 = comm.read_predictions(out, "task2")
    by = {s["sample"]: s for s in t2}
    assert "null byte" in by["comm-0001_task2"]["image_errors"][0]
    many = by["comm-0002_task2"]["pred_images"]
    assert len(many) == 500 and all(b is many[0] for b in many)  # one read, one object
    s2, per2 = comm.metrics(t2, "task2")
    assert s2["evaluated"] == 6
    monkeypatch.setattr(comm, "MAX_SAMPLE_IMAGE_BYTES", len(many[0]) * 100)
    t2b = comm.read_predictions(out, "task2")
    bad = next(s for s in t2b if s["sample"] == "comm-0002_task2")
    assert bad["error"].startswith("results.json: its image lists come to") and bad["pred_images"][0] is None


def test_unsafe_data_ids_stay_inside_the_output(tmp_path, sample_images):
    from interleaf.evaluate import comm

    img = next(iter(sample_images.values()))
    doc = {"doc_id": "../../escape", "meta": {"title": "x"}, "error": None, "nodes": [{"kind": "text", "text": "a", "image": None, "step": 0, "role": None, "error": None}, {"kind": "image", "text": None, "image": img, "step": 0, "role": None, "error": None}]}
    out = tmp_path / "o"
    comm.write_tasks([comm.build_task(doc, "task1")], out)
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert folder.parent == out and ".." not in folder.name and folder.name.endswith("_task1")
    assert json.loads((folder / "task.json").read_text())["data_id"] == "../../escape"
    assert not (tmp_path.parent / "escape_task1").exists()


def test_step_parsing_follows_comm():
    from interleaf.evaluate import comm

    assert comm.step_texts("intro (1) a b  (2)c (3) d <IMAGE> (4) ") == ["a b", "d <IMAGE>", ""]
    steps, used = comm.parse_steps("(1) a <IMAGE> b (2) <IMAGE> c <IMAGE> (3) d", ["i1", "i2"])
    # Images are given out in order; a step stops at a marker once they are used up.
    assert steps == [[("text", "(1)"), ("text", "a"), ("image", "i1"), ("text", "b")], [("text", "(2)"), ("image", "i2"), ("text", "c")], [("text", "(3)"), ("text", "d")]] and used == 2
    steps, used = comm.parse_steps("(1) <IMAGE> (2) <IMAGE> (3) <IMAGE>", list(range(5)), previous=8)
    assert used == 2 and len(steps) == 2


# --- the judge ----------------------------------------------------------------------------------


def _answers(prompt_of):
    from llm_server import user_text

    def answer(body) -> str:
        name = prompt_of[body["messages"][0]["content"]]
        text = user_text(body)
        images = sum(1 for p in body["messages"][1]["content"] if p["type"] == "image_url")
        if name == "task_1":
            return 'Sure. {"Completeness": {"Summarize": "s", "Justification": "j", "Score": 8}, "Text Fidelity to Image": {"overall_score": "6", "Justification": "j"}}'
        if name.startswith("document_completeness"):
            body_ = {"Image_Coherence": {"overall_score": {"style_consistency": 7, "entity_consistency": 5, "trend_consistency": "NA", "overall_consistency": 6, "justification": "j"}}, "Image_Quality": {"Score": 9, "Justification": "j"}}
            if not name.endswith("task2"):
                body_["Completeness"] = {"Score": 4, "Justification": "j"}
            return json.dumps({"scores": body_})
        if name.startswith("texts_to_image"):
            after = text.split("OUTPUT:")[-1]
            ids = [int(x) for x in re.findall(r"<Img_(\d+)>", after)]
            return "```json\n" + json.dumps({"Tasks": {"Create an Interleaved Text-Image Document": {f"Content of Image {i}": f"picture {i}" for i in ids}}}) + "\n```"
        assert name == "descriptions_gt_images_consistency"
        return json.dumps({"Consistency": {"image_1_score": 3, "overall_score": images, "Justification": "j"}})

    return answer


def test_judge_protocol_against_scripted_server(tmp_path, comm_docs, sample_images, scripted):
    from llm_server import Fault, scripted_client, user_text

    from interleaf.evaluate import comm
    from interleaf.evaluate import judge as ej

    out = tmp_path / "tasks"
    comm.write_tasks(comm.build_tasks(str(comm_docs)), out)
    _write_predictions(out, sample_images)
    prompts = ej.prompts()
    prompt_of = {v: k for k, v in prompts.items()}
    scripted.answer = _answers(prompt_of)
    # comm-0004's answers are never usable; comm-0003's first ones are not, its retry's are.
    # (The judge sees the steps, not the title: CoMM's parser drops the text before "(1)".)
    always, once = "a tabby cat looks towards", "the rocket stands in the middle"
    scripted.fault = lambda body, attempt: Fault(content="I cannot comply.") if always in json.dumps(body) or (once in json.dumps(body) and attempt == 1) else None

    with scripted_client(scripted) as client:
        t3 = comm.read_predictions(out, "task3")
        scripted.reset()
        scores = ej.judge(t3, client, "task3")
    rows = {r["data_id"]: r for r in scores.iter_rows(named=True)}
    good = rows["comm-0001"]
    # NA counts as 0; the consistency call saw the 3 predicted output images.
    assert (good["style_consistency"], good["trend_consistency"], good["completeness"], good["image_quality"], good["text_fidelity"]) == (7.0, 0.0, 4.0, 9.0, 3.0)
    assert rows["comm-0003"]["error"] is None and rows["comm-0003"]["text_fidelity"] is not None
    assert rows["comm-0004"]["error"].startswith("unusable judge answer") and rows["comm-0004"]["completeness"] is None
    # The protocol: call 1 shows INPUT + OUTPUT with every image, call 2 hides the output's images
    # but keeps their tags, numbered on from the input's; call 3 pairs descriptions and images.
    reqs = [b for b in scripted.requests if "Eileen Collins stands" in json.dumps(b) or "picture 4" in json.dumps(b)]
    by_name = {prompt_of[b["messages"][0]["content"]]: b for b in reqs}
    c1, c2 = by_name["document_completeness_image_coherence"], by_name["texts_to_image_descriptions"]
    assert sum(p["type"] == "image_url" for p in c1["messages"][1]["content"]) == 5
    assert sum(p["type"] == "image_url" for p in c2["messages"][1]["content"]) == 2
    assert re.findall(r"<Img_(\d+)>", user_text(c2).split("OUTPUT:")[1]) == ["2", "3", "4"]
    assert user_text(c1).startswith("INPUT:\n(1)\nStart with the whole portrait") and c1["temperature"] == 1.0
    assert "According to the above steps, can you generate the rest steps?" in user_text(c1)
    c3 = by_name["descriptions_gt_images_consistency"]
    assert user_text(c3).startswith("<Description_0> Description:picture 2 </Description_0> \n<Img_0>\n</Img_0>\n<Description_1> Description:picture 3")
    assert sum(p["type"] == "image_url" for p in c3["messages"][1]["content"]) == 3
    agg = ej.aggregate(scores)
    assert agg["judged"] == 4 and agg["failed"] == 1 and agg["trend_consistency"] == 0.0 and agg["style_consistency"] == 7.0
    assert sum(1 for b in scripted.requests if always in json.dumps(b)) == 3 * 2  # three attempts of the two first calls

    # Task 1: one call, each predicted step text followed by its input step's images.
    with scripted_client(scripted) as client:
        scripted.fault = None
        scripted.reset()
        t1 = comm.read_predictions(out, "task1")
        s1 = ej.judge(t1, client, "task1", temperature=None)
    assert s1["completeness"].to_list() == [8.0] * 6
    assert s1["text_fidelity"][0] == 6.0
    assert all("temperature" not in b for b in scripted.requests) and len(scripted.requests) == 6
    t1_user = scripted.requests[0]["messages"][1]["content"]
    assert t1_user[0] == {"type": "text", "text": " (1) " + t1[0]["model_output"].split("(1) ")[1].split(" (2)")[0]} and t1_user[1]["type"] == "image_url"
    # Task 2: CoMM's second call keeps the images (its quirk) unless asked to hide them.
    for hide, expected in ((False, True), (True, False)):
        with scripted_client(scripted) as client:
            scripted.reset()
            t2 = comm.read_predictions(out, "task2")
            s2 = ej.judge(t2, client, "task2", task2_hide_images=hide)
        desc = [b for b in scripted.requests if prompt_of[b["messages"][0]["content"]] == "texts_to_image_descriptions_task2"]
        assert any(p["type"] == "image_url" for p in desc[0]["messages"][1]["content"]) is expected
        assert s2["error"].null_count() == 6 and "completeness" not in s2.columns


def test_judge_reads_comms_prompt_files(tmp_path):
    from interleaf.evaluate import judge as ej

    with pytest.raises(FileNotFoundError, match="task_1.json"):
        ej.prompts(tmp_path)
    for name in ej.PROMPT_FILES:
        (tmp_path / f"{name}.json").write_text(f"prompt {name}")
    assert ej.prompts(tmp_path)["task_1"] == "prompt task_1"


# --- the CLI and the report -----------------------------------------------------------------------


def test_eval_cli_end_to_end(tmp_path, comm_docs, sample_images, scripted, capsys):
    from browser import find_chromium, load
    from llm_server import user_text

    from interleaf.cli import main
    from interleaf.evaluate import clip_image_similarity
    from interleaf.evaluate import judge as ej
    from interleaf.models import load as load_model

    tasks = tmp_path / "tasks"
    assert main(["eval", "tasks", str(comm_docs), "--out", str(tasks)]) == 0
    # Before the model has run there is nothing to evaluate: an error, not scores of nothing.
    assert main(["eval", "comm", str(tasks), "--task", "task1", "--out", str(tmp_path / "r0"), "--no-java"]) == 2
    assert "none of the 6 *_task1 sample folders" in capsys.readouterr().err and not (tmp_path / "r0").exists()
    assert main(["eval", "synjudge", str(tasks), "--out", str(tmp_path / "r0"), "--base-url", scripted.url, "--model", "scripted"]) == 2
    err = capsys.readouterr().err
    assert "sample folders" in err and "missing results.json" in err and not (tmp_path / "r0").exists()
    _write_predictions(tasks, sample_images)
    (tasks / "comm-0002_task1" / "results.json").write_text("[1, 2]")

    r1 = tmp_path / "r1"
    assert main(["eval", "comm", str(tasks), "--task", "task1", "--out", str(r1), "--tokenizer", "simple", "--no-java"]) == 0
    m1 = json.loads((r1 / "metrics.json").read_text())
    assert m1["metrics"]["evaluated"] == 5 and m1["metrics"]["errors"] == {"results.json": 1} and m1["metrics"]["step_level"]["tokenizer"] == "simple"
    assert m1["metrics"]["step_level"]["unavailable"]["METEOR"].startswith("not asked")
    html = (r1 / "report.html").read_text()
    assert "Worst examples by cider" in html and "data:image/jpeg;base64," in html and "<script" not in html
    import polars as pl

    ex = pl.read_parquet(r1 / "examples.parquet")
    assert ex.height == 6 and ex.filter(pl.col("error").is_not_null())["sample"].to_list() == ["comm-0002_task1"]

    # Task 2 with CLIP-I and the judge on the scripted server.
    prompt_of = {v: k for k, v in ej.prompts().items()}
    scripted.answer = _answers(prompt_of)
    clip_dir = Path(__file__).parent / "fixtures" / "models" / "clip-tiny"
    r2 = tmp_path / "r2"
    nets = Path(__file__).parent / "fixtures" / "models"
    argv = ["eval", "comm", str(tasks), "--task", "task2", "--out", str(r2), "--clip", str(clip_dir), "--fid-network", str(nets / "inception-tiny"), "--lpips-network", str(nets / "lpips-tiny")]
    assert main([*argv, "--judge", "--base-url", scripted.url, "--model", "scripted", "--quiet"]) == 0
    m2 = json.loads((r2 / "metrics.json").read_text())
    assert m2["judge"]["judged"] == 6 and m2["judge"]["image_quality"] == 9.0 and m2["metrics"]["clip_i"] is not None
    ex2 = pl.read_parquet(r2 / "examples.parquet")
    assert {"ssim", "psnr", "clip_i", "lpips", "text_fidelity", "judge_error"} <= set(ex2.columns)
    # FID over all generated against all reference images, as CoMM computes it.
    from interleaf.evaluate import comm, fid

    t2 = [s for s in comm.read_predictions(tasks, "task2") if s["error"] is None]
    direct = fid([g for s in t2 for g in s["pred_images"]], [r for s in t2 for r in s["gt_images"]], nets / "inception-tiny")
    assert m2["metrics"]["fid"]["fid"] == pytest.approx(direct["fid"], rel=1e-9) and m2["metrics"]["inception_score_generated"]["images"] == 17
    assert m2["metrics"]["lpips"] == pytest.approx(ex2["lpips"].mean(), rel=1e-9)
    assert "Worst examples by clip_i" in (r2 / "report.html").read_text()
    # Every predicted image missing: results.json parse, yet no sample gives a metric; the
    # metrics are written and the exit code says so.
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tasks, bare)
    for f in bare.glob("*_task2/predict_*"):
        f.unlink()
    capsys.readouterr()
    assert main(["eval", "comm", str(bare), "--task", "task2", "--out", str(tmp_path / "r-bare")]) == 1
    assert "no sample gave a metric" in capsys.readouterr().err
    assert json.loads((tmp_path / "r-bare" / "metrics.json").read_text())["metrics"]["evaluated"] == 0
    with pytest.raises(SystemExit):
        main(["eval", "comm", str(tasks), "--task", "task5", "--out", str(r2)])
    assert main(["eval", "comm", str(tasks), "--task", "task2", "--out", str(r2), "--judge"]) == 2  # no endpoint: a clear error

    # CLIP-I over two image folders paired by name (GILL's protocol), missing pairs counted.
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    names = sorted(n for n in sample_images if n.endswith(".jpg"))[:5]
    for i, n in enumerate(names):
        (ref / f"s{i}.jpg").write_bytes(sample_images[n])
        if i != 2:
            (gen / f"s{i}.jpg").write_bytes(sample_images[names[(i + 1) % len(names)]])
    (gen / "extra.jpg").write_bytes(b"not an image")
    rc = tmp_path / "rc"
    assert main(["eval", "clip-i", str(gen), str(ref), "--clip", str(clip_dir), "--out", str(rc)]) == 0
    mc = json.loads((rc / "metrics.json").read_text())
    clip = load_model(clip_dir, kind="clip")
    gb = [(gen / f"s{i}.jpg").read_bytes() if i != 2 else None for i in range(5)]
    rb = [(ref / f"s{i}.jpg").read_bytes() for i in range(5)]
    direct, _ = clip_image_similarity(gb, rb, clip)
    assert mc["metrics"]["clip_i"] == pytest.approx(direct["clip_i"], abs=1e-7)
    assert mc["metrics"]["scored"] == 4 and mc["metrics"]["skipped"] == {"missing_generated": 1, "missing_reference": 1}

    # SynJudge over the predictions folder.
    scripted.reset()
    scripted.answer = lambda body: '{"tcc": 4, "icc": 3, "iq": 5, "its": 2}' if "Question:" in user_text(body) else "?"
    rs = tmp_path / "rs"
    assert main(["eval", "synjudge", str(tasks), "--task", "task2", "--task", "task4", "--out", str(rs), "--base-url", scripted.url, "--model", "scripted", "--quiet"]) == 0
    ms = json.loads((rs / "metrics.json").read_text())
    assert ms["synjudge"]["scored"] == 12 and ms["synjudge"]["tcc"]["mean"] == 4.0 and ms["synjudge"]["overall"] == pytest.approx(3.5)
    assert "<IMAGE>" not in json.dumps(scripted.requests[0]["messages"][1]["content"][0])
    # An endpoint that answers nothing: the metrics are written, and the exit code says so.
    capsys.readouterr()
    down = ["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-retries", "0", "--quiet"]
    assert main(["eval", "synjudge", str(tasks), "--task", "task2", "--out", str(tmp_path / "rs-down"), *down]) == 1
    assert "the judge failed on every sample (6)" in capsys.readouterr().err and (tmp_path / "rs-down" / "metrics.json").exists()
    assert main(["eval", "comm", str(tasks), "--task", "task2", "--out", str(tmp_path / "rc-down"), "--judge", "--attempts", "1", *down]) == 1
    assert "the judge failed on every sample" in capsys.readouterr().err
    # A refused request (401) is not asked again per attempt: CoMM's attempts are for answers
    # that cannot be parsed.
    from llm_server import Fault

    sent = []
    for attempts in ("1", "3"):
        scripted.reset()
        scripted.fault = lambda body, attempt: Fault(status=401)
        assert main(["eval", "comm", str(tasks), "--task", "task2", "--out", str(tmp_path / f"rc-401-{attempts}"), "--judge", "--attempts", attempts, "--base-url", scripted.url, "--model", "m", "--quiet"]) == 1
        sent.append(len(scripted.requests))
    scripted.fault = None
    assert sent[0] == sent[1] > 0

    if not find_chromium():
        pytest.skip("Chromium is not installed: everything above passed; the report page was not opened")
    page = load((r2 / "report.html").as_uri())
    assert all(u.startswith(("file://", "data:")) for u in page.requests), page.requests
    assert not page.exceptions and not [c for c in page.console if c[0] in ("error", "warning")]


def test_task1_whole_text_is_cut_as_comms_and_an_empty_output_scores_as_pycocoevalcap():
    """Whole text: the predicted steps against the reference steps cut to the predicted count
    (CoMM's parse_data_for_task1), so an output with no step is the pair ("", "") that
    pycocoevalcap scores ROUGE-L 1.0, and one correct step is a perfect whole text."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from interleaf.evaluate import comm

    ref = ["mix the flour and water", "knead the dough for ten minutes", "let it rise for an hour", "bake at 220 degrees"]
    outputs = {"empty": "", "one-step": "(1) mix the flour and water", "two-wrong": "(1) knead the dough (2) bake it", "all": " ".join(f"({k}) {t}" for k, t in enumerate(ref, 1))}
    samples = [{"sample": n, "data_id": n, "error": None, "reference_steps": ref, "model_output": o, "image_errors": [], "input_images": [], "gt_images": [], "pred_images": []} for n, o in outputs.items()]
    summary, per = comm.metrics(samples, "task1", tokenizer="none", java_metrics=False)
    # The pairs as CoMM builds them: both step lists cut to the shorter, then joined by spaces.
    cut = {n: min(len(comm.step_texts(o)), len(ref)) for n, o in outputs.items()}
    gts = {i: [" ".join(ref[: cut[n]])] for i, n in enumerate(outputs)}
    res = {i: [" ".join(comm.step_texts(o)[: cut[n]])] for i, (n, o) in enumerate(outputs.items())}
    assert res[0] == gts[0] == [""] and gts[1] == ["mix the flour and water"]
    rouge, rouge_each = Rouge().compute_score(gts, res)
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_each = Cider().compute_score(gts, res)
    np.testing.assert_allclose(per["rouge_l"].to_numpy(), rouge_each, atol=1e-9)
    np.testing.assert_allclose(per["bleu_1"].to_numpy(), bleu_each[0], atol=1e-9)
    np.testing.assert_allclose(per["cider"].to_numpy(), cider_each, atol=1e-6)
    assert per["rouge_l"].to_list()[:2] == [1.0, 1.0] and per["cider"][0] == 0.0 and per["predicted_steps"].to_list() == [0, 1, 2, 4]
    assert summary["whole_text"]["ROUGE-L"] == pytest.approx(rouge) and summary["whole_text"]["BLEU-1"] == pytest.approx(bleu[0])


def test_eval_comm_checks_the_judge_settings_before_reading_or_scoring(tmp_path, monkeypatch, capsys):
    """--judge's endpoint, model and prompt folder are checked first: the predictions folder here
    does not even exist, so an error about it would mean the metrics came first."""
    from interleaf.cli import main

    monkeypatch.delenv("INTERLEAF_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("INTERLEAF_LLM_MODEL", raising=False)
    argv = ["eval", "comm", str(tmp_path / "no-such-predictions"), "--task", "task1", "--out", str(tmp_path / "out"), "--judge"]
    assert main(argv) == 2
    assert "--judge needs an endpoint" in capsys.readouterr().err
    assert main([*argv, "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert "no LLM model configured" in capsys.readouterr().err
    assert main([*argv, "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--prompts", str(tmp_path)]) == 2
    assert "prompt folder" in capsys.readouterr().err
    assert main([*argv, "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]) == 2  # now the folder's turn
    assert "no-such-predictions" in capsys.readouterr().err and not (tmp_path / "out").exists()


# --- CoMM's negative samples -------------------------------------------------------------------


def _steps(df: pl.DataFrame, doc_id: str) -> list[list[tuple]]:
    d = df.filter(pl.col("doc_id") == doc_id).sort("pos")
    out: dict[int, list[tuple]] = {}
    for step, kind, text, ref in d.select("step", "kind", "text", "image_ref").iter_rows():
        out.setdefault(step, []).append((kind, text, ref))
    return [out[k] for k in sorted(out)]


def test_negatives_shuffle_texts_images_both_or_steps_and_nothing_else(comm_docs):
    """CoMM's four negatives of every document: each moves what its kind says and nothing
    else, is never the document itself, and depends only on the seed (not the batching)."""
    import interleaf
    from interleaf.evaluate.negatives import NEGATIVE_KINDS, negatives

    nodes = pl.concat(list(interleaf.read(comm_docs)))
    neg, summary = negatives(nodes, seed=3)
    assert summary["documents"] == 7
    # one-step: nothing to shuffle; no-image: two text steps, no images; two-texts: two steps
    # with both, whose two images are the same file (trading them gives the document back).
    assert summary["made"] == {"texts": 6, "images": 4, "both": 5, "steps": 6}
    assert summary["skipped"] == {"too_few_image_steps": 2 + 1, "too_few_text_steps": 2, "too_few_steps": 1, "unchanged": 1}
    blocks = lambda steps, kind: [[n for n in st if n[0] == kind] for st in steps]  # noqa: E731
    lead = lambda steps: [st[0][0] for st in steps]  # noqa: E731
    for doc_id in nodes.get_column("doc_id").unique(maintain_order=True).to_list():
        orig = _steps(nodes, doc_id)
        for kind in NEGATIVE_KINDS:
            got = _steps(neg, f"{doc_id}#{kind}")
            if not got:
                continue
            assert got != orig, (doc_id, kind)
            assert sorted(n for st in got for n in st) == sorted(n for st in orig for n in st)  # the same nodes
            if kind == "steps":
                assert sorted(map(tuple, got)) == sorted(map(tuple, orig))  # whole steps moved
                continue
            assert lead(got) == lead(orig)  # a step that began with its text still does
            for part in ("text", "image"):
                moved = kind == "both" or kind == part + "s"
                distinct = len({tuple(b) for b in blocks(orig, part)}) > 1  # else a trade changes nothing
                if not moved or distinct:
                    assert (blocks(got, part) != blocks(orig, part)) == moved, (doc_id, kind, part)
                assert sorted(map(tuple, blocks(got, part))) == sorted(map(tuple, blocks(orig, part)))
    # Seeded: the same negatives from one-document batches; another seed gives others.
    again, _ = negatives(interleaf.read(comm_docs, batch_size=1), seed=3)
    assert again.drop("doc_index").equals(neg.drop("doc_index"))
    assert not negatives(nodes, seed=4)[0].equals(neg)
    assert neg.get_column("doc_index").unique(maintain_order=True).to_list() == list(range(21))


def test_negatives_write_as_comm_documents_and_scale_without_a_step_per_document(tmp_path, comm_docs):
    import interleaf
    from interleaf.evaluate.negatives import negatives

    neg, _ = negatives(str(comm_docs), ["steps"], seed=0)
    out = interleaf.write(neg, tmp_path / "neg.jsonl", "comm")[0]
    back = pl.concat(list(interleaf.read(out, image_root=str(comm_docs.parent))))
    assert back.select("doc_id", "pos", "kind", "step", "text").equals(neg.select("doc_id", "pos", "kind", "step", "text"))
    # OBELICS-like documents without steps: nodes are the units; 20,000 documents at once.
    n = 20_000
    docs = pl.DataFrame(
        {
            "doc_id": [f"d{i // 4}" for i in range(4 * n)],
            "doc_index": [i // 4 for i in range(4 * n)],
            "pos": [i % 4 for i in range(4 * n)],
            "kind": ["text", "image", "text", "image"] * n,
            "text": [f"t{i}" if i % 2 == 0 else None for i in range(4 * n)],
            "image_ref": [None if i % 2 == 0 else f"i{i}" for i in range(4 * n)],
        }
    )
    docs = interleaf.schema.conform(docs)
    neg, summary = negatives(docs, ["texts", "images"], seed=0)
    assert summary["made"] == {"texts": n, "images": n}
    # Two text nodes and two images: the only other order swaps them; each stays in its slot kind.
    first = neg.filter(pl.col("doc_id") == "d0#texts").get_column("text").to_list()
    assert first == ["t2", None, "t0", None]
    with pytest.raises(ValueError, match="kinds must be some of"):
        negatives(docs, ["words"])


def test_negatives_cli(tmp_path, comm_docs, capsys):
    from interleaf.cli import main

    out = tmp_path / "neg.jsonl"
    assert main(["eval", "negatives", str(comm_docs), "--out", str(out), "--kind", "texts", "--kind", "steps", "--seed", "3", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["made"] == {"texts": 6, "steps": 6} and summary["files"] == [str(out)]
    ids = [json.loads(line)["data_id"] for line in out.read_text().splitlines()]
    assert len(ids) == 12 and ids[:2] == ["comm-0001#texts", "comm-0001#steps"]


def test_negatives_keep_layouts_fixed_nodes_step_numbers_and_see_through_gaps():
    """A block fills its new step's places of its kind (texts stay put in an images negative);
    a node outside every step keeps its place; steps keep their numbers; a document read with
    gaps in its positions (a node table after a node filter) is still seen to come back whole."""
    from interleaf import schema as S
    from interleaf.evaluate.negatives import iter_negatives, negatives

    def doc(doc_id, index, rows):
        return pl.DataFrame(
            {"doc_id": doc_id, "doc_index": index, "pos": [r[0] for r in rows], "kind": [r[1] for r in rows], "step": [r[2] for r in rows], "text": [r[3] if r[1] == "text" else None for r in rows], "image_ref": [r[3] if r[1] == "image" else None for r in rows]},
            schema_overrides={"step": pl.Int32, "pos": pl.Int32},
        )

    a = doc("a", 0, [(0, "text", 1, "A1"), (1, "image", 1, "x"), (2, "text", 1, "A2"), (3, "text", None, "NOTE"), (4, "text", 3, "B1"), (5, "image", 3, "y"), (6, "text", 3, "B2"), (7, "text", 7, "C1"), (8, "image", 7, "z")])
    gap = doc("gap", 1, [(0, "text", 0, "P"), (1, "image", 0, "same"), (3, "text", 1, "Q"), (4, "image", 1, "same")])
    nodes = S.conform(pl.concat([a, gap]))
    neg, summary = negatives(nodes, seed=0)
    assert summary["skipped"] == {"unchanged": 1}  # gap's two equal images traded
    for kind in ("texts", "images", "both", "steps"):
        got = neg.filter(pl.col("doc_id") == f"a#{kind}").sort("pos")
        seq = list(zip(got["kind"], got["step"], (t or r for t, r in zip(got["text"], got["image_ref"], strict=True)), strict=True))
        assert seq[3] == ("text", None, "NOTE"), (kind, seq)  # the note between steps stays
        assert sorted({s for _, s, _ in seq if s is not None}) == [1, 3, 7]
        if kind == "images":  # texts where they were, images in the image places
            assert [v for k, _, v in seq if k == "text"] == ["A1", "A2", "NOTE", "B1", "B2", "C1"]
            assert [k for k, _, _ in seq] == ["text", "image", "text", "text", "text", "image", "text", "text", "image"]
    # Batch by batch: the same documents, numbered on across batches.
    batches = list(iter_negatives([nodes.filter(pl.col("doc_index") == 0), nodes.filter(pl.col("doc_index") == 1)], seed=0))
    assert pl.concat(batches).equals(neg)


def test_negatives_of_damaged_input_count_it_and_go_on(tmp_path, comm_docs):
    """A malformed line and a document whose image file is missing: the first is skipped and
    counted per kind, the second still gives negatives (its node keeps its error); the rest go on."""
    from interleaf.evaluate.negatives import negatives

    bad = tmp_path / "bad.jsonl"
    missing = {"data_id": "missing", "title": "M", "step_info": [[{"type": "text", "content": "a"}, {"type": "image", "image_path": "images/nowhere.jpg"}], [{"type": "text", "content": "b"}, {"type": "image", "image_path": "images/coffee.jpg"}]]}
    bad.write_text(comm_docs.read_text() + '{"data_id": "broken", "step_info": [[\n' + json.dumps(missing) + "\n")
    neg, summary = negatives(str(bad), ["texts", "steps"], seed=0)
    assert summary["documents"] == 9 and summary["skipped"]["unreadable_document"] == 2
    assert summary["made"] == {"texts": 7, "steps": 7}
    m = neg.filter(pl.col("doc_id") == "missing#steps")
    assert m.height == 4 and m.filter(pl.col("error").is_not_null()).get_column("error").struct.field("kind").to_list() == ["missing_image"]
