"""The OpenAI-compatible client against a scripted local server: order, concurrency, retries and
faults, the cache and a killed run resumed, structured-output fallback, images; the tolerant
parsers against a table of real-looking answers."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from llm_server import Fault, count_images, scripted_client, user_text
from PIL import Image

from interleaf.llm import Cache, Client, Response, image_urls, parse_json, parse_scores, parse_synjudge, request_key


@pytest.fixture()
def srv(scripted):
    return scripted


def client(srv, **kw) -> Client:
    return scripted_client(srv, **{"max_retries": 5, **kw})


def test_order_and_concurrency_limit(srv):
    srv.latency = 0.01
    prompts = [f"p{i}" for i in range(120)]
    with client(srv, concurrency=8) as c:
        out = c.chat(prompts)
    assert [r.text for r in out] == [f"echo {p}" for p in prompts]
    assert all(r.ok and r.attempts == 1 and not r.cached for r in out)
    assert 2 <= srv.max_in_flight <= 8
    s = c.last_stats
    assert (s.requests, s.sent, s.cached, s.retried, s.failed) == (120, 120, 0, 0, 0)
    assert s.prompt_tokens > 0 and s.completion_tokens == 240


def test_faults_are_retried_and_nothing_is_lost(srv):
    def fault(body, attempt):
        t = user_text(body)
        plan = {
            "500": Fault(status=500),
            "503": Fault(status=503),
            "429": Fault(status=429, retry_after=0.3),
            "drop": Fault(drop=True),
            "slow": Fault(delay=1.5),
            "garbage": Fault(body="{this is not json"),
        }
        if t in plan and attempt <= (2 if t == "500" else 1):
            return plan[t]
        if t == "404":
            return Fault(status=404)
        if t == "always500":
            return Fault(status=500)
        return None

    srv.fault = fault
    prompts = ["ok", "500", "503", "429", "drop", "slow", "garbage", "404", "always500"]
    with client(srv, concurrency=4, timeout=0.5, max_retries=3) as c:
        out = c.chat(prompts)
    assert len(out) == len(prompts)
    by = dict(zip(prompts, out, strict=True))
    for p in ("ok", "500", "503", "429", "drop", "slow", "garbage"):
        assert by[p].ok and by[p].text == f"echo {p}", (p, by[p])
    assert by["ok"].attempts == 1 and by["500"].attempts == 3 and by["429"].attempts == 2
    assert by["drop"].attempts == 2 and by["slow"].attempts == 2 and by["garbage"].attempts == 2
    # 4xx other than 429 are not retried; a persistent 5xx fails after max_retries retries.
    assert not by["404"].ok and by["404"].attempts == 1 and "HTTP 404" in by["404"].error
    assert not by["always500"].ok and by["always500"].attempts == 4 and "HTTP 500" in by["always500"].error and "after 4 attempts" in by["always500"].error
    assert srv.seen[json.dumps([{"role": "user", "content": "404"}], sort_keys=True)] == 1
    s = c.last_stats
    assert s.failed == 2 and s.retried == 2 + 1 + 1 + 1 + 1 + 1 + 3
    assert s.sent == len(prompts) + s.retried
    # Retry-After was honoured: the server saw the retry of "429" at least 0.3 s after the
    # first attempt (the 0.01 s backoff would have sent it at once).
    first, retry = srv.arrivals[json.dumps([{"role": "user", "content": "429"}], sort_keys=True)]
    assert retry - first >= 0.3


def test_a_trickling_or_endless_answer_is_cut_off(srv):
    """The timeout bounds an attempt as a whole (a server that trickles bytes forever times
    out), and an answer body over max_response_bytes fails its request at once, unretried,
    without being held."""
    srv.fault = lambda body, attempt: {"trickle": Fault(trickle=0.1), "endless": Fault(stream_bytes=1 << 40)}.get(user_text(body))
    with client(srv, timeout=1.0, max_retries=1, max_response_bytes=1 << 20) as c:
        out = c.chat(["ok", "trickle", "endless"])
    assert out[0].ok
    assert not out[1].ok and "timed out after 1 s" in out[1].error and out[1].attempts == 2
    assert not out[2].ok and "over 1,048,576 bytes" in out[2].error and out[2].attempts == 1
    assert c.last_stats.failed == 2


def test_a_recipe_named_endpoint_gets_no_key_unless_the_user_names_its_variable(monkeypatch):
    """A recipe cannot send the user's API key, or any other variable, to a server of its
    choosing: an endpoint the recipe names gets a key only from the variable named at run time
    (--llm-api-key-env, llm={'api_key_env': ...}); a recipe that names one is refused; an
    endpoint the user gives (--llm-base-url or INTERLEAF_LLM_BASE_URL) gets the usual
    INTERLEAF_LLM_API_KEY / OPENAI_API_KEY, or the variable named at run time."""
    from interleaf.pipeline import llm_config
    from interleaf.recipes import RecipeError, parse

    monkeypatch.setenv("OPENAI_API_KEY", "sk-user")
    monkeypatch.setenv("MY_KEY", "sk-mine")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-secret")
    monkeypatch.delenv("INTERLEAF_LLM_API_KEY", raising=False)
    monkeypatch.delenv("INTERLEAF_LLM_BASE_URL", raising=False)
    base = "signals:\n  j: {type: llm_judge, judge: comm}\nllm: {base_url: 'http://elsewhere:1/v1', model: m%s}\n"
    named = llm_config(parse(base % ""))
    assert Client(**named).api_key == "none"
    with pytest.raises(RecipeError, match="api_key_env is not read from a recipe.*--llm-api-key-env"):
        parse(base % ", api_key_env: GITHUB_TOKEN")
    assert Client(**llm_config(parse(base % ""), {"api_key_env": "MY_KEY"})).api_key == "sk-mine"
    mine = llm_config(parse(base % ""), {"base_url": "http://127.0.0.1:9/v1"})
    assert Client(**mine).api_key == "sk-user"
    assert Client(**llm_config(parse(base % ""), {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "MY_KEY"})).api_key == "sk-mine"
    monkeypatch.setenv("INTERLEAF_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    assert Client(**llm_config(parse("signals:\n  j: {type: llm_judge, judge: comm}\nllm: {model: m}\n"))).api_key == "sk-user"


def test_bad_requests_fail_alone(srv):
    with client(srv) as c:
        out = c.chat(["fine", {"nomessages": 1}, {"messages": [{"role": "user", "content": "x"}], "bogus": 1}, 42])
    assert out[0].ok
    assert "dict with 'messages'" in out[1].error and "unknown request keys: bogus" in out[2].error and out[3].error
    assert len(srv.requests) == 1


def test_cache_rerun_sends_nothing(srv, tmp_path):
    cache = tmp_path / "cache" / "llm.sqlite"
    srv.fault = lambda body, attempt: Fault(status=500) if user_text(body) == "bad" else None
    prompts = [f"q{i}" for i in range(30)] + ["bad"]
    with client(srv, cache=cache, max_retries=0) as c:
        first = c.chat(prompts)
    assert not first[-1].ok and all(r.ok for r in first[:-1])
    srv.reset()
    srv.fault = None
    with client(srv, cache=cache) as c:
        second = c.chat(prompts)
        assert c.last_stats.cached == 30 and c.last_stats.sent == 1
    # Only the failed request went out again; every answer is the same.
    assert [user_text(b) for b in srv.requests] == ["bad"]
    assert [r.text for r in second[:-1]] == [r.text for r in first[:-1]] and all(r.cached for r in second[:-1])
    assert second[-1].ok and not second[-1].cached
    srv.reset()
    with client(srv, cache=cache) as c:
        c.chat(prompts)
        assert c.last_stats.sent == 0 and c.last_stats.cached == 31
    assert srv.requests == []
    # Another model or other parameters are other keys.
    assert request_key("a", [{"role": "user", "content": "x"}], {}) != request_key("b", [{"role": "user", "content": "x"}], {})
    assert request_key("a", [{"role": "user", "content": "x"}], {"temperature": 0}) != request_key("a", [{"role": "user", "content": "x"}], {})
    assert len(Cache(cache)) == 31


def test_refresh_sends_every_request_and_replaces_the_stored_answers(srv, tmp_path):
    cache = tmp_path / "llm.sqlite"
    with client(srv, cache=cache) as c:
        c.chat(["a", "b"])
    srv.reset()
    srv.answer = lambda body: "new " + user_text(body)
    with client(srv, cache=cache, refresh=True) as c:
        out = c.chat(["a", "b"])
        assert c.last_stats.cached == 0 and c.last_stats.sent == 2
    assert [r.text for r in out] == ["new a", "new b"] and len(srv.requests) == 2
    srv.reset()
    with client(srv, cache=cache) as c:
        again = c.chat(["a", "b"])
    assert [r.text for r in again] == ["new a", "new b"] and all(r.cached for r in again) and srv.requests == []
    with pytest.raises(ValueError, match="refresh must be True or False"):
        client(srv, refresh="yes")


def test_an_answer_that_could_not_be_parsed_is_asked_again(srv, tmp_path):
    from interleaf.llm import parse_failure

    cache = tmp_path / "llm.sqlite"
    with client(srv, cache=cache) as c:
        first = c.chat(["keep", "drop"])
        assert parse_failure(first[1], "no JSON object") == "parse: no JSON object"
    assert len(Cache(cache)) == 1
    srv.reset()
    with client(srv, cache=cache) as c:
        again = c.chat(["keep", "drop"])
        parse_failure(again[0], "x")  # one served from the cache is removed as well
    assert [user_text(b) for b in srv.requests] == ["drop"] and again[0].cached and not again[1].cached
    assert len(Cache(cache)) == 1
    Response("no cache").uncache()  # a response without a cache: nothing to remove


def test_a_cache_that_cannot_be_written_costs_the_cache_not_the_answers(srv, tmp_path, monkeypatch, capsys):
    import sqlite3

    def full(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Cache, "put", full)
    prompts = [f"f{i}" for i in range(12)]
    with client(srv, cache=tmp_path / "llm.sqlite") as c:
        out = c.chat(prompts)
        assert c.last_stats.failed == 0 and c.last_stats.sent == 12
    assert [r.text for r in out] == [f"echo {p}" for p in prompts]
    err = capsys.readouterr().err
    assert err.count("cannot be stored in the cache") == 1 and "disk is full" in err


def _completion(message: dict, finish: str = "stop") -> str:
    return json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}], "usage": {"prompt_tokens": 7, "completion_tokens": 5}})


def test_answers_in_the_shapes_real_servers_send(srv, tmp_path):
    """A JSON answer sent as text/plain is read; content parts are joined; an answer with only
    reasoning (a reasoning model out of max_tokens) or tool calls is an error that says so, is
    not cached (a rerun asks again) and its tokens are counted."""
    shapes = {
        "plain": Fault(body=_completion({"content": "fine"}), content_type="text/plain"),
        "parts": Fault(body=_completion({"content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]})),
        "think": Fault(body=_completion({"content": "", "reasoning_content": "Let me think..."}, "length")),
        "tools": Fault(body=_completion({"content": None, "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})),
    }
    srv.fault = lambda body, attempt: shapes[user_text(body)]
    cache = tmp_path / "c.sqlite"
    with client(srv, cache=cache, max_retries=0) as c:
        out = dict(zip(shapes, c.chat(list(shapes)), strict=True))
        assert c.last_stats.prompt_tokens == 28
    assert out["plain"].text == "fine" and out["parts"].text == "one two"
    assert out["think"].error == "the server answered without message content: only reasoning (reasoning_content) and no answer (cut off at max_tokens)"
    assert out["tools"].error == "the server answered without message content: tool calls instead of text"
    assert len(Cache(cache)) == 2  # the failures are not cached
    srv.fault = None
    srv.reset()
    with client(srv, cache=cache) as c:
        again = c.chat(["think", "tools"])
    assert [r.text for r in again] == ["echo think", "echo tools"] and len(srv.requests) == 2


def _batch_in_a_child(srv, cache, prompts, answered: int, sig: int, **popen) -> subprocess.Popen:
    """``prompts`` asked of the scripted server by a child process (the interleaf this test
    imports) with ``cache``, sent ``sig`` once ``answered`` answers are cached."""
    script = textwrap.dedent(
        f"""
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, whoever started the tests
        from interleaf.llm import Client
        c = Client({srv.url!r}, "scripted", concurrency=2, cache={str(cache)!r})
        c.chat({prompts!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], **popen)
    deadline = time.monotonic() + 60
    while (len(Cache(cache)) if cache.exists() else 0) < answered and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    return proc


def test_ctrl_c_stops_a_batch_at_once_and_keeps_the_answers_received(srv, tmp_path):
    """Ctrl-C during a long batch stops it without waiting for the rest of the requests; the
    answers already received are in the cache for the rerun."""
    srv.latency = 0.05
    cache = tmp_path / "llm.sqlite"
    prompts = [f"i{i}" for i in range(200)]
    proc = _batch_in_a_child(srv, cache, prompts, 10, signal.SIGINT, stderr=subprocess.PIPE, text=True)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    done = len(Cache(cache))
    # It stopped there: far fewer than the 200 requests went out (2 were in flight).
    assert 10 <= done and len(srv.requests) <= done + 10 < len(prompts)


def test_killed_run_resumes_from_the_cache(srv, tmp_path):
    srv.latency = 0.05
    cache = tmp_path / "llm.sqlite"
    prompts = [f"k{i}" for i in range(80)]
    proc = _batch_in_a_child(srv, cache, prompts, 20, signal.SIGKILL)
    proc.wait()
    done = len(Cache(cache))
    assert 20 <= done < len(prompts)
    srv.reset()
    srv.latency = 0.0
    with client(srv, cache=cache) as c:
        out = c.chat(prompts)
        assert c.last_stats.cached == done and c.last_stats.sent == len(prompts) - done
    assert [r.text for r in out] == [f"echo {p}" for p in prompts]
    assert len(srv.requests) == len(prompts) - done


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": False}


def test_structured_output_falls_back_when_the_server_rejects_json_schema(srv):
    srv.reject_json_schema = True
    srv.answer = lambda body: json.dumps({"n": 1, "fmt": (body.get("response_format") or {}).get("type")})
    reqs = [{"messages": [{"role": "user", "content": f"s{i}"}], "schema": SCHEMA} for i in range(10)]
    with client(srv, concurrency=1) as c:
        out = c.chat(reqs)
        assert c.structured_mode == "json_object"
        assert c.last_stats.failed == 0 and c.last_stats.retried == 0
    assert [json.loads(r.text)["fmt"] for r in out] == ["json_object"] * 10
    sent = [b.get("response_format", {}) for b in srv.requests]
    assert sent[0]["type"] == "json_schema" and sent[0]["json_schema"]["schema"] == SCHEMA
    assert all(f == {"type": "json_object", "schema": SCHEMA} for f in sent[1:]) and len(sent) == 11
    # A fixed mode is never changed; "none" sends no response_format at all.
    srv.reset()
    with client(srv, structured="none") as c:
        c.chat(reqs[:2])
    assert all("response_format" not in b for b in srv.requests)


def test_defaults_and_request_params_reach_the_server(srv):
    with client(srv, temperature=0.0, max_tokens=33, seed=5) as c:
        c.chat([{"messages": [{"role": "user", "content": "p"}], "max_tokens": 7}])
    b = srv.requests[0]
    assert b["temperature"] == 0.0 and b["max_tokens"] == 7 and b["seed"] == 5 and b["model"] == "scripted"


def test_no_endpoint_is_an_error(monkeypatch, srv):
    monkeypatch.delenv("INTERLEAF_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("INTERLEAF_LLM_MODEL", raising=False)
    with pytest.raises(ValueError, match="no LLM endpoint configured"):
        Client()
    with pytest.raises(ValueError, match="no LLM model configured"):
        Client("http://127.0.0.1:1/v1")
    monkeypatch.setenv("INTERLEAF_LLM_BASE_URL", srv.url)
    monkeypatch.setenv("INTERLEAF_LLM_MODEL", "from-env")
    with Client() as c:
        assert c.chat(["env"])[0].text == "echo env"
    assert srv.requests[-1]["model"] == "from-env"
    for bad in ({"concurrency": 0}, {"max_retries": -1}, {"timeout": 0}, {"structured": "xml"}):
        with pytest.raises(ValueError):
            Client(srv.url, "m", **bad)


def test_unreachable_server_fails_every_request_with_its_error():
    with Client("http://127.0.0.1:9/v1", "m", max_retries=1, backoff=0.01, timeout=2) as c:
        out = c.chat(["a", "b"])
    assert all(not r.ok and "connection failed" in r.error and r.attempts == 2 for r in out)


def test_progress_line(srv):
    buf = io.StringIO()
    with client(srv) as c:
        c.chat(["a", "b", "c"], progress=buf, label="judge")
    assert "judge: 3/3 requests (0 cached, 0 retried, 0 failed)" in buf.getvalue() and "req/s" in buf.getvalue() and "tokens" in buf.getvalue()


def test_images_are_sent_as_bounded_jpeg_data_urls(srv, sample_images):
    big = Image.new("RGB", (1600, 900), (200, 30, 30))
    png = io.BytesIO()
    big.save(png, "PNG")
    one = io.BytesIO()
    Image.new("L", (1, 1), 0).save(one, "PNG")
    imgs = [png.getvalue(), one.getvalue(), None, b"not an image", next(iter(sample_images.values()))]
    urls = image_urls(imgs, 512)
    assert urls[2] == (None, None) and urls[3][0] is None and "unknown_image_format" in urls[3][1]
    import base64

    sizes = []
    for url, err in (urls[0], urls[1], urls[4]):
        assert err is None and url.startswith("data:image/jpeg;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert im.format == "JPEG"
        sizes.append(im.size)
    assert sizes[0] == (512, 288) and sizes[1] == (1, 1) and max(sizes[2]) <= 512
    for bad in (0, 5000):  # named as the stages and --max-edge name it, with or without images
        with pytest.raises(ValueError, match=r"^max_edge must be an int \[1, 4096\]"):
            image_urls(imgs, bad)
        with pytest.raises(ValueError, match=r"^max_edge must be"):
            image_urls([], bad)
    from interleaf.llm import image_part, text_part

    with client(srv) as c:
        srv.answer = lambda body: str(count_images(body))
        r = c.chat([[{"role": "user", "content": [text_part("look"), image_part(urls[0][0]), image_part(urls[4][0])]}]])
    assert r[0].text == "2"


PARSE_TABLE = [
    ('{"score": 7}', {"score": 7}),
    ('Sure! Here is my rating:\n```json\n{"score": 7, "reason": "fine"}\n```\nHope this helps.', {"score": 7, "reason": "fine"}),
    ('```\n{"score": 7,}\n```', {"score": 7}),
    ('The answer is {"score": 7, "aspects": {"a": 1,},} thanks', {"score": 7, "aspects": {"a": 1}}),
    ('{"caption": "line one\nline two"}', {"caption": "line one\nline two"}),
    # A reasoning model's thoughts (with an object in them) before the answer.
    ('<think>Maybe {"score": 1}? No.</think>\n{"score": 7}', {"score": 7}),
    # An example before the answer, braces in prose after it: the last whole object.
    ('For example {"score": 0}. My answer: {"score": 7}', {"score": 7}),
    ('{"score": 7} (format: {score})', {"score": 7}),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_TABLE)
def test_parse_json_table(text, expected):
    assert parse_json(text) == (expected, None)


@pytest.mark.parametrize(("text", "message"), [(None, "no answer"), ("   ", "empty answer"), ("I cannot rate this image.", "no JSON object"), ('{"score": 7', "no JSON object"), ("{score: seven}", "invalid JSON object"), ("<think>I need more tokens to", "only reasoning (<think>)")])
def test_parse_json_failures_say_why(text, message):
    value, err = parse_json(text)
    assert value is None and message in err


def test_parsers_survive_hostile_answers():
    """Deep nesting is an unreadable answer, not a RecursionError; long blank runs parse in
    linear time (the SynJudge pattern once backtracked quadratically on them)."""
    obj, err = parse_json("[" * 100_000)
    assert obj is None and err.startswith("no JSON object")
    obj, err = parse_json('{"a": ' + "[" * 100_000 + "}")
    assert obj is None and err.startswith("invalid JSON object")
    scores, err = parse_synjudge("tcc" + " " * 200_000 + "x")
    assert scores is None and "SynJudge format not found" in err
    ok, _ = parse_synjudge("TCC :  ** 4; ICC: 3 ; IQ = 5; ITS:\n 2")
    assert ok == {"tcc": 4, "icc": 3, "iq": 5, "its": 2}


def test_parse_scores_types_and_ranges():
    fields = {"score": (1, 10), "text_quality": (1, 10)}
    assert parse_scores({"Score": "8", "Text Quality": 7.0}, fields) == ({"score": 8, "text_quality": 7}, None)
    assert parse_scores({"score": "8/10", "text-quality": 3}, fields) == ({"score": 8, "text_quality": 3}, None)
    assert parse_scores({"score": 11, "text_quality": 3}, fields)[1] == "score: 11 is outside 1-10"
    assert parse_scores({"score": "high", "text_quality": 3}, fields)[1] == "score: expected an integer, got 'high'"
    assert parse_scores({"score": True, "text_quality": 3}, fields)[1].startswith("score: expected an integer")
    assert parse_scores({"score": 7.5, "text_quality": 3}, fields)[1].startswith("score: expected an integer")
    assert parse_scores({"text_quality": 3}, fields)[1] == "missing field 'score'"


def test_a_score_over_another_scale_is_refused_not_misread():
    """"7/10" on a 1-10 scale is 7; "4/5" there is not a 4 out of 10 (nor is "8/100"): the
    record fails to parse, saying which scale, rather than averaging in a misread score. The
    SynJudge line keeps its denominator too: "4/5" is a 4 on its 0-5 scale, "2/10" is refused."""
    fields = {"score": (1, 10)}
    assert parse_scores({"score": "7/10"}, fields) == ({"score": 7}, None)
    assert parse_scores({"score": " 10 / 10 "}, fields) == ({"score": 10}, None)
    for bad, over in (("4/5", 5), ("8/100", 100), ("3/3", 3)):
        assert parse_scores({"score": bad}, fields) == (None, f"score: {bad!r} is a score out of {over}, not on the 1-10 scale")
    assert parse_synjudge("TCC: 4/5, ICC: 3/5, IQ: 5/5, ITS: 2/5") == ({"tcc": 4, "icc": 3, "iq": 5, "its": 2}, None)
    assert parse_synjudge("TCC: 2/10, ICC: 3/10, IQ: 4/10, ITS: 1/10") == (None, "tcc: '2/10' is a score out of 10, not on the 0-5 scale")
    assert parse_synjudge('{"tcc": "4/10", "icc": 3, "iq": 5, "its": 2}')[1] == "tcc: '4/10' is a score out of 10, not on the 0-5 scale"


SYNJUDGE_TABLE = [
    ("[Text Content Completeness: 4; Image Content Completeness: 3; Image Quality: 5; Image-Text Synergy: 2]", (4, 3, 5, 2)),
    ("Evaluation:\n[Text Content Completeness: 4; Image Content Completeness: 3; Image Quality: 5; Image-Text Synergy: 2]\nThe image repeats the text.", (4, 3, 5, 2)),
    ("Text Content Completeness = 1, Image Content Completeness = 0, Image Quality = 0, Image Text Synergy = 0", (1, 0, 0, 0)),
    ("**Text Content Completeness (TCC):** 5\n**Image Content Completeness (ICC):** 4\n**Image Quality (IQ):** 4\n**Image-Text Synergy (ITS):** 3", (5, 4, 4, 3)),
    ("TCC: 2; ICC: 2; IQ: 1; ITS: 0", (2, 2, 1, 0)),
    ("**TCC**: 3\n**ICC**: 4\n**IQ**: 5\n**ITS**: 2", (3, 4, 5, 2)),
    ("**Text Content Completeness (TCC)**: 4, **Image Quality (IQ)**: 5, **Image Content Completeness (ICC)**: 3, **Image-Text Synergy (ITS)**: 2", (4, 3, 5, 2)),
    # A reasoning model's drafts are not its answer.
    ("<think>TCC: 1; ICC: 1; IQ: 1; ITS: 1? Let me look again.</think>TCC: 2; ICC: 2; IQ: 1; ITS: 0", (2, 2, 1, 0)),
    ('{"tcc": 3, "icc": 3, "iq": 4, "its": 4}', (3, 3, 4, 4)),
    # A draft line, then the final one: the final answer wins (as parse_json's last object).
    ("Draft: [Text Content Completeness: 1; Image Content Completeness: 1; Image Quality: 1; Image-Text Synergy: 1]\nFinal: [Text Content Completeness: 4; Image Content Completeness: 3; Image Quality: 5; Image-Text Synergy: 4]", (4, 3, 5, 4)),
    ("TCC: 1; ICC: 1; IQ: 1; ITS: 1\nOn reflection:\n**TCC**: 2\n**ICC**: 3\n**IQ**: 4\n**ITS**: 5", (2, 3, 4, 5)),
    ('{"Text Content Completeness": 3, "Image Content Completeness": 2, "Image Quality": 4, "Image-Text Synergy": 1}', (3, 2, 4, 1)),
]


@pytest.mark.parametrize(("text", "expected"), SYNJUDGE_TABLE)
def test_parse_synjudge_table(text, expected):
    scores, err = parse_synjudge(text)
    assert err is None and tuple(scores[k] for k in ("tcc", "icc", "iq", "its")) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[Text Content Completeness: 4; Image Content Completeness: 3; Image Quality: 5]", "missing Image-Text Synergy"),
        ("[Text Content Completeness: 7; Image Content Completeness: 3; Image Quality: 5; Image-Text Synergy: 2]", "tcc: 7 is outside 0-5"),
        ("[Text Content Completeness: 4.5; Image Content Completeness: 3; Image Quality: 5; Image-Text Synergy: 2]", "tcc: expected an integer"),
        ("I'd give it a solid four.", "SynJudge format not found"),
    ],
)
def test_parse_synjudge_failures(text, message):
    scores, err = parse_synjudge(text)
    assert scores is None and message in err


def test_images_endpoint_retries_and_cache(srv, tmp_path):
    srv.fault = lambda body, attempt: Fault(status=503) if body.get("prompt") == "flaky" and attempt == 1 else (Fault(status=400) if body.get("prompt") == "refused" else None)
    cache = tmp_path / "img.sqlite"
    with client(srv, cache=cache) as c:
        out = c.images(["a red square", "flaky", "refused", "  "], size="256x256")
        s = c.last_stats
    assert out[0].ok and Image.open(io.BytesIO(out[0].image)).size == (64, 64)
    assert out[1].ok and out[1].attempts == 2
    assert not out[2].ok and "HTTP 400" in out[2].error and not out[3].ok and "non-blank" in out[3].error
    assert (s.requests, s.failed, s.retried) == (4, 2, 1)
    assert srv.requests[0]["size"] == "256x256" and srv.requests[0]["response_format"] == "b64_json" and srv.requests[0]["model"] == "scripted"
    srv.reset()
    with client(srv, cache=cache) as c:
        again = c.images(["a red square", "flaky"], size="256x256")
    assert srv.requests == [] and [r.image for r in again] == [out[0].image, out[1].image] and all(r.cached for r in again)


def test_a_base_url_without_its_api_path_is_named_in_the_error(srv):
    root = srv.url.rsplit("/v1", 1)[0]
    assert root != srv.url
    with Client(root, "scripted", max_retries=0) as c:
        (r,) = c.chat(["hello"])
    assert r.error.startswith("HTTP 404") and f"POST {root}/chat/completions: is base_url the API root" in r.error
    srv.fault = lambda body, attempt: Fault(status=501)
    with client(srv, max_retries=3) as c:
        (r,) = c.chat(["hello"])
        assert c.last_stats.sent == 1  # 501 Not Implemented is not retried
    assert r.error.startswith("HTTP 501")


def test_a_batch_to_an_endpoint_that_cannot_be_reached_stops_early():
    """Nothing listens on the port: after the first 16 requests fail to connect (each after its
    retries) the other 184 are not sent, and say why."""
    with Client("http://127.0.0.1:9/v1", "m", concurrency=2, max_retries=1, backoff=0.01) as c:
        out = c.chat([f"p{i}" for i in range(200)])
        assert c.last_stats.failed == 200 and c.last_stats.sent <= 2 * (16 + 2)
    assert sum(r.error.startswith("not sent: the endpoint failed the first 16 requests (connection failed") for r in out) >= 200 - 18


@pytest.mark.parametrize(("status", "retried"), [(401, False), (403, False), (404, False), (502, True), (503, True), (504, True)])
def test_a_batch_that_the_endpoint_refuses_as_a_whole_stops_early(srv, status, retried):
    """A wrong key (401, 403), model or path (404), or a proxy whose upstream is gone (502, 503,
    504, each after its retries) fails every request alike: after the first 16 in a row, the
    rest are not sent and say why, as for an endpoint that cannot be reached."""
    srv.fault = lambda body, attempt: Fault(status=status)
    with client(srv, concurrency=2, max_retries=1) as c:
        out = c.chat([f"p{i}" for i in range(200)])
        s = c.last_stats
    assert s.failed == 200 and s.sent <= (2 if retried else 1) * (16 + 2) and len(srv.requests) == s.sent
    assert s.retried == (s.sent // 2 if retried else 0)
    stopped = [r for r in out if r.error.startswith(f"not sent: the endpoint failed the first 16 requests (HTTP {status}: scripted {status}")]
    assert len(stopped) >= 200 - 18 and all(r.attempts == 0 for r in stopped)


def test_the_breaker_counts_only_a_run_of_one_endpoint_failure(srv):
    """Errors of single requests (400, 422) never stop a batch; failures of different kinds do
    not add up to a run; and once the endpoint has answered, a run of 16 does not stop it."""
    srv.fault = lambda body, attempt: Fault(status=400)
    with client(srv, concurrency=2) as c:
        out = c.chat([f"p{i}" for i in range(40)])
    assert len(srv.requests) == 40 and all(r.error.startswith("HTTP 400") for r in out)
    srv.reset()
    srv.fault = lambda body, attempt: Fault(status=401 if int(user_text(body)[1:]) % 2 else 404)
    with client(srv, concurrency=1) as c:
        c.chat([f"p{i}" for i in range(40)])
    assert len(srv.requests) == 40
    srv.reset()
    srv.fault = lambda body, attempt: None if user_text(body) == "p0" else Fault(status=401)
    with client(srv, concurrency=1) as c:
        out = c.chat([f"p{i}" for i in range(40)])
    assert len(srv.requests) == 40 and out[0].ok and not any(r.error.startswith("not sent") for r in out[1:])


def test_an_endpoint_that_dies_mid_batch_stops_it_after_a_longer_run(srv):
    """A server that answered and then went away (503 from its proxy, each after its retries):
    after 64 failures in a row (4 x 16) the rest are not sent, and say a rerun asks again; a
    request's own error (400) in between starts the count again."""
    srv.fault = lambda body, attempt: None if int(user_text(body)[1:]) < 10 else Fault(status=400) if user_text(body) == "p40" else Fault(status=503)
    with client(srv, concurrency=1, max_retries=1) as c:
        out = c.chat([f"p{i}" for i in range(400)])
        s = c.last_stats
    assert all(r.ok for r in out[:10]) and out[40].error.startswith("HTTP 400")
    stopped = [i for i, r in enumerate(out) if r.error and r.error.startswith("not sent: the endpoint answered, then failed the last 64 requests in a row (HTTP 503")]
    assert stopped == list(range(41 + 64, 400)), stopped[:3]
    assert s.sent == 10 + 2 * 30 + 1 + 2 * 64 and len(srv.requests) == s.sent


def test_a_timeout_must_be_finite_and_credentials_stay_out_of_the_url(srv):
    """inf or nan seconds passed "> 0" and then failed every request; a user:password in the
    URL was retried as an unreadable answer and shown by repr(): both are refused at once, and
    the refusal does not repeat the password."""
    for bad in (float("inf"), float("nan"), -1.0, 0):
        with pytest.raises(ValueError, match=r"^timeout must be a finite number of seconds > 0"):
            Client(srv.url, "m", timeout=bad)
    with pytest.raises(ValueError, match=r"^backoff must be a finite number"):
        Client(srv.url, "m", backoff=float("nan"))
    for url in (srv.url.replace("http://", "http://alice:PASSW0RD@"), srv.url.replace("http://", "http://token@")):
        with pytest.raises(ValueError, match=r"base_url must not hold credentials.*--api-key.*--llm-api-key-env") as e:
            Client(url, "m")
        assert "PASSW0RD" not in str(e.value) and "token" not in str(e.value)
    assert srv.requests == []
    from interleaf.cli import main

    assert main(["judge", "synjudge", "x.jsonl", "--out", "o.parquet", "--base-url", srv.url, "--model", "m", "--timeout", "inf"]) == 2


def test_a_damaged_cache_is_named(srv, tmp_path):
    """A cache file that cannot be read (damaged pages) or that holds another table is an error
    that names the file, at open or at the first read; never a silent miss or a bare sqlite
    error."""
    import sqlite3

    path = tmp_path / "c.sqlite"
    srv.answer = lambda body: "x" * 3000
    with client(srv, cache=path) as c:
        c.chat([f"p{i}" for i in range(100)])
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "r+b") as f:  # every page after the schema's
        f.seek(4096)
        f.write(b"\xa5" * (path.stat().st_size - 4096))
    with client(srv, cache=path) as c, pytest.raises(ValueError, match=rf"^cache {path}: cannot be read \(database disk image is malformed\): delete the file"):
        c.chat(["p1"])
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE answers (a INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match=rf"^cache {other}: not an interleaf request cache \(its answers table has the columns a\)"):
        Client(srv.url, "m", cache=other)


def test_sampling_arguments_are_checked_before_any_request(srv):
    for kw, msg in (({"max_tokens": -5}, "max_tokens must be an integer >= 1"), ({"max_tokens": 0}, "max_tokens"), ({"temperature": -1.0}, "temperature must be a number >= 0"), ({"max_backoff": 0}, "max_backoff must be > 0")):
        with pytest.raises(ValueError, match=msg):
            Client(srv.url, "m", **kw)
    from interleaf.cli import main

    with pytest.raises(SystemExit):  # argparse: "--limit: must be >= 0, got -2"
        main(["judge", "synjudge", "x.jsonl", "--limit", "-2", "--out", "o.parquet"])
    from interleaf.cli import build_parser
    from interleaf.cli_llm import client_from_args

    args = build_parser().parse_args(["judge", "synjudge", "x.jsonl", "--out", "o.parquet", "--base-url", srv.url, "--model", "m", "--max-backoff", "300"])
    with client_from_args(args) as c:
        assert c.max_backoff == 300.0  # a hosted API's long Retry-After is honoured up to this
