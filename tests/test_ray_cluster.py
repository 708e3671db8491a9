"""The Ray engine on a real two-node Ray cluster: a head node and a second worker node, each its
own raylet with one CPU (``ray.cluster_utils.Cluster`` starts the processes, nothing is
mocked). The run joins the cluster by address, its shards run on both nodes, and its outputs
equal the local engine's byte for byte."""

from __future__ import annotations

import json
import shutil

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")

from test_pipeline import SAMPLE_IMAGES, digests, stable_summary  # noqa: E402

from interleaf import run  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    from interleaf.ray import local_instance_env

    with local_instance_env(1):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_a_run_on_two_ray_nodes_equals_the_local_engine(tmp_path, two_nodes):
    names = ["astronaut.jpg", "coffee.jpg", "chelsea.jpg", "astronaut_flag.jpg", "retina_disc.png", "coffee.jpg"]
    (tmp_path / "images").mkdir()
    for name in set(names):
        shutil.copy(SAMPLE_IMAGES / name, tmp_path / "images" / name)
    caption = "a photograph of {} taken on a quiet morning near the harbour of the old town"
    shards = []
    for k in range(6):
        p = tmp_path / f"part-{k}.jsonl"
        p.write_text("".join(json.dumps({"id": f"d{k}-{i}", "image": f"images/{names[(k + i) % 6]}", "caption": caption.format(f"thing {k} {i}" if i else "it") + (" and a long tail of words that makes this caption too long for the filter" if (k, i) == (5, 2) else "")}) + "\n" for i in range(3)))
        shards.append(str(p))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("signals:\n  caption: {type: caption, level: doc}\n  image: {type: image}\ndedup:\n  - {name: minhash, method: minhash, threshold: 0.8}\n  - {name: phash, method: phash, radius: 5}\nfilters:\n  doc:\n    short_enough: 'caption_words < 25'\n")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    a = run(recipe, shards, local, progress=False)
    b = run(recipe, shards, on_ray, engine="ray", ray_address=two_nodes.address, ray_dedup="distributed", progress=False)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2 and ray.cluster_resources()["CPU"] == 2
    assert digests(local) == digests(on_ray) and any(k.startswith("kept/") for k in digests(local))
    assert stable_summary(local) == stable_summary(on_ray) and a["dropped_documents"] == b["dropped_documents"]
    assert set(b["dropped_documents"]) == {"short_enough", "minhash", "phash"}
    stages = json.loads((on_ray / "summary.json").read_text())["stages"]
    assert stages["score"]["nodes"] == 2, stages  # six shards at two at a time, one CPU per node
