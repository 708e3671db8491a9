"""The LLM stages (SynJudge, CoMM's judge, AITQE, SEIR) on the scripted server, where answers and
faults are chosen per request, and end to end on a real llama.cpp server (tiny random GGUF:
gibberish but schema-valid answers; the plumbing, counts and errors are what is checked)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from conftest import read_all
from llm_server import Fault, count_images, scripted_client, user_text

from interleaf import enhance, judge, refine
from interleaf.llm import Client

BRACKET = "[Text Content Completeness: {}; Image Content Completeness: {}; Image Quality: {}; Image-Text Synergy: {}]"


def client(srv, **kw) -> Client:
    return scripted_client(srv, **kw)


def question_of(body) -> str:
    m = re.search(r"Question:\n(.*?)\n\nAnswer text:", user_text(body), re.S)
    return m.group(1) if m else ""


# -- SynJudge -------------------------------------------------------------------------------------


def test_synjudge_rules_failures_and_aggregate(scripted, sample_images):
    img = next(iter(sample_images.values()))
    answers = {
        "full": BRACKET.format(4, 3, 5, 4),
        "no-text": BRACKET.format(4, 3, 5, 4),
        "no-image": BRACKET.format(2, 5, 5, 5),
        "prose": "Overall a decent answer, I would say four out of five.",
        "range": BRACKET.format(9, 3, 5, 4),
        "json": '{"tcc": 1, "icc": 2, "iq": 3, "its": 2}',
        "mixed": "Scores below.\n" + BRACKET.format(5, 5, 4, 3),
    }
    scripted.answer = lambda body: answers.get(question_of(body), "?")
    scripted.fault = lambda body, attempt: Fault(status=500) if question_of(body) == "down" else None
    samples = [
        {"question": "full", "answer": "An answer.", "image": img},
        {"question": "no-text", "answer": "  ", "image": img},
        {"question": "no-image", "answer": "Text only.", "image": None},
        {"question": "nothing", "answer": None, "image": None},
        {"question": "prose", "answer": "a", "image": img},
        {"question": "range", "answer": "a", "image": img},
        {"question": "broken-image", "answer": "a", "image": b"\x89PNG broken"},
        {"question": "down", "answer": "a", "image": img},
        {"question": "json", "answer": "a", "image": img},
        {"question": "mixed", "answer": "a", "image": img},
    ]
    with client(scripted) as c:
        df = judge.synjudge(samples, c, output="bracket")
        stats = c.last_stats
    assert df.height == len(samples) and df.columns == ["tcc", "icc", "iq", "its", "raw", "error"]
    rows = df.to_dicts()
    assert [rows[0][k] for k in ("tcc", "icc", "iq", "its")] == [4, 3, 5, 4]
    assert [rows[1][k] for k in ("tcc", "icc", "iq", "its")] == [0, 3, 5, 0]  # missing text: TCC = ITS = 0
    assert [rows[2][k] for k in ("tcc", "icc", "iq", "its")] == [2, 0, 0, 0]  # missing image: ICC = IQ = ITS = 0
    assert [rows[3][k] for k in ("tcc", "icc", "iq", "its")] == [0, 0, 0, 0] and rows[3]["raw"] is None  # no request
    assert rows[4]["tcc"] is None and rows[4]["error"].startswith("parse: SynJudge format not found") and rows[4]["raw"] == answers["prose"]
    assert rows[5]["tcc"] is None and "tcc: 9 is outside 0-5" in rows[5]["error"]
    assert rows[6]["tcc"] is None and rows[6]["error"].startswith("image: ")
    assert rows[7]["tcc"] is None and "HTTP 500" in rows[7]["error"]
    assert [rows[8][k] for k in ("tcc", "icc", "iq", "its")] == [1, 2, 3, 2]
    assert [rows[9][k] for k in ("tcc", "icc", "iq", "its")] == [5, 5, 4, 3]
    sent = {question_of(b) for b in scripted.requests}
    assert "nothing" not in sent and "broken-image" not in sent
    assert stats.requests == 8 and stats.failed == 1
    # Bracket mode asks for the published line, without a schema; images go as data URLs.
    body = next(b for b in scripted.requests if question_of(b) == "full")
    assert "response_format" not in body and "[Text Content Completeness: a;" in user_text(body) and count_images(body) == 1
    agg = judge.aggregate(df)
    ok = df.filter(pl.col("error").is_null())
    assert (agg["n"], agg["scored"], agg["failed"]) == (10, 6, 4)
    for d in ("tcc", "icc", "iq", "its"):
        v = ok[d].cast(pl.Float64).to_numpy()
        assert agg[d]["mean"] == pytest.approx(v.mean()) and agg[d]["var"] == pytest.approx(v.var())
    assert agg["overall"] == pytest.approx(np.mean([agg[d]["mean"] for d in ("tcc", "icc", "iq", "its")]))


def test_synjudge_json_mode_sends_the_schema(scripted):
    scripted.answer = lambda body: '{"tcc": 5, "icc": 0, "iq": 0, "its": 3}'
    with client(scripted) as c:
        df = judge.synjudge([{"question": "q", "answer": "a", "image": None}], c)
    fmt = scripted.requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and set(fmt["json_schema"]["schema"]["required"]) == {"tcc", "icc", "iq", "its"}
    assert df.row(0)[:4] == (5, 0, 0, 0)


def test_synjudge_on_a_node_batch(scripted, tmp_path, sample_images):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(next(iter(sample_images.values())))
    rows = [
        {"id": "x1", "image": "images/a.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A photo."}]},
        {"id": "x2", "image": "images/missing.jpg", "conversations": [{"from": "human", "value": "Why?"}, {"from": "gpt", "value": "Because."}]},
    ]
    path = tmp_path / "llava.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    nodes = read_all(str(path), progress=False)
    scripted.answer = lambda body: BRACKET.format(3, 3, 3, 3)
    with client(scripted) as c:
        df = judge.synjudge(nodes, c)
    assert df["doc_id"].to_list() == ["x1", "x2"]
    assert df.row(0, named=True)["its"] == 3 and df.row(0, named=True)["error"] is None
    # x2's image file is missing: the document's node carries the error, which the row keeps.
    assert df.row(1, named=True)["error"] is not None
    text = user_text(scripted.requests[0])
    assert "What is this?" in question_of(scripted.requests[0]) and "A photo." in text


# -- CoMM's judge ---------------------------------------------------------------------------------


def test_comm_judge_serialises_as_comm(scripted, sample_dir):
    nodes = read_all(str(sample_dir / "comm.jsonl"), progress=False)
    scripted.answer = lambda body: f'Here you go: {{"development": 8, "completeness": 7, "alignment": {min(count_images(body), 10)},}}'
    with client(scripted) as c:
        df = judge.comm(nodes, c)
    docs = nodes.group_by("doc_index", maintain_order=True).agg(pl.col("doc_id").first(), (pl.col("kind") == "image").sum().alias("images"))
    assert df["doc_id"].to_list() == docs["doc_id"].to_list()
    assert df["alignment"].to_list() == docs["images"].to_list() and df["error"].null_count() == df.height
    for body, n in zip(scripted.requests, docs["images"].to_list(), strict=True):
        text = user_text(body)
        assert text.startswith("Document:\nTitle: ") and "\n(1) " in text
        assert text.count("<IMAGE>") == count_images(body) == n
        assert body["response_format"]["json_schema"]["schema"]["required"] == ["development", "completeness", "alignment"]
    scripted.reset()
    with client(scripted) as c:
        df1 = judge.comm(nodes, c, max_images=1)
        df0 = judge.comm(nodes, c, images=False)
    assert all(count_images(b) == 1 for b in scripted.requests[: df1.height])
    assert "<IMAGE not shown>" in user_text(scripted.requests[0])
    text_only = scripted.requests[df1.height :]
    assert all(count_images(b) == 0 and "<IMAGE>" in user_text(b) and "alignment" not in b["response_format"]["json_schema"]["schema"]["properties"] for b in text_only)
    assert df0["alignment"].null_count() == df0.height and df0["development"].to_list() == [8] * df0.height
    agg = judge.aggregate(df0, ["development", "completeness"])
    assert agg["development"]["mean"] == 8 and agg["scored"] == df0.height
    # By default the view comm did not ask (alignment, null in every row) is left out.
    assert judge.aggregate(df0) == agg


def test_aggregate_leaves_out_only_dimensions_no_row_scored():
    df = pl.DataFrame({"development": [7, None, 5], "completeness": [6, 6, None], "alignment": [None, None, None]}, schema=dict.fromkeys(judge.COMM_VIEWS, pl.Int8))
    agg = judge.aggregate(df)
    assert "alignment" not in agg and agg["scored"] == 1 and agg["failed"] == 2 and agg["overall"] == 6.5
    # Nothing scored anywhere: every dimension counts, every row failed.
    none = df.with_columns(pl.lit(None, pl.Int8).alias("development"), pl.lit(None, pl.Int8).alias("completeness"))
    agg = judge.aggregate(none)
    assert agg["scored"] == 0 and agg["failed"] == 3 and agg["alignment"] == {"mean": None, "var": None} and agg["overall"] is None
    # Named dimensions are taken as given.
    assert judge.aggregate(df, list(judge.COMM_VIEWS))["scored"] == 0


def test_comm_judge_list_input_and_failures(scripted):
    docs = [
        {"title": "Tea", "steps": [[{"type": "text", "content": "Boil water."}], [{"type": "text", "content": "Steep the tea."}]]},
        {"title": "Bad", "steps": [[{"type": "text", "content": "x"}]]},
        {"title": "Empty", "steps": []},
    ]
    scripted.answer = lambda body: '{"development": 6, "completeness": 5}' if "Tea" in user_text(body) else '{"development": "great", "completeness": 5}'
    with client(scripted) as c:
        df = judge.comm(docs, c, images=False)
    assert df["doc_id"].to_list() == ["0", "1", "2"]
    assert df.row(0, named=True)["development"] == 6 and "Title: Tea\n(1) Boil water.\n(2) Steep the tea." in user_text(scripted.requests[0])
    assert df.row(1, named=True)["error"] == "parse: development: expected an integer, got 'great'"
    assert df.row(2, named=True)["error"] == "empty document" and len(scripted.requests) == 2


# -- AITQE ----------------------------------------------------------------------------------------


def caption_of(body) -> str:
    m = re.search(r"Caption:\n(.*?)\n\n", user_text(body), re.S)
    return m.group(1) if m else ""


def aitqe_answer(body) -> str:
    cap, text = caption_of(body), user_text(body)
    if "Rate this image-text pair" in text:
        score = {"A good caption of a cat.": 9, "a cat on teh mat": 3, "far": 2, "empty": 2, "badscore": 0}.get(cap, 4)
        return json.dumps({"score": score, "text_quality": 5, "image_text_matching": 5, "object_detail": 5, "semantic_understanding": 5, "text_chart_description": 10})
    if "Rewrite it" in text:
        return json.dumps({"caption": {"a cat on teh mat": "a cat on the mat", "far": "Something entirely unrelated and much longer than before.", "empty": " ", "same  words here": " same words\nhere "}.get(cap, cap + "!")})
    if "Write a worse version" in text:
        return json.dumps({"caption": cap.replace("cat", "dog")})
    return "?"


def test_aitqe_decisions_and_originals(scripted, sample_images):
    img = next(iter(sample_images.values()))
    scripted.answer = aitqe_answer
    scripted.fault = lambda body, attempt: Fault(status=503) if caption_of(body) == "down" else None
    pairs = [
        {"caption": "A good caption of a cat.", "image": img},
        {"caption": "a cat on teh mat", "image": img},
        {"caption": "far", "image": img},
        {"caption": "empty", "image": img},
        {"caption": "badscore", "image": img},
        {"caption": "down", "image": img},
        {"caption": "no image", "image": None},
        {"text": "from the text column", "image": img},
        {"caption": "same  words here", "image": img},
        {"caption": "", "image": img},
        {"caption": " ", "text": "a blank caption falls back to text", "image": img},
    ]
    with client(scripted) as c:
        df = enhance.aitqe(pairs, c, threshold=7, max_edit_ratio=0.35)
    assert df.height == len(pairs)
    assert df["caption"].to_list() == [p.get("caption", p.get("text")) for p in pairs[:-1]] + ["a blank caption falls back to text"]  # originals always kept
    d = {r["caption"]: r for r in df.to_dicts()}
    assert d["A good caption of a cat."]["decision"] == "keep" and d["A good caption of a cat."]["rewrite"] is None and d["A good caption of a cat."]["final"] == "A good caption of a cat."
    r = d["a cat on teh mat"]
    assert r["decision"] == "rewrite" and r["final"] == r["rewrite"] == "a cat on the mat" and r["edit_ratio"] == pytest.approx(enhance.edit_ratio("a cat on teh mat", "a cat on the mat"))
    assert d["far"]["decision"] == "reject_edit_ratio" and d["far"]["final"] == "far" and d["far"]["edit_ratio"] > 0.35 and "edit ratio" in d["far"]["reason"]
    assert d["empty"]["decision"] == "reject_empty" and d["empty"]["final"] == "empty"
    assert d["badscore"]["decision"] == "error" and "score: 0 is outside 1-10" in d["badscore"]["error"] and d["badscore"]["final"] == "badscore"
    assert d["down"]["decision"] == "error" and "HTTP 503" in d["down"]["error"]
    assert d["no image"]["error"] == "no image" and d["no image"]["score"] is None
    assert d["from the text column"]["decision"] == "rewrite" and d["from the text column"]["final"] == "from the text column!"
    assert r["reason"] == "score 3 < 7; edit ratio 0.12 <= 0.35; CLIP guard not applied (no clip model)"
    assert set(df["decision"].unique()) <= set(enhance.DECISIONS)
    # A rewrite that is the original (whitespace aside) keeps the original under its own decision.
    same = d["same  words here"]
    assert same["decision"] == "unchanged" and same["final"] == "same  words here" and same["error"] is None and same["reason"].endswith("the rewrite is the original caption: it is kept")
    # An empty caption is no caption: an error, nothing sent for it.
    assert d[""]["decision"] == "error" and d[""]["error"] == "no caption" and d[""]["final"] == ""
    assert all(caption_of(b) != "" for b in scripted.requests)
    assert d["a blank caption falls back to text"]["decision"] == "rewrite"
    # The rewrite request bounds the answer's length.
    rw = next(b for b in scripted.requests if "Rewrite it" in user_text(b))
    assert rw["response_format"]["json_schema"]["schema"]["properties"]["caption"]["maxLength"] == 64
    with client(scripted) as c:
        cp = enhance.contrastive_pairs(pairs, df, c)
    assert cp.filter(pl.col("type") == "degraded").select("input", "target").row(0) == ("A good caption of a dog.", "A good caption of a cat.")
    assert set(cp.filter(pl.col("type") == "rewrite").select("input", "target").rows()) == {("a cat on teh mat", "a cat on the mat"), ("from the text column", "from the text column!"), ("a blank caption falls back to text", "a blank caption falls back to text!")}
    assert cp.filter(pl.col("input") == pl.col("target")).height == 0
    # A result over other pairs: a "keep" whose image is missing or corrupt here is an error row,
    # never a request without an image.
    other = [{"caption": "A good caption of a cat.", "image": None}, {"caption": "A good caption of a cat.", "image": b"not an image"}] + pairs[2:]
    sent = len(scripted.requests)
    with client(scripted) as c:
        cp2 = enhance.contrastive_pairs(other, df, c)
    assert len(scripted.requests) == sent  # the one "keep" row is pair 0: nothing to send
    assert cp2.filter(pl.col("type") == "degraded").select("index", "input", "error").rows() == [(0, None, "the pair has no image")]
    df2 = df.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("keep")).otherwise("decision").alias("decision"))
    with client(scripted) as c:
        err = enhance.contrastive_pairs(other, df2, c).filter(pl.col("index") == 1)["error"].item()
    assert err.startswith("image: ")


def test_aitqe_clip_guard_matches_clip_scores(scripted, sample_images):
    from interleaf import models
    from interleaf.signals.alignment import clip_scores

    clip = models.load("tests/fixtures/models/clip-tiny", kind="clip")
    imgs = list(sample_images.values())[:6]
    caps = [f"a photo number {i} with teh typo" for i in range(6)]
    scripted.answer = lambda body: json.dumps({"score": 3, **dict.fromkeys(enhance.AITQE_ASPECTS, 3)}) if "Rate this" in user_text(body) else json.dumps({"caption": caption_of(body).replace("teh", "the")})
    with client(scripted) as c:
        df = enhance.aitqe([{"caption": t, "image": i} for t, i in zip(caps, imgs, strict=True)], c, clip=clip)
    before = clip_scores(clip, imgs, caps)["clip_score"].to_numpy()
    after = clip_scores(clip, imgs, [t.replace("teh", "the") for t in caps])["clip_score"].to_numpy()
    np.testing.assert_allclose(df["clip_original"].to_numpy(), before, atol=1e-6)
    np.testing.assert_allclose(df["clip_rewrite"].to_numpy(), after, atol=1e-6)
    expected = ["rewrite" if a > b else "reject_clip" for a, b in zip(after, before, strict=True)]
    assert df["decision"].to_list() == expected
    assert df["final"].to_list() == [t.replace("teh", "the") if e == "rewrite" else t for t, e in zip(caps, expected, strict=True)]


def test_aitqe_low_pairs_by_aspect_and_clip_signals(scripted, sample_images):
    """A pair the model scores well overall is still rewritten when its text-quality or
    image-text-matching aspect is below min_aspect, or its CLIP cosine below min_clip."""
    from interleaf import models
    from interleaf.signals.alignment import clip_scores

    imgs = list(sample_images.values())[:6]
    caps = [f"a photo number {i} with teh typo" for i in range(6)]
    aspects = {0: (9, 9), 1: (4, 9), 2: (9, 3), 3: (9, 9), 4: (9, 9), 5: (9, 9)}

    def answer(body):
        cap = caption_of(body)
        if "Rate this" in user_text(body):
            tq, itm = aspects[int(cap.split()[3])]
            return json.dumps({"score": 9, **dict.fromkeys(enhance.AITQE_ASPECTS, 9), "text_quality": tq, "image_text_matching": itm})
        return json.dumps({"caption": cap.replace("teh", "the")})

    scripted.answer = answer
    pairs = [{"caption": t, "image": i} for t, i in zip(caps, imgs, strict=True)]
    with client(scripted) as c:
        plain = enhance.aitqe(pairs, c)
        by_aspect = enhance.aitqe(pairs, c, min_aspect=5)
    assert plain["decision"].to_list() == ["keep"] * 6
    assert by_aspect["decision"].to_list() == ["keep", "rewrite", "rewrite", "keep", "keep", "keep"]
    assert by_aspect["reason"][1].startswith("text_quality 4 < 5;") and by_aspect["reason"][2].startswith("image_text_matching 3 < 5;")
    clip = models.load("tests/fixtures/models/clip-tiny", kind="clip")
    before = clip_scores(clip, imgs, caps)["clip_score"].to_numpy()
    after = clip_scores(clip, imgs, [t.replace("teh", "the") for t in caps])["clip_score"].to_numpy()
    cut = float(np.median(before))
    with client(scripted) as c:
        by_clip = enhance.aitqe(pairs, c, clip=clip, min_clip=cut)
    np.testing.assert_allclose(by_clip["clip_original"].to_numpy(), before, atol=1e-6)  # scored for every pair
    want = ["keep" if b >= cut else ("rewrite" if a > b else "reject_clip") for a, b in zip(after, before, strict=True)]
    assert by_clip["decision"].to_list() == want and "keep" in want and len(set(want)) > 1
    with pytest.raises(ValueError, match="min_clip needs a CLIP model"):
        enhance.aitqe(pairs, client(scripted), min_clip=0.2)
    with pytest.raises(ValueError, match="min_aspect must be in 1-10"):
        enhance.aitqe(pairs, client(scripted), min_aspect=0)


# -- SEIR -----------------------------------------------------------------------------------------


def test_seir_loop_stopping_rounds_and_errors():
    def evaluate(xs, ctx):
        out = []
        for x in xs:
            if x.startswith("boom"):
                out.append(RuntimeError("evaluator down"))
            elif len(x) >= 4 or x.startswith("forever"):
                out.append("none" if not x.startswith("forever") else "add a letter")
            else:
                out.append("add a letter")
        return out

    def refine_(xs, ss, ctx):
        return [x + "a" if x != "ab" else ValueError("cannot") for x in xs]

    df = refine.seir(["a", "abcd", "forever", "boom", "ab", 7, None], evaluate, refine_, k=3)
    rows = df.to_dicts()
    assert (rows[0]["final"], rows[0]["rounds"], rows[0]["stopped"]) == ("aaaa", 3, "max_rounds")
    assert (rows[1]["final"], rows[1]["rounds"], rows[1]["stopped"], rows[1]["suggestions"]) == ("abcd", 0, "none", [])
    assert (rows[2]["final"], rows[2]["rounds"], rows[2]["stopped"]) == ("foreveraaa", 3, "max_rounds") and rows[2]["history"] == ["forevera", "foreveraa", "foreveraaa"]
    assert rows[3]["stopped"] == "error" and "evaluator down" in rows[3]["error"] and rows[3]["final"] == "boom"
    assert rows[4]["stopped"] == "error" and rows[4]["error"] == "refine: cannot" and rows[4]["final"] == "ab"
    assert rows[5]["stopped"] == "error" and rows[5]["final"] is None
    assert (rows[6]["stopped"], rows[6]["error"], rows[6]["rounds"]) == ("missing", None, 0)  # nothing to refine, nothing asked
    # InterSyn's stopping answer, spelled as models spell it.
    assert all(refine.is_none(s) for s in ("none", "None.", ' "NONE" ', None)) and not refine.is_none("none of the above is wrong")
    # A step that raises stops its whole batch with the error, nothing is lost.

    def broken(xs, ctx):
        raise ConnectionError("no route")

    df = refine.seir(["x", "y"], broken, refine_, k=3)
    assert df["stopped"].to_list() == ["error", "error"] and all("no route" in e for e in df["error"]) and df["final"].to_list() == ["x", "y"]
    assert refine.seir(["x"], evaluate, refine_, k=0).row(0, named=True)["rounds"] == 0
    with pytest.raises(ValueError, match="differ in length"):
        refine.seir(["x"], evaluate, refine_, contexts=[1, 2])


def test_seir_cascade_on_the_endpoint(scripted):
    def answer(body):
        text = user_text(body)
        cur = re.search(r"^(question|answer|caption): ([^\n]*)\n\n", text, re.M)
        value = cur.group(2)
        if "Criteria:" in text:
            return json.dumps({"suggestion": "none" if value.endswith("!") else "be emphatic"})
        return json.dumps({"text": value + "!"})

    scripted.answer = answer
    with client(scripted) as c:
        df = refine.cascade([{"question": "what", "answer": "this", "caption": "that"}, {"question": "done!", "answer": "ok!", "caption": "fine!"}], c, k=3)
    r0, r1 = df.to_dicts()
    assert (r0["question"], r0["answer"], r0["caption"]) == ("what!", "this!", "that!") and (r0["question_rounds"], r0["answer_rounds"], r0["caption_rounds"]) == (1, 1, 1)
    assert (r0["question_initial"], r0["answer_initial"]) == ("what", "this") and r0["error"] is None
    assert (r1["question"], r1["question_rounds"]) == ("done!", 0)
    # The answer is refined in the context of the refined question.
    ans = [b for b in scripted.requests if "\nanswer: this" in "\n" + user_text(b) and "Criteria:" in user_text(b)]
    assert ans and "question: what!" in user_text(ans[0])


# -- a real server: llama.cpp ---------------------------------------------------------------------


def llama_client(server, **kw) -> Client:
    kw.setdefault("max_tokens", 200)
    kw.setdefault("concurrency", 4)
    return Client(server.url, server.model, **kw)


def in_range_or_error(df: pl.DataFrame, cols, lo, hi) -> None:
    for row in df.to_dicts():
        vals = [row[c] for c in cols]
        if row["error"] is None:
            assert all(v is not None and lo <= v <= hi for v in vals), row
        else:
            assert all(v is None for v in vals), row


def test_llama_synjudge_and_cache(llama_server, tmp_path):
    samples = [{"question": f"What is item {i}?", "answer": f"It is item {i}." if i % 3 else None, "image": None} for i in range(6)]
    cache = tmp_path / "llm.sqlite"
    with llama_client(llama_server, cache=cache) as c:
        df = judge.synjudge(samples, c)
        first = c.last_stats
        # llama-cpp-python's server takes the json_object + schema form, not json_schema.
        assert c.structured_mode == "json_object"
    # Samples 0 and 3 have neither text nor image: scored 0 without a request.
    assert df.height == 6 and first.requests == 4 and first.failed == 0 and first.prompt_tokens > 0
    assert df.row(0)[:4] == (0, 0, 0, 0) and df.row(3)[:4] == (0, 0, 0, 0)
    in_range_or_error(df, ["tcc", "icc", "iq", "its"], 0, 5)
    assert df.filter(pl.col("error").is_null()).height >= 1  # schema-valid JSON parses
    assert df.filter(pl.col("error").is_null())["icc"].to_list() == [0] * df.filter(pl.col("error").is_null()).height  # no image
    with llama_client(llama_server, cache=cache) as c:
        again = judge.synjudge(samples, c)
        assert c.last_stats.sent == 0 and c.last_stats.cached == 4
    assert again.equals(df)


def test_llama_comm_aitqe_and_seir(llama_server, sample_dir):
    nodes = read_all(str(sample_dir / "comm.jsonl"), progress=False)
    with llama_client(llama_server) as c:
        cm = judge.comm(nodes, c, images=False)
        pairs = read_all(str(sample_dir / "pairs.jsonl"), progress=False)
        pairs = pairs.filter(pl.col("doc_index") < 4)
        aq = enhance.aitqe(pairs, c, threshold=10)
        sr = refine.cascade([{"question": "What is shown?", "answer": "A cat.", "caption": "a cat"}], c, k=1)
        stats = c.stats
    assert cm.height == nodes["doc_index"].n_unique()
    in_range_or_error(cm, ["development", "completeness"], 0, 10)
    assert cm.filter(pl.col("error").is_null()).height >= 1  # the schema-constrained answers parse
    assert aq.height == 4 and set(aq["decision"]) <= set(enhance.DECISIONS) and aq["caption"].null_count() == 0
    in_range_or_error(aq.filter(pl.col("decision") != "error"), ["score"], 1, 10)
    assert sr.height == 1 and sr["question_initial"].to_list() == ["What is shown?"]
    assert stats.failed == 0 and stats.sent >= stats.requests - stats.cached


def test_cli_llm_commands(llama_server, scripted, sample_dir, tmp_path, sample_images):
    cache = tmp_path / "c.sqlite"
    out = tmp_path / "comm.parquet"
    cmd = [sys.executable, "-m", "interleaf.cli", "judge", "comm", str(sample_dir / "comm.jsonl"), "--no-images", "--base-url", llama_server.url, "--model", llama_server.model, "--max-tokens", "200", "--cache", str(cache), "--out", str(out), "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["rows"] == 4 and summary["requests"]["requests"] == 4 and "aggregate" in summary
    assert pl.read_parquet(out).height == 4
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and json.loads(r.stdout)["requests"]["sent"] == 0  # resumable through the cache
    # A table with image paths; a missing file is that row's error.
    (tmp_path / "img.jpg").write_bytes(next(iter(sample_images.values())))
    table = tmp_path / "samples.jsonl"
    secret = tmp_path.parent / f"{tmp_path.name}-secret.jpg"
    secret.write_bytes(next(iter(sample_images.values())))
    rows = [{"question": "q1", "answer": "a1", "image": "img.jpg"}, {"question": "q2", "answer": "a2", "image": "gone.jpg"}, {"question": "q3", "answer": "a3", "image": f"../{secret.name}"}, {"question": "q4", "answer": "a4", "image": str(secret)}, {"question": "q5", "answer": "a5", "image": "bad\u0000.jpg"}]
    table.write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    scripted.answer = lambda body: BRACKET.format(5, 4, 3, 2)
    out2 = tmp_path / "sj.parquet"
    r = subprocess.run([sys.executable, "-m", "interleaf.cli", "judge", "synjudge", str(table), "--base-url", scripted.url, "--model", "m", "--out", str(out2), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "warning: 4 of 5 rows failed; the first: " in r.stderr and "gone.jpg" in r.stderr
    df = pl.read_parquet(out2)
    assert df.row(0, named=True)["its"] == 2 and "gone.jpg" in df.row(1, named=True)["error"] and json.loads(r.stdout)["aggregate"]["scored"] == 1
    # Paths outside the image root (relative or absolute) are row errors: never read, never sent.
    assert all("resolves outside the image root" in df.row(i, named=True)["error"] for i in (2, 3))
    assert "null byte" in df.row(4, named=True)["error"]  # a NUL in a path is its row's error
    assert all(question_of(b) not in ("q3", "q4") for b in scripted.requests)
    scripted.answer = aitqe_answer
    out3, cp = tmp_path / "aitqe.parquet", tmp_path / "contrastive.parquet"
    r = subprocess.run(
        [sys.executable, "-m", "interleaf.cli", "enhance", "aitqe", str(sample_dir / "pairs.jsonl"), "--limit", "3", "--base-url", scripted.url, "--model", "m", "--out", str(out3), "--contrastive", str(cp), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert pl.read_parquet(out3).height == 3 and json.loads(r.stdout)["decisions"] and cp.exists()
    r = subprocess.run([sys.executable, "-m", "interleaf.cli", "judge", "comm", str(sample_dir / "comm.jsonl"), "--out", str(out), "--model", "m"], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert r.returncode == 2 and "no LLM endpoint configured" in r.stderr

    # Every row failed (nothing listens there): written, counted, and exit 1 with the reason.
    r = subprocess.run([sys.executable, "-m", "interleaf.cli", "judge", "synjudge", str(table), "--limit", "1", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-retries", "0", "--out", str(tmp_path / "down.parquet"), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "error: every row failed (1); the first: " in r.stderr, r.stderr
    assert json.loads(r.stdout)["errors"] == 1 and pl.read_parquet(tmp_path / "down.parquet").height == 1
    # The same failure over an earlier good output leaves it as it was (the answers it holds
    # were paid for); an output path that cannot be written is refused before any request.
    good = out2.read_bytes()
    r = subprocess.run([sys.executable, "-m", "interleaf.cli", "judge", "synjudge", str(table), "--limit", "1", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-retries", "0", "--out", str(out2), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"{out2} is left as it was" in r.stderr and out2.read_bytes() == good
    scripted.reset()
    r = subprocess.run([sys.executable, "-m", "interleaf.cli", "judge", "synjudge", str(table), "--base-url", scripted.url, "--model", "m", "--out", str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "is a folder: give the output file's path" in r.stderr and scripted.requests == []


# -- the LLM judge as a recipe signal -------------------------------------------------------------

JUDGE_RECIPE = """
name: judged
llm: {concurrency: 4}
signals:
  judge: {type: llm_judge, judge: comm}
filters:
  drop_errors: true
  doc:
    developed: "judge_development >= 5"
"""


def test_pipeline_llm_judge_signal(scripted, sample_dir, tmp_path):
    from interleaf import run

    # Per document: development from its title; "Examining a cat's face" fails with 500s.
    def answer(body):
        title = re.search(r"Title: (.*)", user_text(body)).group(1)
        return json.dumps({"development": 3 if "astronaut" in title else 8, "completeness": 6, "alignment": count_images(body)})

    scripted.answer = answer
    scripted.fault = lambda body, attempt: Fault(status=500) if "Title: Examining a cat" in user_text(body) else None
    recipe = tmp_path / "judged.yaml"
    recipe.write_text(JUDGE_RECIPE)
    out = tmp_path / "out"
    llm = {"base_url": scripted.url, "model": "scripted", "max_retries": 1, "cache": str(tmp_path / "llm.sqlite")}
    s = run(str(recipe), [str(sample_dir / "comm.jsonl")], out, llm=llm, progress=False)
    att = pl.read_parquet(out / "attributes" / "judge" / "comm.parquet").sort("doc_index")
    nodes = read_all(str(sample_dir / "comm.jsonl"), progress=False)
    titles = {r["doc_id"]: json.loads(r["meta"])["title"] for r in nodes.unique("doc_index", keep="first").iter_rows(named=True)}
    for r in att.iter_rows(named=True):
        if titles[r["doc_id"]].startswith("Examining a cat"):
            assert r["judge_development"] is None and r["judge_error"]["kind"] == "llm_failed" and "HTTP 500" in r["judge_error"]["message"]
        else:
            assert r["judge_development"] == (3 if "astronaut" in titles[r["doc_id"]] else 8) and r["judge_error"] is None
    astronaut = [d for d, t in titles.items() if "astronaut" in t]
    assert s["dropped_documents"] == {"developed": len(astronaut)}
    # An LLM failure is not damage: the document is kept (its score is null; on_null: keep).
    assert s["documents"]["kept"] == len(titles) - len(astronaut)
    assert s["llm"]["model"] == "scripted" and s["llm"]["requests"] == len(titles) and s["llm"]["failed"] == 1 and s["llm"]["retried"] == 1
    assert s["signal_errors"] == {"judge": {"rows": len(titles), "errors": {"llm_failed": 1}, "example": s["signal_errors"]["judge"]["example"]}}
    assert "HTTP 500" in s["signal_errors"]["judge"]["example"]
    run_json = json.loads((out / ".interleaf" / "run.json").read_text())
    assert run_json["llm"]["base_url"] == scripted.url and "api_key" not in run_json["llm"]
    # A rerun asks again only for the document the endpoint failed on (the others come from
    # the cache) and fills it in once the endpoint answers; then a rerun sends nothing.
    scripted.reset()
    scripted.fault = None
    s2 = run(str(recipe), [str(sample_dir / "comm.jsonl")], out, llm=llm, progress=False)
    assert [re.search(r"Title: (.*)", user_text(b)).group(1) for b in scripted.requests] == [t for t in titles.values() if t.startswith("Examining a cat")]
    assert s2["signal_errors"] == {} and s2["documents"] == s["documents"] and s2["llm"]["cached"] == len(titles) - 1
    scripted.reset()
    s3 = run(str(recipe), [str(sample_dir / "comm.jsonl")], out, llm=llm, progress=False)
    assert scripted.requests == [] and s3["documents"] == s["documents"]
    with pytest.raises(ValueError, match="not in the run's arguments"):
        run(str(recipe), [str(sample_dir / "comm.jsonl")], tmp_path / "o2", llm={**llm, "api_key": "sk-x"}, progress=False)


def test_a_recipe_named_endpoint_is_sent_only_the_key_the_user_names(scripted, sample_dir, tmp_path):
    """`interleaf run` with a recipe that names its own endpoint: no Authorization header
    although OPENAI_API_KEY is set, the key of `--llm-api-key-env VAR` when given, and a recipe
    that tries to name the variable itself (api_key_env: GITHUB_TOKEN) is refused unread."""
    scripted.answer = lambda body: json.dumps({"development": 8, "completeness": 6, "alignment": count_images(body)})
    env = {**__import__("os").environ, "OPENAI_API_KEY": "sk-user", "MY_KEY": "sk-mine", "GITHUB_TOKEN": "ghp-secret", "INTERLEAF_LLM_API_KEY": ""}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(JUDGE_RECIPE.replace("llm: {concurrency: 4}", f"llm: {{base_url: '{scripted.url}', model: scripted}}"))

    def cli(out, *extra):
        return subprocess.run([sys.executable, "-m", "interleaf", "run", str(recipe), str(sample_dir / "comm.jsonl"), "--out", str(tmp_path / out), "--quiet", *extra], env=env, capture_output=True, text=True, timeout=300)

    r = cli("o1")
    assert r.returncode == 0, r.stderr
    assert scripted.auth and set(scripted.auth) == {"Bearer none"} and "no API key is sent to it" in r.stderr and "--llm-api-key-env" in r.stderr
    scripted.reset()
    r = cli("o2", "--llm-api-key-env", "MY_KEY")
    assert r.returncode == 0, r.stderr
    assert scripted.auth and set(scripted.auth) == {"Bearer sk-mine"}
    scripted.reset()
    recipe.write_text(recipe.read_text().replace("model: scripted}", "model: scripted, api_key_env: GITHUB_TOKEN}"))
    r = cli("o3")
    assert r.returncode != 0 and "api_key_env is not read from a recipe" in r.stderr and scripted.auth == []


def test_an_unparsed_answer_is_asked_again_on_the_next_run_and_refresh_asks_all(scripted, tmp_path, sample_images):
    """An answer the stage could not parse leaves the cache: a rerun with ``--structured
    json_schema`` (not part of the cache key) asks again; ``--refresh-cache`` asks everything."""
    (tmp_path / "img.jpg").write_bytes(next(iter(sample_images.values())))
    table = tmp_path / "samples.jsonl"
    table.write_text("".join(json.dumps({"question": q, "answer": "a", "image": "img.jpg"}) + "\n" for q in ("q1", "q2")))
    # Without a schema the model answers prose for q2; with one it answers the JSON asked for.
    scripted.answer = lambda body: '{"tcc": 4, "icc": 3, "iq": 5, "its": 4}' if body.get("response_format") or question_of(body) == "q1" else "The answer looks fine overall."
    cache, out = tmp_path / "llm.sqlite", tmp_path / "sj.parquet"

    def run(*extra: str) -> dict:
        cmd = [sys.executable, "-m", "interleaf.cli", "judge", "synjudge", str(table), "--base-url", scripted.url, "--model", "m", "--cache", str(cache), "--out", str(out), "--quiet", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["requests"]

    first = run("--structured", "none")
    assert (first["sent"], first["cached"]) == (2, 0) and pl.read_parquet(out)["tcc"].to_list() == [4, None]
    scripted.reset()
    second = run("--structured", "json_schema")
    assert (second["sent"], second["cached"]) == (1, 1) and pl.read_parquet(out)["tcc"].to_list() == [4, 4]
    assert [question_of(b) for b in scripted.requests] == ["q2"]
    assert run()["sent"] == 0
    refreshed = run("--refresh-cache")
    assert (refreshed["sent"], refreshed["cached"]) == (2, 0)


def test_cli_synjudge_reads_a_table_without_a_question_as_the_api_does(scripted, tmp_path, sample_images):
    (tmp_path / "img.jpg").write_bytes(next(iter(sample_images.values())))
    table = tmp_path / "noq.jsonl"
    table.write_text(json.dumps({"answer": "An astronaut.", "image": "img.jpg"}) + "\n" + json.dumps({"answer": "Text only.", "image": None}) + "\n")
    scripted.answer = lambda body: '{"tcc": 4, "icc": 3, "iq": 5, "its": 4}'
    out = tmp_path / "noq.parquet"
    r = subprocess.run([sys.executable, "-m", "interleaf.cli", "judge", "synjudge", str(table), "--base-url", scripted.url, "--model", "m", "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    df = pl.read_parquet(out)
    assert df.select("tcc", "icc", "iq", "its").rows() == [(4, 3, 5, 4), (4, 0, 0, 0)] and df["error"].null_count() == 2
    assert all("Question:\n(no question)" in user_text(b) for b in scripted.requests)


def test_cli_instruct_run_help_says_out_is_a_folder():
    r = subprocess.run([sys.executable, "-m", "interleaf.cli", "instruct", "run", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "output folder: generated.parquet" in " ".join(r.stdout.split()) and "output parquet file" not in r.stdout


def test_a_run_caches_its_llm_answers_in_its_folder_by_default(scripted, sample_dir, tmp_path):
    """Without a cache in the recipe the run keeps one in its folder: a shard killed while it
    was judged is judged again on the rerun, from the answers already received."""
    import shutil

    from interleaf import run

    def answer(body):
        return json.dumps({"development": 8, "completeness": 6, "alignment": count_images(body)})

    scripted.answer = answer
    recipe = tmp_path / "judged.yaml"
    recipe.write_text(JUDGE_RECIPE)
    out = tmp_path / "out"
    llm = {"base_url": scripted.url, "model": "scripted"}
    first = run(str(recipe), [str(sample_dir / "comm.jsonl")], out, llm=llm, progress=False)
    assert len(scripted.requests) == first["llm"]["requests"] > 0 and (out / ".interleaf" / "llm-cache.sqlite").is_file()
    shutil.rmtree(out / ".interleaf" / "markers" / "score")  # as if killed while scoring
    scripted.reset()
    scripted.answer = answer
    again = run(str(recipe), [str(sample_dir / "comm.jsonl")], out, llm=llm, progress=False)
    assert scripted.requests == [] and again["llm"]["cached"] == first["llm"]["requests"]
    assert again["documents"] == first["documents"]


def test_a_judge_whose_answers_never_parse_is_reported(scripted, sample_dir, tmp_path, capsys):
    from interleaf.cli import main

    scripted.answer = lambda body: "I would rate this document highly."
    recipe = tmp_path / "judged.yaml"
    recipe.write_text(JUDGE_RECIPE)
    rc = main(["run", str(recipe), str(sample_dir / "comm.jsonl"), "--out", str(tmp_path / "out"), "--llm-base-url", scripted.url, "--llm-model", "m", "--quiet"])
    assert rc == 0
    cap = capsys.readouterr()
    assert re.search(r"^  judge\s+llm_\w+\s+4$", cap.out, re.MULTILINE), cap.out
    assert "warning: every row of signal judge has an error, e.g." in cap.err


def test_pipeline_llm_judge_needs_an_endpoint(monkeypatch, sample_dir, tmp_path):
    from interleaf import run

    monkeypatch.delenv("INTERLEAF_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("INTERLEAF_LLM_MODEL", raising=False)
    recipe = tmp_path / "judged.yaml"
    recipe.write_text(JUDGE_RECIPE)
    with pytest.raises(ValueError, match="needs an LLM endpoint: set base_url and model"):
        run(str(recipe), [str(sample_dir / "comm.jsonl")], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # failed before reading anything
    from interleaf.recipes.schema import RecipeError, parse

    with pytest.raises(RecipeError, match="needs an LLM endpoint: add an `llm:` section"):
        parse(JUDGE_RECIPE.replace("llm: {concurrency: 4}\n", ""))


def test_comm_preset_with_the_judge_on_llama(llama_server, sample_dir, tmp_path):
    from interleaf.cli import main

    out = tmp_path / "out"
    rc = main(["run", "comm", str(sample_dir / "comm.jsonl"), "--out", str(out), "--model", "clip=tests/fixtures/models/clip-tiny", "--model", "text=tests/fixtures/models/embedder-tiny",
               "--llm-base-url", llama_server.url, "--llm-model", llama_server.model, "--quiet"])  # fmt: skip
    assert rc == 0
    att = pl.read_parquet(out / "attributes" / "judge" / "comm.parquet")
    assert att.height == 4
    for r in att.iter_rows(named=True):
        vals = [r["judge_development"], r["judge_completeness"], r["judge_alignment"]]
        assert (r["judge_error"] is None and all(v is not None and 0 <= v <= 10 for v in vals)) or (r["judge_error"]["kind"] == "llm_failed" and all(v is None for v in vals))
    s = json.loads((out / "summary.json").read_text())
    assert s["llm"]["requests"] == 4 and s["llm"]["failed"] == 0 and "judge" not in s["skipped"]["signals"]


def test_seir_cascade_image_step(scripted, sample_images):
    import base64
    import hashlib
    import io

    from PIL import Image

    def answer(body):
        text = user_text(body)
        if count_images(body):
            url = next(p["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list) for p in m["content"] if p.get("type") == "image_url")
            im = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L")
            flat = max(im.getextrema()) - min(im.getextrema()) < 12  # the server's generated images are one colour
            return json.dumps({"suggestion": "none" if flat else "show the whole cat"})
        if "Criteria:" in text:
            return json.dumps({"suggestion": "none"})
        return json.dumps({"text": "x"})

    scripted.answer = answer
    photo = next(iter(sample_images.values()))
    samples = [{"question": "q", "answer": "a", "caption": "a cat", "image": photo}, {"question": "q", "answer": "a", "caption": "no picture", "image": None}]
    with client(scripted) as c, client(scripted) as imgs:
        df = refine.cascade(samples, c, k=3, images=imgs, image_size="512x512")
        skipped = refine.cascade(samples[:1], c, k=3)
    r0, r1 = df.to_dicts()
    assert r0["image_step"] == "done" and r0["image_rounds"] == 1 and r0["error"] is None
    expected = tuple(hashlib.sha256(b"a cat\nMake sure that: show the whole cat").digest()[:3])
    assert Image.open(io.BytesIO(r0["image"])).convert("RGB").getpixel((0, 0)) == expected
    assert r1["image_step"] == "skipped: no image" and r1["image"] is None
    assert skipped.row(0, named=True)["image_step"].startswith("skipped: no images client") and skipped.row(0, named=True)["image"] == photo
    gen = [b for b in scripted.requests if "prompt" in b]
    assert len(gen) == 1 and gen[0]["size"] == "512x512"


def test_stage_inputs_of_the_wrong_shape_are_refused_before_any_request(scripted, sample_dir, tmp_path, capsys):
    from interleaf.cli import main

    pairs = read_all(str(sample_dir / "pairs.jsonl"), progress=False)
    with client(scripted) as c:
        with pytest.raises(ValueError, match="synjudge: the items need some of the keys question, answer, image; they have q"):
            judge.synjudge([{"q": "What is shown?"}], c)
        with pytest.raises(ValueError, match="seir cascade: takes a table .* not documents"):
            refine.cascade(pairs, c)
    assert scripted.requests == []
    # Pairs (a caption, no question or answer): only the captions are refined; a missing field is
    # skipped, not an error on every row.
    scripted.answer = lambda body: json.dumps({"suggestion": "none"})
    rc = main(["refine", "seir", str(sample_dir / "pairs.jsonl"), "--limit", "2", "--base-url", scripted.url, "--model", "m", "--out", str(tmp_path / "r.parquet"), "--quiet"])
    assert rc == 0
    df = pl.read_parquet(tmp_path / "r.parquet")
    assert df["error"].to_list() == [None, None] and df["question_rounds"].to_list() == [0, 0] and len(scripted.requests) == 2


def test_a_table_whose_columns_are_named_otherwise_is_refused_not_scored(scripted):
    # A table with `response` for `answer` was judged as if every answer were missing: all
    # zeros, no error, exit 0; compare with answer_a/answer_b judged "None" against "None".
    from interleaf import instruct, judge

    with scripted_client(scripted) as client:
        with pytest.raises(ValueError, match="synjudge: the table needs one of answer, image; it has image_path, question, response"):
            judge.synjudge(pl.DataFrame({"question": ["q"], "response": ["r"], "image_path": ["x"]}), client)
        with pytest.raises(ValueError, match="compare: the items need a; they have answer_a, answer_b, instruction"):
            instruct.compare([{"instruction": "i", "answer_a": "x", "answer_b": "y"}], client)
    assert scripted.requests == []


def test_judge_comm_on_a_table_with_image_paths_says_how_to_read_them(scripted):
    from interleaf import judge

    table = [{"title": "t", "steps": [[{"type": "text", "content": "Mix."}, {"type": "image", "image": "images/mix.jpg"}]]}]
    with scripted_client(scripted) as client:
        got = judge.comm(table, client)
    assert "step 0's image is a str ('images/mix.jpg'), not image bytes" in got["error"][0] and scripted.requests == []


def test_comm_views_written_over_another_scale_are_parse_errors(scripted, sample_dir):
    """CoMM's views are 0-10: "4/5" is not a 4 there. Each such record fails to parse (and is
    left out of the aggregate) rather than being averaged in as a 4."""
    scripted.answer = lambda body: '{"development": "4/5", "completeness": "7/10", "alignment": "5/5"}'
    batch = read_all(str(sample_dir / "comm.jsonl"), progress=False)
    with client(scripted) as c:
        df = judge.comm(batch, c)
    assert df["development"].null_count() == df.height and all(e == "parse: development: '4/5' is a score out of 5, not on the 0-10 scale" for e in df["error"])
    assert judge.aggregate(df)["scored"] == 0


def test_seir_stops_on_every_way_of_saying_there_is_no_suggestion(scripted):
    """InterSyn stops on "none": an empty or blank suggestion, a null one, a bare none/None
    instead of the JSON object, "No changes needed.", "N/A" say the same and stop the loop
    (stopped = none, no round); a real suggestion is applied, an answer without the field stays
    an error."""
    answers = {
        "q-empty": '{"suggestion": ""}',
        "q-blank": '{"suggestion": "   "}',
        "q-null": '{"suggestion": null}',
        "q-bare": "none",
        "q-bare-cap": "None",
        "q-nochange": '{"suggestion": "No changes needed."}',
        "q-na": '{"suggestion": "N/A"}',
        "q-real": '{"suggestion": "add a question mark"}',
        "q-missing": "{}",
    }

    def answer(body):
        text = user_text(body)
        value = re.search(r"^question: ([^\n]*)\n\n", text, re.M).group(1)
        if "Apply this improvement" in text:
            return json.dumps({"text": value + "?"})
        return answers.get(value, '{"suggestion": "none"}')

    scripted.answer = answer
    with client(scripted) as c:
        df = refine.seir(list(answers), refine.llm_evaluator(c, "question", "clear"), refine.llm_refiner(c, "question"), k=3)
    rows = {r["initial"]: r for r in df.to_dicts()}
    for q in list(answers)[:7]:
        assert (rows[q]["stopped"], rows[q]["rounds"], rows[q]["suggestions"], rows[q]["final"], rows[q]["error"]) == ("none", 0, [], q, None), q
    assert (rows["q-real"]["stopped"], rows["q-real"]["rounds"], rows["q-real"]["final"]) == ("none", 1, "q-real?")
    assert rows["q-missing"]["stopped"] == "error" and "suggestion: expected a string" in rows["q-missing"]["error"]
    assert all(refine.is_none(s) for s in ("", "  ", "N/A", "n/a.", "No changes needed.", "no further changes are necessary", "Nothing to improve!", "None needed.", "None required.", "No issues found.", "Not applicable.", "N.A.", "No."))
    assert not any(refine.is_none(s) for s in ("No, change the verb.", "none of the above is wrong", "add detail"))


def test_cli_aitqe_contrastive_rows_index_the_output_across_read_batches(scripted, tmp_path):
    """Documents are read 1,024 to a batch: the contrastive rows of the second batch point at
    their pairs' rows in --out (not at 0, 1, ... again) and carry their doc_id. A rerun in which
    every row fails leaves the contrastive file as it leaves --out: as it was."""
    from PIL import Image

    from interleaf.cli import main

    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "i.png")
    # 1,020 documents without a caption (row errors, nothing sent), then 10 with one.
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "image": "i.png", "caption": ""}) + "\n" for i in range(1020)))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "image": "i.png", "caption": f"a good caption of cat {i}"}) + "\n" for i in range(1020, 1030)))
    scripted.answer = lambda body: aitqe_answer(body).replace('"score": 4', '"score": 9')  # every captioned pair is kept
    out, cp = tmp_path / "aitqe.parquet", tmp_path / "contrastive.parquet"
    argv = ["enhance", "aitqe", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out", str(out), "--contrastive", str(cp), "--model", "m", "--quiet", "--max-retries", "0"]
    assert main([*argv, "--base-url", scripted.url]) == 0
    a, c = pl.read_parquet(out), pl.read_parquet(cp)
    assert a.height == 1030 and c.height == 10 and c.columns == ["index", "doc_id", "type", "input", "target", "error"]
    assert c["index"].to_list() == list(range(1020, 1030)) and c["doc_id"].to_list() == [f"d{i}" for i in range(1020, 1030)]
    assert all(a["caption"][r["index"]] == r["target"] and a["doc_id"][r["index"]] == r["doc_id"] for r in c.iter_rows(named=True))
    assert c["input"].to_list() == [f"a good caption of dog {i}" for i in range(1020, 1030)]
    before = (out.read_bytes(), cp.read_bytes())
    assert main([*argv, "--base-url", "http://127.0.0.1:9/v1"]) == 1
    assert (out.read_bytes(), cp.read_bytes()) == before


def test_cli_refine_images_client_takes_the_endpoint_options_and_is_counted(scripted, tmp_path, capsys):
    """The images client of `refine seir --images-model` waits at most --max-backoff (a
    Retry-After of 8 s here) and its requests are in the summary."""
    import time

    from PIL import Image

    from interleaf.cli import main

    Image.new("RGB", (16, 16), (200, 0, 0)).save(tmp_path / "red.png")
    (tmp_path / "s.jsonl").write_text(json.dumps({"question": "q?", "answer": "a.", "caption": "a red square", "image": "red.png"}) + "\n")
    scripted.answer = lambda body: json.dumps({"suggestion": "make it brighter" if count_images(body) else "none"})
    scripted.fault = lambda body, attempt: Fault(status=429, retry_after=8) if "prompt" in body and attempt == 1 else None
    t0 = time.monotonic()
    rc = main(["refine", "seir", str(tmp_path / "s.jsonl"), "--out", str(tmp_path / "r.parquet"), "--base-url", scripted.url, "--model", "vlm", "--images-model", "img", "--max-backoff", "0.5", "--k", "1", "--quiet"])
    assert rc == 0 and time.monotonic() - t0 < 6
    summary = json.loads(capsys.readouterr().out)
    assert summary["image_requests"] == {"requests": 1, "sent": 2, "cached": 0, "retried": 1, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0}
    assert summary["requests"]["requests"] == 4 and pl.read_parquet(tmp_path / "r.parquet").row(0, named=True)["image_rounds"] == 1
    assert [b["model"] for b in scripted.requests if "prompt" in b] == ["img", "img"]


def test_hugging_face_image_structs_are_read_and_other_image_values_named(scripted, tmp_path, sample_images):
    """An image column as Hugging Face datasets store it ({bytes, path}) is read: its bytes,
    else its path (under the image root, as a path column is); a column of numbers is a clear
    error naming the image column, not a traceback."""
    from interleaf.cli import main

    img = next(iter(sample_images.values()))
    (tmp_path / "on-disk.jpg").write_bytes(img)
    table = pl.DataFrame(
        {"question": ["q1", "q2", "q3"], "answer": ["a1", "a2", "a3"], "image": [{"bytes": img, "path": "x.jpg"}, {"bytes": None, "path": "on-disk.jpg"}, {"bytes": None, "path": "../outside.jpg"}]},
        schema={"question": pl.String, "answer": pl.String, "image": pl.Struct({"bytes": pl.Binary, "path": pl.String})},
    )
    table.write_parquet(tmp_path / "hf.parquet")
    scripted.answer = lambda body: json.dumps({"tcc": 4, "icc": 3, "iq": 5, "its": 4} if count_images(body) == 1 else {})
    out = tmp_path / "sj.parquet"
    assert main(["judge", "synjudge", str(tmp_path / "hf.parquet"), "--out", str(out), "--base-url", scripted.url, "--model", "m", "--quiet"]) == 0
    df = pl.read_parquet(out)
    assert df["tcc"].to_list() == [4, 4, None] and "resolves outside the image root" in df["error"][2]
    with client(scripted) as c:
        api = judge.synjudge([{"answer": "a", "image": {"bytes": img, "path": None}}, {"answer": "a", "image": {"bytes": None, "path": "x.jpg"}}], c)
        assert api["tcc"].to_list() == [4, None] and "the image struct has no bytes, only the path 'x.jpg'" in api["error"][1]
        with pytest.raises(ValueError, match=r"^the image column holds a value of type int at row 0: expected encoded image bytes, or a \{bytes, path\} struct"):
            enhance.aitqe([{"caption": "c", "image": 7}], c)
    (tmp_path / "ints.jsonl").write_text(json.dumps({"question": "q", "answer": "a", "image": 7}) + "\n")
    assert main(["judge", "synjudge", str(tmp_path / "ints.jsonl"), "--out", str(out), "--base-url", scripted.url, "--model", "m", "--quiet"]) == 2
