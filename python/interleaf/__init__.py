"""interleaf: score, deduplicate, filter and enhance multimodal training data.

Documents (image-text pairs and interleaved image-text documents) are read as batches of node
rows in polars DataFrames (see :mod:`interleaf.schema`)::

    import interleaf
    for batch in interleaf.read("shards/*.tar"):
        ...
    interleaf.write(interleaf.read("data.jsonl"), "out/", format="webdataset")
    interleaf.run("pairs", "shards/*.tar", "out/", models={"clip": "models/clip-b32"})  # the main job

Batch work runs on one process-wide thread policy: ``interleaf.set_threads(n)`` (or the
``INTERLEAF_THREADS`` environment variable) sets the default for every call that does not pass
``threads=``; the default is the cores this process may run on.
"""

from interleaf import schema
from interleaf._native import __version__, get_threads, set_threads
from interleaf.io import Reader, read, write
from interleaf.schema import ERROR_KINDS, NODE_SCHEMA

__all__ = ["ERROR_KINDS", "NODE_SCHEMA", "Reader", "__version__", "get_threads", "read", "run", "schema", "set_threads", "write"]


def __getattr__(name: str):
    # The pipeline (pydantic, the recipes) loads on first use of ``interleaf.run``.
    if name == "run":
        from interleaf.pipeline import run

        return run
    raise AttributeError(f"module 'interleaf' has no attribute {name!r}")
