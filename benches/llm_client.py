"""LLM client overhead: N requests against the scripted OpenAI-compatible server with a fixed
latency, at a given concurrency, for interleaf's ``Client.chat`` and for the raw ``openai`` SDK
driven the way users write it by hand (``asyncio.gather`` under a semaphore), each as a share of
the ideal rate ``concurrency / latency``; then the cache: the same N requests again, all answered
from the sqlite cache (the lookup cost per request).

    python benches/llm_client.py [--n 10000] [--latency 0.02] [--concurrency 64]

The server runs in its own process (tests/llm_server.py), so it does not share the client's GIL.
Results: ``benches/results/llm_client.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, report_header, versions

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "llm_client.json"


def raw_sdk(url: str, prompts: list[str], concurrency: int) -> float:
    import openai

    async def main() -> None:
        api = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)
        sem = asyncio.Semaphore(concurrency)

        async def one(p: str) -> str | None:
            async with sem:
                r = await api.chat.completions.create(model="m", messages=[{"role": "user", "content": p}])
                return r.choices[0].message.content

        out = await asyncio.gather(*(one(p) for p in prompts))
        assert all(o == "ok" for o in out)
        await api.close()

    t = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t


def raw_aiohttp(url: str, prompts: list[str], concurrency: int) -> float:
    """No SDK at all: aiohttp posting the JSON and reading the answer (the floor of Python
    client cost; not a supported client, it skips everything the SDK handles)."""
    import aiohttp

    async def main() -> None:
        sem = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def one(p: str) -> str:
                async with sem, session.post(url + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": p}]}) as r:
                    return (await r.json())["choices"][0]["message"]["content"]

            out = await asyncio.gather(*(one(p) for p in prompts))
        assert all(o == "ok" for o in out)

    t = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t


def ours(url: str, prompts: list[str], concurrency: int, cache: str | None) -> tuple[float, dict]:
    from interleaf.llm import Client

    with Client(url, "m", concurrency=concurrency, cache=cache) as c:
        c.chat(["warm-up"])
        t = time.perf_counter()
        out = c.chat(prompts)
        dt = time.perf_counter() - t
        assert all(r.text == "ok" for r in out), next(r for r in out if r.text != "ok")
        return dt, c.last_stats.as_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "tests" / "llm_server.py"), "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        ideal = args.concurrency / args.latency
        prompts = [f"request {i}" for i in range(args.n)]
        t_raw = raw_sdk(url, prompts, args.concurrency)
        t_floor = raw_aiohttp(url, prompts, args.concurrency)
        t_ours, _ = ours(url, prompts, args.concurrency, None)
        with tempfile.TemporaryDirectory() as d:
            cache = str(Path(d) / "cache.sqlite")
            t_fill, _ = ours(url, prompts, args.concurrency, cache)
            t_hit, stats = ours(url, prompts, args.concurrency, cache)
            assert stats["cached"] == args.n and stats["sent"] == 0
    finally:
        proc.kill()
        proc.wait()
    rows = {
        "ideal_rps": ideal,
        "raw_sdk_rps": args.n / t_raw,
        "raw_aiohttp_no_sdk_rps": args.n / t_floor,
        "interleaf_rps": args.n / t_ours,
        "interleaf_with_cache_writes_rps": args.n / t_fill,
        "interleaf_share_of_ideal": args.n / t_ours / ideal,
        "raw_sdk_share_of_ideal": args.n / t_raw / ideal,
        "interleaf_vs_raw_sdk": t_raw / t_ours,
        "cache_hit_us_per_request": t_hit / args.n * 1e6,
    }
    print(f"{args.n:,} requests, latency {args.latency * 1000:g} ms, concurrency {args.concurrency}: ideal {ideal:,.0f} req/s")
    print(f"  raw openai SDK (gather + semaphore) {rows['raw_sdk_rps']:>8,.0f} req/s  {rows['raw_sdk_share_of_ideal']:.1%} of ideal")
    print(f"  interleaf Client.chat                {rows['interleaf_rps']:>8,.0f} req/s  {rows['interleaf_share_of_ideal']:.1%} of ideal  ({rows['interleaf_vs_raw_sdk']:.2f}x the raw SDK)")
    print(f"  no SDK: bare aiohttp (floor)         {rows['raw_aiohttp_no_sdk_rps']:>8,.0f} req/s  {rows['raw_aiohttp_no_sdk_rps'] / ideal:.1%} of ideal")
    print(f"  interleaf, filling a sqlite cache    {rows['interleaf_with_cache_writes_rps']:>8,.0f} req/s")
    print(f"  cache hits                           {rows['cache_hit_us_per_request']:>8,.1f} us per request")
    header = report_header("llm_client")
    report = {**header, "versions": versions(["interleaf", "openai", "aiohttp"]), "params": vars(args), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    runs = json.loads(out.read_text()).get("runs", []) if out.exists() else []
    runs = [r for r in runs if r.get("params", {}).get("latency") != args.latency or r.get("params", {}).get("concurrency") != args.concurrency]
    out.write_text(json.dumps({"benchmark": "llm_client", "runs": [*runs, report]}, indent=1))


if __name__ == "__main__":
    main()
