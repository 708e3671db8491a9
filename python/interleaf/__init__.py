"""interleaf: score, deduplicate, filter and enhance multimodal training data.

Documents (image-text pairs and interleaved image-text documents) are read as batches of node
rows in polars DataFrames (see :mod:`interleaf.schema`)::

    import interleaf
    for batch in interleaf.read("shards/*.tar"):
        ...
    interleaf.write(interleaf.read("data.jsonl"), "out/", format="webdataset")
"""

from interleaf._native import __version__
from interleaf.io import Reader, read, write
from interleaf import schema
from interleaf.schema import ERROR_KINDS, NODE_SCHEMA

__all__ = ["ERROR_KINDS", "NODE_SCHEMA", "Reader", "__version__", "read", "schema", "write"]
