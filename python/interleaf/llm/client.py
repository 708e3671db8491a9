"""The one client for OpenAI-compatible chat-completions endpoints (vLLM, SGLang, llama.cpp,
Ollama, hosted APIs), built on the official ``openai`` SDK.

:class:`Client.chat` takes a batch of requests and answers them concurrently (at most
``concurrency`` in flight), in input order, and never raises for one failed request: a request
that still fails after its retries comes back as a :class:`Response` with ``error`` set. Timeouts,
429 (honouring ``Retry-After``), 408, 5xx, dropped connections and unreadable response bodies are
retried with exponential backoff and jitter; other 4xx are not. Answers can be cached in sqlite
(:mod:`interleaf.llm.cache`) so that a rerun sends only what it has not seen (and what a stage
could not parse: those answers are removed from the cache).

Nothing is sent anywhere unless an endpoint is configured: ``base_url`` and ``model`` come from
the arguments or ``INTERLEAF_LLM_BASE_URL`` / ``INTERLEAF_LLM_MODEL``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from interleaf.llm.cache import Cache, request_key

#: Sampling parameters a request may carry (besides ``messages`` and ``schema``).
REQUEST_PARAMS = ("temperature", "max_tokens", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty", "response_format")

#: How structured output is asked for: OpenAI's ``json_schema`` response format (OpenAI, vLLM,
#: SGLang, llama.cpp's server), the ``json_object`` + ``schema`` form (llama-cpp-python's server),
#: or not at all (the answer is parsed tolerantly in every case).
STRUCTURED_MODES = ("auto", "json_schema", "json_object", "none")
_LEVELS = ("json_schema", "json_object", "none")

#: The largest answer body read, in bytes (64 MiB: far above any chat answer, room for a few
#: generated images as base64); past it the request fails, unretried.
DEFAULT_MAX_RESPONSE_BYTES = 64 << 20


class ResponseTooLarge(Exception):
    """An answer body over the client's ``max_response_bytes`` (or compressed though it was
    asked not to be, so not bounded): the request's error, never retried."""


def _response_cap(limit: int) -> Callable[[Any], Any]:
    """An HTTP client response hook that bounds the body it reads to ``limit`` bytes (an endless
    or enormous answer is an error, not unbounded memory)."""

    async def hook(response: Any) -> None:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ResponseTooLarge(f"the server compressed its answer ({encoding}) though it was asked not to: a compressed body has no size bound, so it is not read")
        # The stream class of the HTTP library the SDK uses (httpx, or its fork httpx2).
        base = sys.modules[type(response).__module__.split(".")[0]].AsyncByteStream
        inner = response.stream

        class Capped(base):  # type: ignore[misc, valid-type]
            async def __aiter__(self) -> Any:
                n = 0
                async for chunk in inner:
                    n += len(chunk)
                    if n > limit:
                        raise ResponseTooLarge(f"the answer is over {limit:,} bytes (max_response_bytes)")
                    yield chunk

            async def aclose(self) -> None:
                await inner.aclose()

        response.stream = Capped()

    return hook


@dataclass
class Response:
    """One answer. ``text`` is the model's message (None when the request failed); ``error`` says
    why it failed after ``attempts`` tries; ``cached`` when it came from the cache (no request
    sent). Token counts are the server's ``usage`` (None when it reports none)."""

    text: str | None
    error: str | None = None
    cached: bool = False
    attempts: int = 0
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    key: str | None = field(default=None, repr=False)  # the cache key of the request
    _cache: Cache | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def uncache(self) -> None:
        """Removes this answer from the client's cache, so that the next run asks again (nothing
        without a cache; call it while the client is open). :func:`interleaf.llm.parse_failure`
        calls it: an answer a stage could not parse is not served again."""
        if self._cache is not None and self.key is not None:
            try:
                self._cache.delete(self.key)
            except sqlite3.Error:  # a cache that cannot be written costs the cache, never the run
                pass


@dataclass
class ImageResponse:
    """One generated image: encoded ``image`` bytes (None when the request failed, ``error``
    says why), ``cached`` when it came from the cache, ``attempts`` made."""

    image: bytes | None
    error: str | None = None
    cached: bool = False
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class _Breaker:
    """Stops a batch that its endpoint fails as a whole: once ``limit`` requests in a row have
    failed alike, each after its retries, and none was ever answered, the rest are not sent (a
    dead endpoint reports in a minute, not after hours of retries); once it has answered, after
    ``AFTER_ANSWERS`` x ``limit`` in a row (a server that died mid-batch; a rerun asks again for
    what was not answered). Alike: failing to connect or timing out, or one HTTP status that no
    request of the batch would escape (401 or 403: the key; 404: the model or the path; 502,
    503, 504: a proxy without its upstream)."""

    #: How many times longer a run of failures must be to stop a batch the endpoint answered.
    AFTER_ANSWERS = 4

    #: The HTTP statuses that say the endpoint, not the request, failed.
    STATUSES = (401, 403, 404, 502, 503, 504)

    def __init__(self, limit: int):
        self.limit = limit
        self.failures = 0
        self.kind: str | None = None
        self.answered = False
        self.reason: str | None = None

    @classmethod
    def _kind(cls, error: str) -> str | None:
        if error.startswith(("connection failed", "timed out")):
            return "unreachable"
        head = error.split(":", 1)[0]
        return head if head in {f"HTTP {s}" for s in cls.STATUSES} else None

    def record(self, error: str | None) -> None:
        if error is None:
            self.answered, self.failures = True, 0
            return
        kind = self._kind(error)
        if kind is None:
            self.failures, self.kind = 0, None  # a request's own error breaks a run
            return
        self.failures = self.failures + 1 if kind == self.kind else 1
        self.kind = kind
        if self.reason is not None:
            return
        if not self.answered and self.failures >= self.limit:
            self.reason = f"not sent: the endpoint failed the first {self.limit} requests ({error})"
        elif self.answered and self.failures >= self.AFTER_ANSWERS * self.limit:
            self.reason = f"not sent: the endpoint answered, then failed the last {self.failures} requests in a row ({error}); a rerun asks again"


def _wait(fut: Any) -> Any:
    """The result of a call running on the client's loop, waited for in short steps so Ctrl-C
    reaches this thread at once and cancels the call: requests in flight are abandoned, answers
    already received stay in the cache."""
    from interleaf._prefetch import result

    return result(fut, cancel=True)


@dataclass
class Stats:
    """Request counters: ``requests`` asked for, ``sent`` HTTP attempts made, ``cached`` answered
    from the cache, ``retried`` attempts repeated after a retryable failure, ``failed`` requests
    that came back with an error, and the tokens the server reported for the answers it sent."""

    requests: int = 0
    sent: int = 0
    cached: int = 0
    retried: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: Stats) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class _Prepared:
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    schema: dict[str, Any] | None
    schema_name: str
    key: str = ""
    error: str | None = None


@dataclass
class _Progress:
    total: int
    label: str
    stream: TextIO | None
    start: float = field(default_factory=time.perf_counter)
    last: float = field(default_factory=time.perf_counter)
    done: int = 0

    def line(self, s: Stats) -> str:
        dt = max(time.perf_counter() - self.start, 1e-9)
        rate = self.done / dt
        eta = (self.total - self.done) / rate if rate > 0 and self.done < self.total else 0.0
        return (
            f"{self.label}: {self.done:,}/{self.total:,} requests ({s.cached:,} cached, {s.retried:,} retried, {s.failed:,} failed), "
            f"{rate:,.1f} req/s, ETA {eta:,.0f} s, tokens {s.prompt_tokens:,} in / {s.completion_tokens:,} out"
        )

    def tick(self, s: Stats, final: bool = False) -> None:
        self.done += 0 if final else 1
        if self.stream is None:
            return
        now = time.perf_counter()
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if final or now - self.last >= (0.5 if tty else 10.0):
            self.last = now
            print(self.line(s), end="\n" if final or not tty else "\r", file=self.stream, flush=True)


def _check_base_url(url: str) -> None:
    """Refuses a base URL with credentials in it (``http://user:password@host``): the SDK would
    not send them, and every request would fail as unreadable; the message names neither."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        credentials = parts.username is not None or parts.password is not None
    except ValueError:  # e.g. an unclosed IPv6 bracket: the error is the SDK's to give
        credentials = "@" in url.split("//", 1)[-1].split("/", 1)[0]
    if credentials:
        raise ValueError("base_url must not hold credentials (user:password@host): give the URL without them and the key as the API key (api_key; the commands' --api-key or INTERLEAF_LLM_API_KEY; interleaf run: the variable --llm-api-key-env names)")


def _env(name: str) -> str | None:
    v = os.environ.get(name)
    return v if v else None


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(float(ra), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class Client:
    """A batch client for one OpenAI-compatible chat-completions endpoint and model.

    Parameters
    ----------
    base_url, model:
        The endpoint (``http://host:port/v1``) and model name; default
        ``INTERLEAF_LLM_BASE_URL`` / ``INTERLEAF_LLM_MODEL``. Required: nothing is sent to a
        default address.
    api_key:
        Default ``INTERLEAF_LLM_API_KEY``, then ``OPENAI_API_KEY``; local servers need none.
    api_key_env:
        Read the key from this environment variable instead of those two (``--llm-api-key-env``;
        a recipe cannot name one); an empty name sends none.
    concurrency:
        Requests in flight at most (a semaphore over the batch).
    timeout:
        Seconds per attempt, in all: connecting, waiting and reading the answer (a server that
        trickles its answer is cut off at this deadline).
    max_response_bytes:
        The largest answer body read (default 64 MiB); past it the request fails, unretried.
    max_retries:
        Retries after the first attempt for retryable failures (timeouts, 408, 429, 5xx, dropped
        connections, unreadable bodies).
    cache:
        Path of a sqlite request cache, or None for none. Answers that a stage cannot parse are
        removed from it (:meth:`Response.uncache`), so the next run asks them again.
    refresh:
        Serve nothing from the cache: every request is sent, and its answer replaces the stored
        one (``--refresh-cache``). For asking again what was answered and parsed (a fixed prompt
        file, a new server build behind the same model name).
    temperature, max_tokens, seed:
        Defaults for every request (a request's own values win); None leaves the server's.
    structured:
        How a request's ``schema`` is sent (:data:`STRUCTURED_MODES`). ``auto`` tries
        ``json_schema``, and when the server rejects it (400/422) falls back to ``json_object``,
        then to none, remembering what worked.
    backoff, max_backoff:
        The first retry waits about ``backoff`` seconds, doubling per retry up to ``max_backoff``
        (times a random factor in [0.5, 1]); a ``Retry-After`` header sets the wait instead
        (capped at ``max_backoff``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 5,
        cache: str | os.PathLike | None = None,
        refresh: bool = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        structured: str = "auto",
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        api_key_env: str | None = None,
    ):
        base_url = base_url or _env("INTERLEAF_LLM_BASE_URL")
        model = model or _env("INTERLEAF_LLM_MODEL")
        if not base_url:
            raise ValueError("no LLM endpoint configured: pass base_url= (--base-url; e.g. http://127.0.0.1:8000/v1) or set INTERLEAF_LLM_BASE_URL; interleaf sends nothing to a default address")
        if not model:
            raise ValueError("no LLM model configured: pass model= (--model) or set INTERLEAF_LLM_MODEL")
        _check_base_url(base_url)
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            # inf and nan would pass "> 0" and then fail every request.
            raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not 0 <= backoff < math.inf:
            raise ValueError(f"backoff must be a finite number of seconds >= 0, got {backoff!r}")
        if isinstance(max_backoff, bool) or not isinstance(max_backoff, (int, float)) or not max_backoff > 0:
            raise ValueError(f"max_backoff must be > 0 seconds, got {max_backoff!r}")
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1024:
            raise ValueError(f"max_response_bytes must be an integer >= 1024, got {max_response_bytes!r}")
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"structured must be one of {', '.join(STRUCTURED_MODES)}, got {structured!r}")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0):
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
        self.base_url = base_url
        self.model = model
        if api_key is None and api_key_env is not None:
            # Only the named variable ("" names none: no key is sent).
            api_key = _env(api_key_env) if api_key_env else None
        elif api_key is None:
            api_key = _env("INTERLEAF_LLM_API_KEY") or _env("OPENAI_API_KEY")
        self.api_key = api_key or "none"
        self.max_response_bytes = max_response_bytes
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.defaults = {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens), ("seed", seed)) if v is not None}
        self.structured = structured
        self._mode = "json_schema"  # what "auto" has learned the server takes
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        if not isinstance(refresh, bool):
            raise ValueError(f"refresh must be True or False, got {refresh!r}")
        self.cache = Cache(cache) if cache is not None else None
        self.refresh = refresh
        self.stats = Stats()
        self.last_stats = Stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._api: Any = None
        self._rng = random.Random()
        self._cache_warned = False
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: dict[str, Any] | None = None, **overrides: Any) -> Client:
        """A client from a recipe's ``llm:`` section (keys as the constructor's), with keyword
        overrides (None values ignored)."""
        kw = dict(config or {})
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, model={self.model!r}, concurrency={self.concurrency}, structured={self.structured!r})"

    @property
    def structured_mode(self) -> str:
        """The structured-output form in use: the configured one, or what ``auto`` has learned."""
        return self._mode if self.structured == "auto" else self.structured

    # -- the event loop: one background thread per client, so chat() works from plain scripts,
    # from notebooks (which already run a loop) and from worker threads alike.
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="interleaf-llm", daemon=True)
                t.start()
                self._loop, self._thread = loop, t
            return self._loop

    def _client(self) -> Any:
        if self._api is None:
            import openai

            # The SDK's own retries are off: ours count attempts and honour Retry-After per request.
            # The SDK's aiohttp transport (the openai[aiohttp] extra) costs about half the CPU per
            # request of its default httpx one (benches/llm_client.py); httpx where it is missing.
            # Every answer is read through a size cap, uncompressed (so the cap bounds memory).
            http: dict[str, Any] = {"timeout": self.timeout, "event_hooks": {"response": [_response_cap(self.max_response_bytes)]}, "headers": {"Accept-Encoding": "identity"}}
            kw: dict[str, Any] = {}
            try:
                kw["http_client"] = openai.DefaultAioHttpClient(**http)
            except (AttributeError, ImportError, RuntimeError):
                kw["http_client"] = openai.DefaultAsyncHttpxClient(**http)
            self._api = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout, **kw)
        return self._api

    def close(self) -> None:
        """Closes the HTTP connections, the loop thread and the cache."""
        loop, api = self._loop, self._api
        if loop is not None:
            if api is not None:
                asyncio.run_coroutine_threadsafe(api.close(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            loop.close()
        self._loop = self._thread = self._api = None
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- requests
    def _prepare(self, req: Any) -> _Prepared:
        if isinstance(req, str):
            req = {"messages": [{"role": "user", "content": req}]}
        elif isinstance(req, Sequence):
            req = {"messages": list(req)}
        if not isinstance(req, dict) or "messages" not in req:
            return _Prepared([], {}, None, "", error="a request must be a prompt string, a list of messages or a dict with 'messages'")
        unknown = set(req) - {"messages", "schema", "schema_name", *REQUEST_PARAMS}
        if unknown:
            return _Prepared([], {}, None, "", error=f"unknown request keys: {', '.join(sorted(unknown))}")
        params = dict(self.defaults)
        params.update({k: req[k] for k in REQUEST_PARAMS if k in req and req[k] is not None})
        schema = req.get("schema")
        p = _Prepared(list(req["messages"]), params, schema, str(req.get("schema_name") or "answer"))
        # The key holds what was asked, not how the server was told the schema.
        p.key = request_key(self.model, p.messages, {**params, "schema": schema})
        return p

    def _response_format(self, p: _Prepared, mode: str) -> dict[str, Any] | None:
        if p.schema is None or mode == "none":
            return None
        if mode == "json_object":
            return {"type": "json_object", "schema": p.schema}
        return {"type": "json_schema", "json_schema": {"name": p.schema_name, "schema": p.schema, "strict": True}}

    async def _post(self, path: str, make_body: Callable[[], dict[str, Any]], parse: Callable[[Any], Any], stats: Stats, step_down: Callable[[int, str], bool] | None = None) -> tuple[Any, str | None, int]:
        """POSTs ``make_body()`` to ``path`` through the SDK until it succeeds, fails for good or
        runs out of retries: ``(parse(answer), None, attempts)`` or ``(None, error, attempts)``.
        ``parse`` raising ValueError marks an unreadable answer (retried); ``step_down(status,
        message)`` returning True resends at once without counting a retry (a rejected response
        format)."""
        import openai

        api = self._client()
        attempts = 0
        last = "no attempt made"
        while True:
            body = make_body()
            attempts += 1
            stats.sent += 1
            delay: float | None = None
            try:
                # The SDK's documented generic request (auth, base URL, timeouts, status errors
                # as for chat.completions.create) without building typed request and response
                # models: the answer is read from the JSON body.
                # The SDK's timeout bounds each read; this bounds the attempt as a whole.
                return parse(await asyncio.wait_for(api.post(path, body=body, cast_to=object), self.timeout)), None, attempts
            except TimeoutError:
                last = f"timed out after {self.timeout:g} s"
            except ResponseTooLarge as e:
                return None, str(e), attempts
            except openai.APIConnectionError as e:  # timeouts included
                root = _root_cause(e)
                if isinstance(root, ResponseTooLarge):
                    return None, str(root), attempts
                if isinstance(e, openai.APITimeoutError) and (root is e or isinstance(root, TimeoutError) or "timeout" in type(root).__name__.lower()):
                    last = f"timed out after {self.timeout:g} s"
                else:
                    last = f"connection failed: {root}"
            except openai.APIStatusError as e:
                status = e.status_code
                message = _status_message(e)
                last = f"HTTP {status}: {message}"
                if status in (404, 405) and "model" not in message.lower():
                    # Not a missing model: most often a base_url without its API path.
                    last += f" (POST {self.base_url.rstrip('/')}{path}: is base_url the API root, e.g. http://host:8000/v1?)"
                if step_down is not None and step_down(status, message):
                    attempts -= 1
                    continue
                if status in (408, 409, 429) or (status >= 500 and status not in (501, 505)):
                    delay = _retry_after(e.response.headers)
                else:
                    return None, last, attempts
            except (openai.APIResponseValidationError, ValueError, KeyError, TypeError, AttributeError) as e:
                last = f"unreadable response: {type(e).__name__}: {e}"
            if attempts > self.max_retries:
                return None, f"{last} (after {attempts} attempt{'s' if attempts != 1 else ''})", attempts
            stats.retried += 1
            if delay is None:
                delay = self.backoff * (2 ** (attempts - 1)) * self._rng.uniform(0.5, 1.0)
            else:
                # The server's Retry-After, never sooner, spread over a quarter more: requests
                # told to wait alike do not all come back in the same instant.
                delay *= self._rng.uniform(1.0, 1.25)
            await asyncio.sleep(min(delay, self.max_backoff))

    def _remember(self, key: str, text: str, finish: Any, pt: int | None, ct: int | None) -> None:
        """Stores an answer in the cache. A cache that cannot be written (a full disk, a
        read-only file) costs the cache, never the answer in hand: one warning, and the
        answers keep coming back."""
        if self.cache is None:
            return
        try:
            self.cache.put(key, text, finish, pt, ct)
        except Exception as e:  # sqlite3.Error, OSError
            if not self._cache_warned:
                self._cache_warned = True
                print(f"interleaf llm: warning: answers cannot be stored in the cache ({type(e).__name__}: {e}); they are still returned, but a rerun will ask again", file=sys.stderr)

    async def _one(self, p: _Prepared, sem: asyncio.Semaphore, stats: Stats, breaker: _Breaker | None = None) -> Response:
        used: dict[str, Any] = {}

        def make_body() -> dict[str, Any]:
            mode = self._mode if self.structured == "auto" else self.structured
            fmt = p.params.get("response_format") or self._response_format(p, mode)
            used["mode"], used["fmt"] = mode, fmt
            body = {"model": self.model, "messages": p.messages, **{k: v for k, v in p.params.items() if k != "response_format"}}
            if fmt is not None:
                body["response_format"] = fmt
            return body

        def step_down(status: int, message: str) -> bool:
            about_format = any(w in message.lower() for w in ("response_format", "json_schema", "json_object", "schema", "grammar"))
            mode = used["mode"]
            if (status in (400, 422) or status >= 500) and about_format and used["fmt"] is not None and "response_format" not in p.params and self.structured == "auto" and mode != "none":
                # The server does not take this response format: the next one down.
                lower = _LEVELS[_LEVELS.index(mode) + 1]
                if _LEVELS.index(lower) > _LEVELS.index(self._mode):
                    self._mode = lower
                return True
            return False

        def parse(r: Any) -> tuple[Any, Any, Any]:
            if isinstance(r, str):  # a JSON answer sent as text/plain or text/html
                try:
                    r = json.loads(r)
                except ValueError:
                    pass
            choice = r["choices"][0] if isinstance(r, dict) and r.get("choices") else None
            if not isinstance(choice, dict):
                raise ValueError(f"no choices in the answer: {str(r)[:200]}")
            message = choice.get("message") or {}
            content = message.get("content")
            if isinstance(content, list):  # content parts (Mistral's form): their text
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text") or None
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            blank = content is None or (isinstance(content, str) and not content.strip())
            if blank and (message.get("tool_calls") or reasoning or choice.get("finish_reason") == "length"):
                # No answer where one was cut short or went elsewhere (an empty answer the
                # model chose to give is an answer).
                content = None
                used["why"] = "tool calls instead of text" if message.get("tool_calls") else "only reasoning (reasoning_content) and no answer" if reasoning else "no text"
            return content, choice.get("finish_reason"), r.get("usage") or {}

        async with sem:
            if breaker is not None and breaker.reason is not None:
                stats.failed += 1
                return Response(None, error=breaker.reason)
            got, error, attempts = await self._post("/chat/completions", make_body, parse, stats, step_down)
            if breaker is not None:
                breaker.record(error)
        if error is not None:
            stats.failed += 1
            return Response(None, error=error, attempts=attempts)
        text, finish, usage = got
        pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
        pt, ct = (pt if isinstance(pt, int) else None), (ct if isinstance(ct, int) else None)
        stats.prompt_tokens += pt or 0  # billed, answer or not
        stats.completion_tokens += ct or 0
        if not isinstance(text, str):
            # Not cached: a rerun (more max_tokens, another model) asks again.
            stats.failed += 1
            cut = " (cut off at max_tokens)" if finish == "length" else ""
            return Response(None, error=f"the server answered without message content: {used.get('why', 'no text')}{cut}", attempts=attempts, finish_reason=finish, prompt_tokens=pt, completion_tokens=ct)
        self._remember(p.key, text, finish, pt, ct)
        return Response(text, attempts=attempts, finish_reason=finish, prompt_tokens=pt, completion_tokens=ct, key=p.key, _cache=self.cache)

    def images(self, prompts: Sequence[str], *, size: str = "1024x1024", progress: bool | TextIO = False, label: str = "images") -> list[ImageResponse]:
        """Generates one image per prompt on the endpoint's OpenAI images API
        (``/images/generations``, ``response_format="b64_json"``) with this client's model (an
        image model: make a second client for it), concurrently, in order, with the same retries
        and cache as :meth:`chat`; never raises for one failed prompt."""
        if not prompts:
            return []
        loop = self._ensure_loop()
        return _wait(asyncio.run_coroutine_threadsafe(self._aimages(list(prompts), size, progress, label), loop))

    async def _aimages(self, prompts: list[str], size: str, progress: bool | TextIO, label: str) -> list[ImageResponse]:
        import base64
        import binascii

        stats = Stats(requests=len(prompts))
        prog = _Progress(len(prompts), label, (sys.stderr if progress is True else progress) if progress else None)
        out: list[ImageResponse | None] = [None] * len(prompts)
        sem = asyncio.Semaphore(self.concurrency)
        self._client()

        def parse(r: Any) -> bytes:
            item = r["data"][0] if isinstance(r, dict) and r.get("data") else None
            b64 = item.get("b64_json") if isinstance(item, dict) else None
            if not isinstance(b64, str):
                raise ValueError(f"no b64_json image in the answer: {str(r)[:200]}")
            try:
                return base64.b64decode(b64, validate=True)
            except binascii.Error as e:
                raise ValueError(f"b64_json is not base64: {e}") from None

        async def one(i: int, prompt: Any) -> None:
            if not isinstance(prompt, str) or not prompt.strip():
                stats.failed += 1
                out[i] = ImageResponse(None, error="the prompt must be a non-blank string")
            else:
                body = {"model": self.model, "prompt": prompt, "n": 1, "size": size, "response_format": "b64_json"}
                key = request_key(self.model, [{"images": prompt}], {"size": size})
                hit = self.cache.get(key) if self.cache is not None and not self.refresh else None
                if hit is not None:
                    stats.cached += 1
                    out[i] = ImageResponse(base64.b64decode(hit[0]), cached=True)
                else:
                    async with sem:
                        img, error, attempts = await self._post("/images/generations", lambda: body, parse, stats)
                    if error is not None:
                        stats.failed += 1
                        out[i] = ImageResponse(None, error=error, attempts=attempts)
                    else:
                        self._remember(key, base64.b64encode(img).decode("ascii"), "image", None, None)
                        out[i] = ImageResponse(img, attempts=attempts)
            prog.tick(stats)

        await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
        prog.tick(stats, final=True)
        self.last_stats = stats
        self.stats.add(stats)
        return [r if r is not None else ImageResponse(None, error="not answered") for r in out]

    async def achat(self, requests: Sequence[Any], *, progress: bool | TextIO = False, label: str = "llm") -> list[Response]:
        """The coroutine behind :meth:`chat`; run it on the client's own loop (``chat`` does)."""
        stats = Stats(requests=len(requests))
        out: list[Response | None] = [None] * len(requests)
        prog = _Progress(len(requests), label, (sys.stderr if progress is True else progress) if progress else None)
        todo: list[tuple[int, _Prepared]] = []
        for i, req in enumerate(requests):
            p = self._prepare(req)
            if p.error is not None:
                stats.failed += 1
                out[i] = Response(None, error=p.error)
                prog.tick(stats)
                continue
            hit = self.cache.get(p.key) if self.cache is not None and not self.refresh else None
            if hit is not None:
                stats.cached += 1
                out[i] = Response(hit[0], cached=True, finish_reason=hit[1], prompt_tokens=hit[2], completion_tokens=hit[3], key=p.key, _cache=self.cache)
                prog.tick(stats)
                continue
            todo.append((i, p))
        sem = asyncio.Semaphore(self.concurrency)
        self._client()  # a missing or broken SDK raises here, not once per request

        breaker = _Breaker(max(16, 2 * self.concurrency))

        async def run(i: int, p: _Prepared) -> None:
            try:
                out[i] = await self._one(p, sem, stats, breaker)
            except Exception as e:  # a bug or an unexpected SDK error loses only this request
                stats.failed += 1
                out[i] = Response(None, error=f"{type(e).__name__}: {e}")
            prog.tick(stats)

        await asyncio.gather(*(run(i, p) for i, p in todo))
        prog.tick(stats, final=True)
        self.last_stats = stats
        self.stats.add(stats)
        return [r if r is not None else Response(None, error="not answered") for r in out]

    def chat(self, requests: Sequence[Any], *, progress: bool | TextIO = False, label: str = "llm") -> list[Response]:
        """Answers a batch of requests, concurrently, in input order; one :class:`Response` per
        request, never an exception for a failed one.

        A request is a prompt string, a list of chat messages (OpenAI format; images as
        ``image_url`` parts, see :func:`interleaf.llm.image_part`), or a dict with ``messages``
        and optionally ``schema`` (a JSON schema for the answer), ``schema_name`` and sampling
        parameters (:data:`REQUEST_PARAMS`). ``progress`` prints requests/s, ETA and token counts
        to stderr (or the given stream). Counters: :attr:`last_stats` (this call), :attr:`stats`
        (every call)."""
        if not requests:
            self.last_stats = Stats()
            return []
        loop = self._ensure_loop()
        return _wait(asyncio.run_coroutine_threadsafe(self.achat(list(requests), progress=progress, label=label), loop))


def _root_cause(e: BaseException) -> BaseException:
    """The innermost exception behind ``e`` (transports wrap refused connections in timeouts)."""
    seen = {id(e)}
    while True:
        nxt = e.__cause__ or e.__context__
        if nxt is None or id(nxt) in seen:
            return e
        seen.add(id(nxt))
        e = nxt


def _status_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
    msg = getattr(e, "message", None) or str(e)
    return str(msg)[:500]
