"""A scripted OpenAI-compatible server on 127.0.0.1 for the LLM tests and the client benchmark.

It is a real HTTP server (aiohttp, in a background thread): the client under test goes through
its whole stack. Answers come from ``answer(body) -> str``; faults are injected per request by
``fault(body, attempt) -> Fault | None``, where ``attempt`` counts how often this exact request
(its messages) has arrived, from 1. The server records every request, the number in flight and
its maximum.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass
class Fault:
    """``status``: answer with this HTTP status (``retry_after`` sets the header); ``drop``: close
    the connection without answering; ``delay``: sleep this long first (a timeout when longer
    than the client's); ``body``: answer 200 with this raw, non-JSON body; ``content``: answer
    this text instead of ``answer(body)``; ``finish_reason``: the answer's instead of "stop"
    (e.g. "length": cut off at max_tokens); ``trickle``: send the headers, then one byte every
    this many seconds, never finishing; ``stream_bytes``: stream a 200 body of this many bytes
    (blanks, so never valid JSON) as fast as the client reads. The images endpoint takes
    ``status`` and ``retry_after``."""

    status: int | None = None
    retry_after: float | None = None
    drop: bool = False
    delay: float = 0.0
    body: str | None = None
    content_type: str = "application/json"
    content: str | None = None
    finish_reason: str | None = None
    trickle: float = 0.0
    stream_bytes: int = 0


def scripted_client(server: ScriptedServer, **kw: Any) -> Any:
    """An interleaf client for the scripted server, with a short backoff (and one retry unless
    told otherwise)."""
    from interleaf.llm import Client

    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_retries", 1)
    return Client(server.url, "scripted", **kw)


def user_text(body: dict[str, Any]) -> str:
    """The text of the last user message (text parts joined)."""
    for m in reversed(body.get("messages", [])):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            return "\n".join(p.get("text", "") for p in c if p.get("type") == "text")
    return ""


def count_images(body: dict[str, Any]) -> int:
    n = 0
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, list):
            n += sum(1 for p in c if p.get("type") == "image_url")
    return n


class ScriptedServer:
    def __init__(
        self,
        answer: Callable[[dict[str, Any]], str] | None = None,
        fault: Callable[[dict[str, Any], int], Fault | None] | None = None,
        latency: float = 0.0,
        reject_json_schema: bool = False,
    ):
        self.answer = answer or (lambda body: "ok")
        self.fault = fault
        self.latency = latency
        self.reject_json_schema = reject_json_schema
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []  # each chat request's Authorization header
        self.seen: Counter[str] = Counter()
        # Arrival time (time.monotonic) of every attempt, by the request's messages.
        self.arrivals: dict[str, list[float]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/images/generations", self._handle_images)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self._loop.run_forever()

    def reset(self) -> None:
        self.requests.clear()
        self.auth.clear()
        self.seen.clear()
        self.arrivals.clear()
        self.max_in_flight = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("Authorization"))
        key = json.dumps(body.get("messages"), sort_keys=True)
        self.arrivals.setdefault(key, []).append(time.monotonic())
        self.seen[key] += 1
        attempt = self.seen[key]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            f = self.fault(body, attempt) if self.fault else None
            if self.latency:
                await asyncio.sleep(self.latency)
            if f is not None and f.delay:
                await asyncio.sleep(f.delay)
            fmt = body.get("response_format") or {}
            if self.reject_json_schema and fmt.get("type") == "json_schema":
                return web.json_response({"error": {"message": "response_format type json_schema is not supported"}}, status=400)
            if f is not None and f.drop:
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)  # never reaches the client: the connection is gone
            if f is not None and f.status is not None:
                headers = {"Retry-After": f"{f.retry_after:g}"} if f.retry_after is not None else None
                return web.json_response({"error": {"message": f"scripted {f.status}"}}, status=f.status, headers=headers)
            if f is not None and f.body is not None:
                return web.Response(text=f.body, content_type=f.content_type)
            if f is not None and (f.trickle or f.stream_bytes):
                resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
                await resp.prepare(request)
                try:
                    if f.trickle:
                        while True:
                            await resp.write(b" ")
                            await asyncio.sleep(f.trickle)
                    chunk, sent = b" " * 65536, 0
                    while sent < f.stream_bytes:
                        await resp.write(chunk)
                        sent += len(chunk)
                    await resp.write_eof()
                except (ConnectionError, RuntimeError):
                    pass  # the client hung up, as it should
                return resp
            content = f.content if f is not None and f.content is not None else self.answer(body)
            prompt_tokens = len(json.dumps(body.get("messages")).split())
            return web.json_response(
                {
                    "id": f"chatcmpl-{len(self.requests)}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "scripted"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": f.finish_reason if f is not None and f.finish_reason else "stop"}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content.split()), "total_tokens": prompt_tokens + len(content.split())},
                }
            )
        finally:
            self.in_flight -= 1

    async def _handle_images(self, request: web.Request) -> web.StreamResponse:
        """A 64x64 PNG whose colour is a hash of the prompt (the same prompt, the same image)."""
        import base64
        import hashlib
        import io

        from PIL import Image

        body = await request.json()
        self.requests.append(body)
        key = json.dumps(body.get("prompt"))
        self.seen[key] += 1
        f = self.fault(body, self.seen[key]) if self.fault else None
        if f is not None and f.status is not None:
            headers = {"Retry-After": f"{f.retry_after:g}"} if f.retry_after is not None else None
            return web.json_response({"error": {"message": f"scripted {f.status}"}}, status=f.status, headers=headers)
        rgb = tuple(hashlib.sha256(str(body.get("prompt")).encode()).digest()[:3])
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), rgb).save(buf, "PNG")
        return web.json_response({"created": 0, "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode("ascii")}]})

    def close(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


GGUF = Path(__file__).parent / "fixtures" / "models" / "tiny-llama.gguf"


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server (a real llama.cpp behind FastAPI) serving the
    tiny random-weight GGUF fixture (``scripts/make_tiny_gguf.py``) in a subprocess."""

    model = "tiny-llama"

    def __init__(self, timeout: float = 120.0):
        # The port is picked free, then handed to the server: another process can take it in
        # between, so a start that fails on "address already in use" is tried again.
        for attempt in range(3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            try:
                self._start(timeout)
                return
            except RuntimeError as e:
                if attempt == 2 or "address already in use" not in str(e).lower():
                    raise

    def _start(self, timeout: float) -> None:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(GGUF), "--model_alias", self.model, "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "8192", "--n_threads", "2", "--seed", "7", "--verbose", "False"]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"llama_cpp.server did not come up in {timeout:g} s: {self.output()[-2000:]}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


if __name__ == "__main__":
    # A standalone scripted server (for benchmarks: in its own process, off the client's GIL).
    # Prints its URL on the first line of stdout, serves until killed.
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds each answer waits")
    a = ap.parse_args()
    server = ScriptedServer(answer=lambda body: "ok", latency=a.latency)
    print(server.url, flush=True)
    threading.Event().wait()
