"""MM-Instruct's steps: generation from captions and seeds, FAISS k-means clustering, cluster
summaries, CLIP retrieval matching (against a numpy reference), caption-only answers, and the
order-swapped pairwise judge; on the scripted server and end to end on llama.cpp."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from llm_server import Fault, count_images, scripted_client, user_text

from interleaf import instruct, models
from interleaf.llm import Client

CLIP = "tests/fixtures/models/clip-tiny"
EMBEDDER = "tests/fixtures/models/embedder-tiny"


def client(srv, **kw) -> Client:
    return scripted_client(srv, **{"max_retries": 0, **kw})


def scripted_answer(body) -> str:
    t = user_text(body)
    if "new, diverse instructions" in t:
        cap = re.search(r"Image description:\n(.*?)\n", t).group(1)
        if cap == "unparseable":
            return "Sorry, I can't."
        n = int(re.search(r"Write (\d+) new", t).group(1))
        return json.dumps({"instructions": [f"About {cap}: task {j}" for j in range(n + 2)]})  # too many: trimmed
    if "Instructions from one cluster" in t:
        members = [line[2:] for line in t.split("\n") if line.startswith("- ")]
        return json.dumps({"instruction": f"{len(members)} members, first {members[0]}"})
    if "Which answer" in t:
        first = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", t, re.S).group(1)
        verdicts = {"good": "A", "bad": "B", "same1": "neither", "flip1": "A", "flip2": "A"}
        return json.dumps({"better": verdicts.get(first, "neither")})
    return "Answer to: " + t.rsplit("Instruction: ", 1)[-1]


def test_generate_seeds_trim_and_failures(scripted):
    scripted.answer = scripted_answer
    scripted.fault = lambda body, attempt: Fault(status=500) if "Image description:\ndown" in user_text(body) else None
    with client(scripted) as c:
        df = instruct.generate(["a cat", "  ", "unparseable", "down", "a dog"], c, per_caption=2, n_seeds=3, seed=4)
    assert df.columns == ["caption_index", "instruction", "error"]
    assert df.filter(pl.col("caption_index") == 0)["instruction"].to_list() == ["About a cat: task 0", "About a cat: task 1"]
    assert df.filter(pl.col("caption_index") == 1)["error"].to_list() == ["blank caption"]
    assert df.filter(pl.col("caption_index") == 2)["error"].item().startswith("parse: no JSON object")
    assert "HTTP 500" in df.filter(pl.col("caption_index") == 3)["error"].item()
    assert df["caption_index"].unique().sort().to_list() == [0, 1, 2, 3, 4]
    # Seeds are drawn with the seed: the same seed shows the same examples; 3 of them per request.
    def seeds_by_caption():
        return {re.search(r"Image description:\n(.*?)\n", user_text(b)).group(1): re.findall(r"^- (.*)$", user_text(b), re.M) for b in scripted.requests}

    shown = seeds_by_caption()
    assert all(len(s) == 3 and set(s) <= set(instruct.DEFAULT_SEEDS) for s in shown.values()) and len(shown) == 4
    scripted.reset()
    with client(scripted) as c:
        instruct.generate(["a cat", "  ", "unparseable", "down", "a dog"], c, per_caption=2, n_seeds=3, seed=4)
    assert seeds_by_caption() == shown
    assert scripted.requests[0]["response_format"]["json_schema"]["schema"]["properties"]["instructions"]["maxItems"] == 2


def test_cluster_with_faiss_kmeans_and_summarise(scripted):
    texts = ["Describe the dish.", "What breed is the dog?", "Count the boats.", "Describe the dish.", "What breed is the dog?", "Count the boats.", "", "Describe the dish."]
    cl = instruct.cluster(texts, EMBEDDER, 3, seed=7)
    assert cl["instruction"].to_list()[:6] == texts[:6] and cl.row(6, named=True)["error"] == "blank instruction" and cl.row(6, named=True)["cluster"] is None
    labels = cl["cluster"].to_list()
    # Identical texts share a cluster, the three distinct ones get three clusters.
    assert labels[0] == labels[3] == labels[7] and labels[1] == labels[4] and labels[2] == labels[5]
    assert len({labels[0], labels[1], labels[2]}) == 3
    assert instruct.cluster(texts, EMBEDDER, 3, seed=7).equals(cl)
    scripted.answer = scripted_answer
    with client(scripted) as c:
        sm = instruct.summarise(cl, c, max_members=2, seed=1)
    assert sm["cluster"].to_list() == sorted({labels[0], labels[1], labels[2]})
    sizes = dict(zip(sm["cluster"], sm["size"], strict=True))
    assert sizes[labels[0]] == 3 and sizes[labels[1]] == 2
    assert sm.filter(pl.col("cluster") == labels[0])["instruction"].item() == "2 members, first Describe the dish."  # at most max_members shown
    with pytest.raises(ValueError, match="instruction and cluster"):
        instruct.summarise(pl.DataFrame({"x": [1]}), Client(scripted.url, "m"))


def test_match_against_a_numpy_reference(sample_images):
    clip = models.load(CLIP, kind="clip")
    texts = ["a photo of a cat", "a rocket on a launch pad", "a cup of coffee", "the surface of the moon", "a page of text"]
    imgs = list(sample_images.values())[:6] + [b"broken"]
    t_emb, _ = clip.embed_texts(texts)
    i_emb, _ = clip.embed_images(imgs[:6])
    sim = i_emb @ t_emb.T
    m = instruct.match(texts, imgs, clip)
    assert m["instruction_index"].to_list()[:6] == sim.argmax(axis=1).tolist()
    np.testing.assert_allclose(m["score"].to_numpy()[:6], sim.max(axis=1), atol=1e-5)
    assert m.row(6, named=True)["instruction_index"] is None and "unknown_image_format" in m.row(6, named=True)["error"]
    # Sampling: always among the image's top k, reproducible with the seed, argmax when cold.
    s1 = instruct.match(texts, imgs, clip, mode="sample", top_k=3, temperature=1.0, seed=3)
    s2 = instruct.match(texts, imgs, clip, mode="sample", top_k=3, temperature=1.0, seed=3)
    assert s1.equals(s2)
    top3 = np.argsort(-sim, axis=1, kind="stable")[:, :3]
    assert all(int(j) in top3[r] for r, j in enumerate(s1["instruction_index"].to_list()[:6]))
    cold = instruct.match(texts, imgs, clip, mode="sample", top_k=3, temperature=1e-6, seed=3)
    assert cold["instruction_index"].to_list()[:6] == sim.argmax(axis=1).tolist()
    draws = [instruct.match(texts, imgs[:1], clip, mode="sample", top_k=5, temperature=10.0, seed=s)["instruction_index"].item() for s in range(40)]
    assert len(set(draws)) > 1  # a hot temperature spreads the choice
    with pytest.raises(ValueError, match="mode must be"):
        instruct.match(texts, imgs, clip, mode="best")


def test_match_indexes_the_callers_list_around_blank_instructions(sample_images):
    clip = models.load(CLIP, kind="clip")
    texts = ["a photo of a cat", "a rocket on a launch pad", "a cup of coffee"]
    imgs = list(sample_images.values())[:4]
    plain = instruct.match(texts, imgs, clip)
    given = ["", texts[0], None, "  ", texts[1], texts[2]]
    m = instruct.match(given, imgs, clip)
    assert m["instruction_index"].to_list() == [[1, 4, 5][j] for j in plain["instruction_index"].to_list()]
    assert m["instruction"].to_list() == [given[j] for j in m["instruction_index"].to_list()] == plain["instruction"].to_list()
    assert m["score"].equals(plain["score"])


def test_answer_sees_only_the_caption(scripted):
    scripted.answer = scripted_answer
    with client(scripted) as c:
        df = instruct.answer([{"caption": "a red bus", "instruction": "What colour is it?"}, {"caption": "", "instruction": "x"}], c, examples=[{"caption": "a cat", "instruction": "Name it.", "answer": "A cat."}])
    assert df["answer"].to_list() == ["Answer to: What colour is it?", None] and df.row(1, named=True)["error"].startswith("caption and instruction")
    body = scripted.requests[0]
    assert count_images(body) == 0 and [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert "a red bus" in user_text(body)


def test_answers_cut_off_or_empty_are_errors_and_asked_again(scripted, tmp_path):
    """An answer cut off at max_tokens (finish_reason "length") is not a finished answer, and an
    empty one is none: both are row errors and leave the cache, so the next run asks again
    (and keeps what it then gets)."""
    scripted.answer = scripted_answer
    scripted.fault = lambda body, attempt: (Fault(content="The bus is parked next to a", finish_reason="length") if "cut" in user_text(body) else Fault(content=" ")) if attempt == 1 else None
    pairs = [{"caption": "a red bus", "instruction": "cut"}, {"caption": "a red bus", "instruction": "empty"}]
    cache = tmp_path / "c.sqlite"
    with client(scripted, cache=cache) as c:
        first = instruct.answer(pairs, c)
    assert first["answer"].to_list() == [None, None] and first["error"].to_list() == ["the answer was cut off at max_tokens", "empty answer"]
    with client(scripted, cache=cache) as c:
        second = instruct.answer(pairs, c)
        assert c.last_stats.cached == 0 and c.last_stats.sent == 2
    assert second["answer"].to_list() == ["Answer to: cut", "Answer to: empty"] and second["error"].null_count() == 2
    with client(scripted, cache=cache) as c:
        assert instruct.answer(pairs, c)["answer"].to_list() == second["answer"].to_list() and c.last_stats.cached == 2


def test_compare_swaps_the_order(scripted):
    scripted.answer = scripted_answer
    scripted.fault = lambda body, attempt: Fault(status=404) if "Instruction: broken" in user_text(body) else None
    items = [
        {"instruction": "q", "a": "good", "b": "meh"},  # A first: A; swapped (meh first): neither -> disagree -> tie
        {"instruction": "q", "a": "good", "b": "bad"},  # A; swapped: "bad" first -> B = good -> a
        {"instruction": "q", "a": "flip1", "b": "flip2"},  # always "A": position bias -> tie
        {"instruction": "q", "a": "same1", "b": "x"},  # neither both times -> tie
        {"instruction": "broken", "a": "1", "b": "2"},
    ]
    with client(scripted) as c:
        df = instruct.compare(items, c)
    assert df["winner"].to_list() == ["tie", "a", "tie", "tie", None]
    assert df.row(1, named=True)["verdict_ab"] == "a" and df.row(1, named=True)["verdict_ba"] == "a"
    assert df.row(2, named=True)["verdict_ab"] == "a" and df.row(2, named=True)["verdict_ba"] == "b"
    assert "HTTP 404" in df.row(4, named=True)["error"]
    assert len(scripted.requests) == 2 * len(items)


def test_compare_refuses_missing_or_blank_fields_without_a_request(scripted):
    scripted.answer = scripted_answer
    items = [
        {"instruction": "q", "a": "good", "b": None},
        {"instruction": None, "a": "good", "b": "bad"},
        {"instruction": "q", "a": "  ", "b": "bad"},
        {"instruction": "q", "a": "good", "b": "bad", "caption": " "},
    ]
    with client(scripted) as c:
        df = instruct.compare(items, c)
    assert df["winner"].to_list() == [None, None, None, "a"]
    assert df["error"].to_list()[:3] == ["instruction, a and b must be non-blank strings"] * 3 and df["verdict_ab"].to_list()[:3] == [None] * 3
    assert len(scripted.requests) == 2 and all("None" not in user_text(b) and "Image description" not in user_text(b) for b in scripted.requests)


def test_instruct_on_llama_end_to_end(llama_server, sample_dir, tmp_path):
    pairs = pl.read_ndjson(sample_dir / "pairs.jsonl").head(4)
    with Client(llama_server.url, llama_server.model, max_tokens=300, concurrency=4) as c:
        gen = instruct.generate(pairs["caption"], c, per_caption=2)
        ok = gen.filter(pl.col("error").is_null())
        assert set(gen["caption_index"]) == {0, 1, 2, 3}
        # A random-weight model cut at max_tokens may leave every JSON answer unfinished (it
        # depends on the llama.cpp build): each such row carries its error, none is lost.
        assert (gen["instruction"].is_null() == gen["error"].is_not_null()).all()
        # Clustering and the summary request run on the real server either way.
        texts = ok["instruction"] if ok.height >= 2 else pairs["caption"]
        cl = instruct.cluster(texts, EMBEDDER, 2)
        sm = instruct.summarise(cl, c)
        assert sm["size"].sum() == cl["cluster"].drop_nulls().len()
        ans = instruct.answer([{"caption": cap, "instruction": "Describe it."} for cap in pairs["caption"]], c)
        cmp = instruct.compare([{"instruction": "Describe it.", "a": "one", "b": "two"}] * 2, c)
        assert c.stats.failed == 0
    # Gibberish, sometimes nothing (the random model may stop at once): an answer or an error per row.
    assert ans.height == 4 and all((a is None) != (e is None) for a, e in zip(ans["answer"], ans["error"], strict=True))
    assert cmp.height == 2 and all((w in ("a", "b", "tie")) or e for w, e in zip(cmp["winner"], cmp["error"], strict=True))


def test_cli_instruct_run_and_compare(scripted, sample_dir, tmp_path):
    scripted.answer = scripted_answer
    out = tmp_path / "mm"
    r = subprocess.run(
        [sys.executable, "-m", "interleaf.cli", "instruct", "run", str(sample_dir / "pairs.jsonl"), "--limit", "4", "--embedder", EMBEDDER, "--clip", CLIP, "--k", "2", "--per-caption", "2",
         "--base-url", scripted.url, "--model", "m", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["inputs"], summary["generated"], summary["instructions"], summary["samples"], summary["answered"]) == (4, 8, 2, 4, 4)
    samples = pl.read_parquet(out / "samples.parquet")
    final = pl.read_parquet(out / "instructions.parquet")
    captions = pl.read_ndjson(sample_dir / "pairs.jsonl").head(4)
    assert samples["doc_id"].to_list() == captions["id"].to_list() and samples["caption"].to_list() == captions["caption"].to_list()
    assert set(samples["instruction"]) <= set(final["instruction"]) and samples["error"].null_count() == 4
    assert samples["answer"].to_list() == [f"Answer to: {i}" for i in samples["instruction"]]
    assert pl.read_parquet(out / "generated.parquet").height == 8 and final["size"].sum() == 8
    table = tmp_path / "pairs.jsonl"
    table.write_text("\n".join(json.dumps(x) for x in [{"instruction": "q", "a": "good", "b": "bad"}, {"instruction": "q", "a": "flip1", "b": "flip2"}]) + "\n")
    r = subprocess.run([sys.executable, "-m", "interleaf.cli", "instruct", "compare", str(table), "--base-url", scripted.url, "--model", "m", "--out", str(tmp_path / "cmp.parquet"), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["winners"] == {"a": 1, "tie": 1} and pl.read_parquet(tmp_path / "cmp.parquet")["winner"].to_list() == ["a", "tie"]
