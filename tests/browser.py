"""A headless Chromium driven over the DevTools protocol (websocket-client), for testing the
HTML report in a real browser: which requests a page makes, what it logs, and a screenshot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    return next((p for c in CANDIDATES if (p := shutil.which(c))), None)


@dataclass
class PageLoad:
    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    exceptions: list[str] = field(default_factory=list)
    screenshot: bytes = b""


def load(url: str, width: int = 1200, height: int = 900, timeout: float = 60.0) -> PageLoad:
    """Opens ``url`` in a fresh headless Chromium and returns what happened."""
    import websocket

    exe = find_chromium()
    assert exe, "no Chromium"
    profile = tempfile.mkdtemp(prefix="interleaf-chromium-")
    args = [exe, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")
    # Its own session (the renderer and helper processes go with it) and its own TMPDIR inside
    # the profile: nothing it starts or writes outlives the call.
    env = {**os.environ, "TMPDIR": profile}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        while True:
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("Chromium has no page target")
            time.sleep(0.05)
        ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        out = PageLoad()
        ids = iter(range(1, 1_000_000))

        def call(method: str, **params) -> dict:
            i = next(ids)
            ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == i:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})
                event(msg)

        loaded = {"done": False}

        def event(msg: dict) -> None:
            m, p = msg.get("method"), msg.get("params", {})
            if m == "Network.requestWillBeSent":
                out.requests.append(p["request"]["url"])
            elif m == "Runtime.consoleAPICalled":
                out.console.append((p["type"], " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))))
            elif m == "Runtime.exceptionThrown":
                out.exceptions.append(p["exceptionDetails"].get("text", ""))
            elif m == "Log.entryAdded":
                out.console.append((p["entry"]["level"], p["entry"]["text"]))
            elif m == "Page.loadEventFired":
                loaded["done"] = True

        for domain in ("Page", "Network", "Runtime", "Log"):
            call(f"{domain}.enable")
        call("Page.navigate", url=url)
        while not loaded["done"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not finish loading")
            event(json.loads(ws.recv()))
        time.sleep(0.2)  # late console messages
        ws.settimeout(0.2)
        try:
            while True:
                event(json.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        ws.settimeout(timeout)
        out.screenshot = base64.b64decode(call("Page.captureScreenshot", format="png")["data"])
        ws.close()
        return out
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
