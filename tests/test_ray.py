"""The Ray engine on a real local Ray instance (started here with two worker CPUs, not mocked):
the same outputs as the local engine, byte for byte, for the comm and mmc4 presets; resumption
across engines; a worker killed during the run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")

from test_pipeline import CLIP_DIR, EMBEDDER_DIR, SAMPLE_IMAGES, _mmc4_doc, digests, stable_summary  # noqa: E402

from interleaf import recipes, run  # noqa: E402
from interleaf.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def ray_instance():
    from interleaf.ray import local_instance_env

    with local_instance_env(2):
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_a_ray_address_is_checked_before_anything_is_written(tmp_path, sample_dir, capsys):
    """Ray retries an unreachable head for minutes: a closed port is refused at once; an
    address without the Ray engine is a usage error, not a silent local run."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    args = ["run", "pairs-basic", str(sample_dir / "pairs.jsonl"), "--out", str(tmp_path / "o"), "--quiet"]
    if not ray.is_initialized():  # (our probe's message: Ray's own retries would take minutes)
        assert main([*args, "--engine", "ray", "--address", f"127.0.0.1:{port}"]) == 2
        assert f"no Ray cluster answers at 127.0.0.1:{port}" in capsys.readouterr().err
    assert main([*args, "--address", "auto"]) == 2
    assert "needs engine='ray' (--engine ray)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_address_that_is_not_ray_is_refused_not_waited_on(tmp_path, sample_dir, capsys):
    """A port that takes the connection but is not Ray (the dashboard's 8265, a web server, a
    silent listener) made Ray wait forever; a gRPC probe refuses it with the port to use."""
    import http.server
    import socket
    import threading

    from interleaf.ray import _check_reachable

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        args = ["run", "pairs-basic", str(sample_dir / "pairs.jsonl"), "--out", str(tmp_path / "o"), "--quiet", "--engine", "ray"]
        if not ray.is_initialized():
            assert main([*args, "--address", f"127.0.0.1:{web.server_port}"]) == 2
            err = capsys.readouterr().err
            assert f"127.0.0.1:{web.server_port}" in err and "not a Ray cluster" in err and "6379" in err
        with pytest.raises(ConnectionError, match="not a Ray cluster"):
            _check_reachable(f"127.0.0.1:{web.server_port}")
        # Ray Client cannot run Ray Data ('Worker' object has no attribute 'core_worker'): refused.
        assert main([*args, "--address", f"ray://127.0.0.1:{web.server_port}"]) == 2
        assert "Ray Client (ray://) cannot run" in capsys.readouterr().err
    finally:
        web.shutdown()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(ConnectionError, match="no gRPC answer"):
            _check_reachable(f"127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
    assert not (tmp_path / "o").exists()


def test_a_real_ray_head_passes_the_probe_and_the_worker_check(ray_instance, monkeypatch):
    import interleaf
    from interleaf.ray import _check_reachable, check_workers

    _check_reachable(ray.get_runtime_context().gcs_address)
    check_workers(ray)
    monkeypatch.setattr(interleaf, "__version__", "0.0.0+elsewhere")
    with pytest.raises(RuntimeError, match=r"interleaf 0\.0\.0\+elsewhere here but .* on 1 of 1 Ray nodes"):
        check_workers(ray)
    # Joining without an address (the cluster ray.init() finds, or one already joined) checks
    # the nodes too, once per cluster.
    import interleaf.ray as ir

    monkeypatch.setattr(ir, "_CHECKED", set())
    with pytest.raises(RuntimeError, match="here but .* on 1 of 1 Ray nodes"):
        ir.init(None, progress=False)
    monkeypatch.undo()
    ir.init(None, progress=False)
    assert ray.get_runtime_context().gcs_address in ir._CHECKED


def test_a_local_instance_keeps_its_idle_workers_for_the_next_shuffle(ray_instance, monkeypatch):
    """A keyed repartition runs its reduce tasks in a worker pool of their own; the local
    instance (started under local_instance_env) keeps those workers between shuffles instead of
    starting new Python processes for each (with Ray's default limit every round below ran in
    new processes: checked)."""
    from interleaf.ray import local_instance_env

    def worker_pids(batch):  # defined here: pickled by value, not by this module's name
        return {"pid": np.full(len(batch["k"]), os.getpid())}

    rounds = []
    for _ in range(3):
        # A plain map (ordinary workers), then a shuffle (reduce workers), as a dedup step does.
        items = ray.data.from_items([{"k": i % 5} for i in range(50)], override_num_blocks=4).map_batches(worker_pids, batch_format="numpy").materialize()
        assert items.count() == 50
        ds = ray.data.from_items([{"k": i % 5} for i in range(50)], override_num_blocks=4).repartition(2, keys=["k"])
        rounds.append(set(ds.map_batches(worker_pids, batch_format="numpy").to_pandas()["pid"]))
        time.sleep(1.5)  # longer than Ray's idle-worker grace (1 s)
    assert rounds[2] & (rounds[0] | rounds[1]), rounds
    # The variable is set only while the instance starts, and a user's own value wins.
    monkeypatch.delenv("RAY_num_workers_soft_limit", raising=False)
    with local_instance_env(3):
        assert os.environ["RAY_num_workers_soft_limit"] == "6"
    assert "RAY_num_workers_soft_limit" not in os.environ
    monkeypatch.setenv("RAY_num_workers_soft_limit", "40")
    with local_instance_env(3):
        assert os.environ["RAY_num_workers_soft_limit"] == "40"


def _lost_actor_in_a_task() -> BaseException:
    """What a lost actor looks like on the driver: a Ray Data UDF calling an actor that
    ray.kill ended reaches it as RayTaskError(UserCodeException), the cause in its text."""

    @ray.remote(num_cpus=0)
    class Pinger:
        def ping(self) -> int:
            return 1

    a = Pinger.remote()
    ray.get(a.ping.remote())
    ray.kill(a)

    def use(batch):
        ray.get(a.ping.remote())
        return batch

    try:
        ray.data.range(1).map_batches(use).materialize()
    except Exception as e:  # noqa: BLE001 - the error is the point
        return e
    raise AssertionError("the killed actor answered")


def test_a_lost_label_actor_restarts_the_distributed_step_once(tmp_path, ray_instance, monkeypatch, caplog):
    """The label actors of a distributed dedup step hold state Ray cannot restore: a lost one
    (a real killed actor's error, as a Ray task raises it) restarts the step, once; a second
    loss stops the run with one line that says the same command resumes."""
    import interleaf.ray as ir

    real = ir.exact_clusters
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) in failures:
            raise _lost_actor_in_a_task()
        return real(*a, **k)

    monkeypatch.setattr(ir, "exact_clusters", flaky)
    img = tmp_path / "images"
    img.mkdir()
    shutil.copy(SAMPLE_IMAGES / "astronaut.jpg", img / "a.jpg")
    shard = tmp_path / "p.jsonl"
    shard.write_text("".join(json.dumps({"id": f"d{i}", "image": "images/a.jpg", "caption": "the same caption" if i < 3 else f"caption {i}"}) + "\n" for i in range(6)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("signals:\n  caption: {type: caption}\ndedup:\n  - {name: exact, method: exact, by: text}\n")
    local = run(recipe, [str(shard)], tmp_path / "local", progress=False)
    failures = {1}
    with caplog.at_level("WARNING", logger="interleaf"):
        b = run(recipe, [str(shard)], tmp_path / "ray", engine="ray", ray_dedup="distributed", progress=False)
    assert len(calls) == 2 and "a Ray actor was lost" in caplog.text and "clustering the step again" in caplog.text
    assert digests(tmp_path / "local") == digests(tmp_path / "ray") and b["dropped_documents"] == local["dropped_documents"] == {"exact": 2}
    calls.clear()
    failures = {1, 2}
    with pytest.raises(RuntimeError, match=r"the Ray run stopped \(ActorDiedError: .*the same command resumes"):
        run(recipe, [str(shard)], tmp_path / "twice", engine="ray", ray_dedup="distributed", progress=False)
    assert len(calls) == 2


def test_ray_failures_read_as_one_line_with_the_cause(ray_instance):
    from interleaf.ray import _actor_lost, ray_failure

    lost = _lost_actor_in_a_task()
    assert _actor_lost(lost)
    msg = str(ray_failure(lost, "dedup"))
    assert msg.startswith("dedup: the Ray run stopped (ActorDiedError: ") and msg.endswith("the same command resumes") and "\n" not in msg

    def bad(batch):
        raise ValueError("the model directory /x has no config.json")

    try:
        ray.data.range(1).map_batches(bad).materialize()
    except Exception as e:  # noqa: BLE001
        task_error = e
    # A task's own error keeps its message (not Ray's "UDF failed"), and is not a loss.
    assert str(ray_failure(task_error, "score")) == "score: ValueError: the model directory /x has no config.json (in a Ray task)"
    assert not _actor_lost(task_error)
    e = ray.exceptions.RaySystemError("Traceback (most recent call last):\n  File x\nModuleNotFoundError: No module named 'interleaf'")
    assert "cannot import interleaf: install it" in str(ray_failure(e, "score"))
    # The error the task's code raised, not the one it was raised from (a filter names itself).

    def chained(batch):
        try:
            raise KeyError("the polars error under it")
        except KeyError as err:
            raise ValueError("filter x ('a > 1') failed on the scored values: KeyError") from err

    try:
        ray.data.range(1).map_batches(chained).materialize()
    except Exception as e:  # noqa: BLE001
        task_error = e
    assert str(ray_failure(task_error, "filter")) == "filter: ValueError: filter x ('a > 1') failed on the scored values: KeyError (in a Ray task)"
    # A loss under map_tasks' one-line error (the last phases of a distributed dedup) is still
    # a loss: the step is clustered again.
    try:
        raise ray_failure(lost, "ray engine: write") from lost
    except RuntimeError as wrapped:
        assert _actor_lost(wrapped) and "\n" not in str(wrapped)


def test_a_failed_model_stage_releases_its_actors(ray_instance):
    """A model stage whose actors fail gives its CPUs back when it raises: the failed
    Dataset's actor pool lived as long as the error's traceback (reference cycles), and the
    next Ray run in the same process waited for the CPUs."""
    from interleaf.ray import run_jobs

    def fails(shard):
        raise ValueError(f"the model for {shard} does not load")

    total = ray.cluster_resources()["CPU"]
    with pytest.raises(Exception, match="does not load"):
        run_jobs(fails, [("a",), ("b",)], actors=True, concurrency=2, stage="score")
    for _ in range(120):  # the actors' exit is asynchronous
        if ray.available_resources().get("CPU", 0) == total:
            break
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == total


@pytest.fixture()
def comm_shards(tmp_path, sample_dir) -> list[str]:
    """The CoMM sample split into one shard per document (images beside them)."""
    root = tmp_path / "comm"
    shutil.copytree(sample_dir / "images", root / "images")
    paths = []
    for i, line in enumerate(l for l in (sample_dir / "comm.jsonl").read_text().splitlines() if l.strip()):
        p = root / f"part-{i}.jsonl"
        p.write_text(line + "\n")
        paths.append(str(p))
    return paths


def _comm_recipe(tmp_path: Path) -> Path:
    # The tiny random models' scores mean nothing: thresholds that keep some and drop some.
    text = recipes.preset_text("comm").replace('"clip_alignment_score >= 0.10"', '"clip_alignment_score >= 0.0"').replace('"sequence_f > 0"', '"sequence_f > -2"')
    p = tmp_path / "comm.yaml"
    p.write_text(text)
    return p


KW = {"models": {"clip": str(CLIP_DIR), "text": str(EMBEDDER_DIR)}, "device": "cpu", "progress": False}


def test_comm_preset_on_ray_equals_the_local_engine(tmp_path, comm_shards, ray_instance, capfd):
    from ray.util.debug import reset_log_once

    recipe = _comm_recipe(tmp_path)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run(recipe, comm_shards, local, **KW)
    # Through the CLI, joining the running instance.
    argv = ["run", str(recipe), *comm_shards, "--out", str(on_ray), "--model", f"clip={CLIP_DIR}", "--model", f"text={EMBEDDER_DIR}", "--device", "cpu", "--quiet"]
    reset_log_once("ray_data_progress_manager_disabled")  # Ray Data says it once per process
    capfd.readouterr()
    assert main([*argv, "--engine", "ray"]) == 0
    # --quiet asked for no bars: Ray Data's notice that they are off is not shown either.
    assert "Progress bars disabled" not in capfd.readouterr().err
    assert digests(local) == digests(on_ray) and any(k.startswith("kept/") for k in digests(local))
    assert stable_summary(local) == stable_summary(on_ray)
    s = json.loads((on_ray / "summary.json").read_text())
    assert s["stages"]["score"]["shards"] == 4 and s["documents"]["in"] == 4


def test_mmc4_preset_on_ray_equals_the_local_engine(tmp_path, ray_instance):
    img = tmp_path / "images"
    img.mkdir()
    for name in ("astronaut.jpg", "coffee.jpg", "astronaut_flag.jpg", "retina_disc.png", "chelsea.jpg"):
        shutil.copy(SAMPLE_IMAGES / name, img / name)
    s = ["An astronaut poses for a portrait.", "A cup of coffee on a table.", "A cat looks at the camera.", "A flag hangs behind her."]
    shards = []
    for k, docs in enumerate([[("d1", [("astronaut.jpg", 0), ("coffee.jpg", 1), ("chelsea.jpg", 2)])], [("d2", [("retina_disc.png", 0)]), ("d3", [("astronaut_flag.jpg", 3)])], [("d4", [("coffee.jpg", 1), ("coffee.jpg", 2)])]]):
        p = tmp_path / f"mmc4-{k}.jsonl"
        p.write_bytes(b"".join(_mmc4_doc(d, s, imgs) for d, imgs in docs))
        shards.append(str(p))
    recipe = tmp_path / "mmc4.yaml"
    recipe.write_text(recipes.preset_text("mmc4").replace("threshold: 0.15", "threshold: -1.0"))
    kw = {"models": {"clip": str(CLIP_DIR)}, "image_root": img, "device": "cpu", "progress": False}
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run(recipe, shards, local, **kw)
    run(recipe, shards, on_ray, engine="ray", workers=2, **kw)
    assert digests(local) == digests(on_ray)
    assert stable_summary(local) == stable_summary(on_ray)


def test_ray_resumes_a_local_run_and_the_other_way_round(tmp_path, comm_shards, ray_instance):
    recipe = _comm_recipe(tmp_path)
    full, a, b = tmp_path / "full", tmp_path / "a", tmp_path / "b"
    run(recipe, comm_shards, full, **KW)
    run(recipe, comm_shards, a, stages=("score",), **KW)  # local scoring, then Ray finishes
    s = run(recipe, comm_shards, a, engine="ray", **KW)
    assert s["stages"]["score"]["skipped"] == 4 and digests(a) == digests(full)
    run(recipe, comm_shards, b, stages=("score",), engine="ray", **KW)  # Ray scoring, then local
    s = run(recipe, comm_shards, b, **KW)
    assert s["stages"]["score"]["skipped"] == 4 and digests(b) == digests(full)


def _ray_workers() -> list[int]:
    """Pids of Ray worker processes running interleaf's stage (their title starts "ray::")."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    pids = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if args.startswith("ray::") and ("StageActor" in args or "MapBatches" in args) and "IDLE" not in args:
            pids.append(int(pid))
    return pids


def test_a_worker_killed_during_the_run_is_retried_and_outputs_are_identical(tmp_path, sample_dir, ray_instance):
    # Many shards, so the model actors are busy for a while.
    root = tmp_path / "comm"
    shutil.copytree(sample_dir / "images", root / "images")
    lines = [line for line in (sample_dir / "comm.jsonl").read_text().splitlines() if line.strip()]
    shards = []
    for i in range(24):
        d = json.loads(lines[i % len(lines)])
        d["data_id"] = f"{d['data_id']}-{i}"
        (root / f"part-{i:02d}.jsonl").write_text(json.dumps(d) + "\n")
        shards.append(str(root / f"part-{i:02d}.jsonl"))
    recipe = _comm_recipe(tmp_path)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run(recipe, shards, local, **KW)
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("summary", run(recipe, shards, on_ray, engine="ray", **KW)))
    t.start()
    killed = None
    deadline = time.monotonic() + 120
    while t.is_alive() and killed is None and time.monotonic() < deadline:
        pids = _ray_workers()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.05)
    t.join(600)
    assert killed is not None, "no Ray worker was seen running the stage"
    assert "summary" in result
    assert digests(local) == digests(on_ray)
    assert not [p for p in on_ray.rglob("*.tmp")]


def test_ray_workers_read_relative_paths_and_get_the_drivers_llm_key(tmp_path, sample_dir, ray_instance, scripted, monkeypatch):
    """Ray workers run in a folder of their own: inputs, --out, model directories and the LLM
    cache named relative to the driver's folder are the same files for them; the API key the
    driver has (not the workers) goes with the jobs."""
    from llm_server import count_images

    data = tmp_path / "data"
    shutil.copytree(sample_dir / "images", data / "images")
    shutil.copy(sample_dir / "comm.jsonl", data / "comm.jsonl")
    scripted.answer = lambda body: json.dumps({"development": 8, "completeness": 6, "alignment": count_images(body)})
    (tmp_path / "r.yaml").write_text(
        "models:\n  clip: {}\nllm: {concurrency: 4}\nsignals:\n  judge: {type: llm_judge, judge: comm}\n  clip_alignment: {type: clip_alignment, method: step}\n"
        "filters:\n  drop_errors: true\n  doc:\n    developed: 'judge_development >= 5'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INTERLEAF_LLM_API_KEY", "sk-driver")  # after Ray started: its workers lack it
    kw = {"models": {"clip": os.path.relpath(CLIP_DIR, tmp_path)}, "device": "cpu", "progress": False}
    llm = {"base_url": scripted.url, "model": "scripted"}
    local = run("r.yaml", ["data/comm.jsonl"], "local", llm={**llm, "cache": "local.sqlite"}, **kw)
    assert scripted.auth and set(scripted.auth) == {"Bearer sk-driver"}
    scripted.reset()
    on_ray = run("r.yaml", ["data/comm.jsonl"], "ray", engine="ray", llm={**llm, "cache": "ray.sqlite"}, **kw)
    assert len(scripted.auth) == local["llm"]["requests"] and set(scripted.auth) == {"Bearer sk-driver"}
    assert (tmp_path / "ray.sqlite").is_file() and (tmp_path / "ray" / "kept").is_dir()
    assert digests(tmp_path / "local") == digests(tmp_path / "ray") and on_ray["documents"] == local["documents"]
    assert local["documents"]["kept"] == 4 and not local["signal_errors"]


def test_a_job_that_crashes_its_model_actor_every_time_stops_the_stage(ray_instance):
    """A stage's model actor that dies is started again a few times, not without end (Ray
    Data's default): a shard that kills its worker every time stops the run, as locally."""
    from interleaf.ray import run_jobs

    got: dict = {}

    def crash() -> dict:  # local: pickled by value, as a stage function reaches the workers
        import os

        os._exit(3)

    def stage() -> None:
        try:
            run_jobs(crash, [()], actors=True, stage="score")
        except Exception as e:  # noqa: BLE001 - the error is the point
            got["error"] = e

    t = threading.Thread(target=stage, daemon=True)
    t.start()
    t.join(300)
    assert not t.is_alive(), "the stage kept restarting its actor"
    assert "error" in got


def test_distributed_exact_dedup_keeps_one_per_cluster_whatever_ray_datas_block_size(tmp_path, ray_instance):
    """Ray Data cuts a map's output blocks at its target size: a cluster of exact duplicates
    must still be ranked in one piece (one kept), as in the local run."""
    img = tmp_path / "images"
    img.mkdir()
    shutil.copy(SAMPLE_IMAGES / "astronaut.jpg", img / "a.jpg")
    shard = tmp_path / "p.jsonl"
    shard.write_text("".join(json.dumps({"id": f"d{i}", "image": "images/a.jpg", "caption": "the same caption" if i % 3 else f"caption {i}"}) + "\n" for i in range(300)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("signals:\n  caption: {type: caption}\ndedup:\n  - {name: exact, method: exact, by: text}\n")
    local = run(recipe, [str(shard)], tmp_path / "local", progress=False)
    ctx = ray.data.DataContext.get_current()
    before = ctx.target_max_block_size
    ctx.target_max_block_size = 2048
    try:
        on_ray = run(recipe, [str(shard)], tmp_path / "ray", engine="ray", ray_dedup="distributed", progress=False)
    finally:
        ctx.target_max_block_size = before
    assert local["dropped_documents"] == on_ray["dropped_documents"] == {"exact": 199}
    assert digests(tmp_path / "local") == digests(tmp_path / "ray")


def test_distributed_minhash_clusters_equal_the_local_ones(tmp_path, ray_instance):
    """Signatures with planted near-duplicates (sharing some bands, across shards and chains
    that connect only through a middle document), unsigned rows among them: the Ray Data
    clustering gives the local engine's representatives and scores exactly."""
    import numpy as np
    import polars as pl

    from interleaf.dedup.minhash import lsh_clusters, lsh_params
    from interleaf.ray import minhash_clusters

    rng = np.random.default_rng(7)
    bands, rows = lsh_params(0.8, 128)
    base = rng.integers(0, 2**32, size=(300, 128), dtype=np.uint32)
    for i in range(0, 300, 7):  # i+1 shares band 0 with i, i+2 shares band 3 with i+1: a chain
        base[i + 1, 0:rows] = base[i, 0:rows]
        if i + 2 < 300:
            base[i + 2, 3 * rows : 4 * rows] = base[i + 1, 3 * rows : 4 * rows]
    base[250] = base[3]  # an exact copy in a later shard
    null = np.zeros(300, dtype=bool)
    null[[5, 77, 140]] = True
    paths, counts = [], []
    for k, (lo, hi) in enumerate([(0, 90), (90, 90), (90, 200), (200, 300)]):  # one empty shard
        p = tmp_path / f"s{k}.parquet"
        vals = [None if null[i] else base[i].tolist() for i in range(lo, hi)]
        pl.DataFrame({"value": pl.Series(vals, dtype=pl.Array(pl.UInt32, 128))}).write_parquet(p)
        paths.append(p)
        counts.append(hi - lo)
    reps, score, stats = minhash_clusters(paths, counts, bands, rows)
    ok = np.flatnonzero(~null)
    local, lstats = lsh_clusters(base[ok], 0.8, bands, rows)
    expect = np.full(300, -1)
    expect[ok] = ok[local]
    assert (reps == expect).all() and (reps[[2, 9]] == [0, 7]).all() and reps[250] == 3
    exp_score = np.full(300, np.nan)
    exp_score[ok] = 1.0
    dup = ok[local != np.arange(len(ok))]
    exp_score[dup] = (base[dup] == base[expect[dup]]).mean(axis=1)
    np.testing.assert_array_equal(score, exp_score)
    assert stats["candidates"] == lstats["candidates"] and stats["joined"] == lstats["joined"]


def test_label_propagation_on_ray_actors_finds_the_components(ray_instance):
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(11)
    n = 3000
    perm = rng.permutation(n)
    a, b = perm[:1499], perm[1:1500]  # one long path over rows scattered across the shards
    extra = rng.integers(1500, n, size=(400, 2))  # random small components among the rest
    a = np.concatenate([a, extra[:, 0]]).astype(np.int64)
    b = np.concatenate([b, extra[:, 1]]).astype(np.int64)
    edges = ray.data.from_numpy(np.stack([a, b], axis=1)).map_batches(lambda t: {"a": t["data"][:, 0], "b": t["data"][:, 1]}, batch_format="numpy")
    from interleaf.ray import components

    label, stats = components(n, edges, shards=3)
    _, comp = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    smallest = np.full(comp.max() + 1, n)
    np.minimum.at(smallest, comp, np.arange(n))
    np.testing.assert_array_equal(label, smallest[comp])
    assert stats["edges"] == len(a) and label[perm[1499]] == perm[:1500].min()
    assert stats["rounds"] <= 12, stats  # pointer jumping: logarithmic in the path's length, not 1,500


def test_distributed_phash_clusters_equal_the_local_clustering(tmp_path, ray_instance):
    import numpy as np
    import polars as pl

    from interleaf.dedup.perceptual import hash_clusters
    from interleaf.polars import hamming
    from interleaf.ray import phash_clusters

    rng = np.random.default_rng(3)
    n = 400
    h = rng.integers(0, 2**63, size=n, dtype=np.uint64) | (rng.integers(0, 2, size=n, dtype=np.uint64) << np.uint64(63))
    for i in range(0, n - 3, 9):  # chains: i+1 at distance 3 from i, i+2 at 3 from i+1 (6 from i)
        h[i + 1] = h[i] ^ np.uint64(0b10101)
        h[i + 2] = h[i + 1] ^ np.uint64(0b1110000000)
    h[300] = h[301] = h[4]  # equal hashes in a later shard
    null = np.zeros(n, dtype=bool)
    null[[5, 77, 140]] = True
    paths, counts = [], []
    for k, (lo, hi) in enumerate([(0, 90), (90, 90), (90, 200), (200, 400)]):  # one empty shard
        p = tmp_path / f"s{k}.parquet"
        pl.DataFrame({"value": pl.Series([None if null[i] else int(h[i]) for i in range(lo, hi)], dtype=pl.UInt64)}).write_parquet(p)
        paths.append(p)
        counts.append(hi - lo)
    reps, score, stats = phash_clusters(paths, counts, 5)
    ok = np.flatnonzero(~null)
    keys = pl.Series(h[ok], dtype=pl.UInt64)
    local, pairs = hash_clusters(keys, 5)
    expect = np.full(n, -1)
    expect[ok] = ok[local]
    assert (reps == expect).all() and reps[2] == 0 and reps[301] == 4 and stats["distinct_hash_pairs"] == pairs > 0
    exp_score = np.full(n, np.nan)
    exp_score[ok] = pl.DataFrame({"a": keys, "b": keys.gather(local)}).select(hamming("a", "b").cast(pl.Float64)).to_series().to_numpy()
    np.testing.assert_array_equal(score, exp_score)
    assert score[2] == 6 and score[301] == 0


def test_minhash_exact_and_phash_runs_on_ray_equal_the_local_run(tmp_path, ray_instance):
    base = "the river runs past the old mill and under the stone bridge where the children of the village gather every summer evening to watch the boats come in from the sea"
    texts = [base, "a completely different caption about a red bicycle leaning against a blue wall in a narrow street of the old town", base.replace("the sea", "the bay"), base + " tonight", "", base]
    texts.append("a caption of its own about a lighthouse on a rocky cape at dusk")
    img = tmp_path / "images"
    img.mkdir()
    names = ["astronaut.jpg", "coffee.jpg", "astronaut.jpg", "chelsea.jpg", "coffee.jpg", "astronaut.jpg", "chelsea.jpg"]
    for name in set(names):
        shutil.copy(SAMPLE_IMAGES / name, img / name)
    shards = []
    for k, (lo, hi) in enumerate([(0, 2), (2, 4), (4, 7)]):
        p = tmp_path / f"p{k}.jsonl"
        p.write_text("".join(json.dumps({"id": f"d{k}-{i}", "image": f"images/{names[i]}", "caption": texts[i]}) + "\n" for i in range(lo, hi)))
        shards.append(str(p))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("signals:\n  caption: {type: caption}\ndedup:\n  - {name: exact, method: exact, by: text}\n  - {name: minhash, method: minhash, threshold: 0.8}\n  - {name: phash, method: phash, radius: 5}\n")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    a = run(recipe, shards, local, progress=False)
    b = run(recipe, shards, on_ray, engine="ray", ray_dedup="distributed", progress=False)
    assert digests(local) == digests(on_ray) and a["dropped_documents"] == b["dropped_documents"] == {"exact": 1, "minhash": 2, "phash": 1}
    assert b["dedup"]["exact"]["signed"] == 6 and b["dedup"]["minhash"]["signed"] == 6 and b["dedup"]["phash"]["signed"] == 7
    # Clusters are made again among the filters' survivors on Ray too: dropped bridges link
    # nothing, kept ones link the chain (test_pipeline's pHash chain).
    from test_pipeline import phash_chain

    for caption in ("bridge", "a bridge between the two"):
        (tmp_path / caption).mkdir()
        chain_shards, chain_recipe, _ = phash_chain(tmp_path / caption, bridge_caption=caption)
        a = run(chain_recipe, chain_shards, tmp_path / caption / "local", progress=False)
        b = run(chain_recipe, chain_shards, tmp_path / caption / "ray", engine="ray", ray_dedup="distributed", progress=False)
        assert digests(tmp_path / caption / "local") == digests(tmp_path / caption / "ray") and a["dropped_documents"] == b["dropped_documents"]
        assert a.kept_documents == (2 if caption == "bridge" else 1)


def test_semdedup_clusters_as_ray_tasks_equal_the_local_passes(tmp_path, ray_instance, capsys):
    import numpy as np
    import polars as pl
    from test_semantic import planted, reference_semdedup

    from interleaf.dedup.semdedup import semantic

    x, _, _ = planted(2500, 48, 400, seed=5)
    for kw in ({"n_clusters": 9}, {"n_clusters": 9, "ranking": np.random.default_rng(1).random(len(x))}, {"clusters": np.arange(len(x)) % 5}):
        local = semantic(x, eps=0.01, **kw)
        on_ray = semantic(x, eps=0.01, engine="ray", **kw)
        assert local.equals(on_ray) and 0 < (~local.get_column("kept")).sum() < len(x)
    labels = np.arange(len(x)) % 5
    np.testing.assert_array_equal(~semantic(x, eps=0.01, clusters=labels, engine="ray").get_column("kept").to_numpy(), reference_semdedup(x, labels, 0.01))
    # Through the CLI: interleaf dedup --method semantic --engine ray joins the running instance.
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "caption": f"document {i}"}) + "\n" for i in range(len(x))))
    np.save(tmp_path / "emb.npy", x)
    outs = {}
    for engine in ("local", "ray"):
        argv = ["dedup", str(docs), "--out", str(tmp_path / engine), "--method", "semantic", "--embeddings", str(tmp_path / "emb.npy"), "--clusters", "9", "--engine", engine, "--quiet"]
        assert main(argv) == 0
        outs[engine] = pl.read_parquet(tmp_path / engine / "duplicates.parquet")
    assert outs["local"].equals(outs["ray"]) and outs["local"].height > 0
    assert main(["dedup", str(docs), "--out", str(tmp_path / "x"), "--method", "minhash", "--engine", "ray"]) != 0
    assert "--engine applies to --method semantic, not minhash" in capsys.readouterr().err
    with pytest.raises(ValueError, match="engine='ray' runs method='semantic'"):
        from interleaf.dedup import deduplicate

        deduplicate(str(docs), tmp_path / "y", "minhash", engine="ray")
