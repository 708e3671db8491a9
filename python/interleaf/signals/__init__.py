"""Signals: the scores that CoMM, MMC4, OBELICS and DataComp filter on, computed in Rust.

What is here today are the batch kernels in their function form (arrays and columns in, arrays
and tables out); the ``Signal`` classes that the recipes and the pipeline will drive come with
them later.

- :func:`text_stats`, :func:`obelics_paragraphs`: OBELICS's text statistics and its
  paragraph-level filter, equal to OBELICS's own functions (METHODS.md §8).
- :func:`mmc4_assign`, :func:`mmc4_assign_documents`: MMC4's image-to-sentence assignment
  (drop below 0.15, then an exact linear assignment, then leftovers to their best sentence).
- :func:`sequence_consistency`: CoMM's image-sequence score F.
- :func:`text_coherence`: consecutive-cosine coherence with a shuffled baseline.
- :func:`linear_assignment`: the exact rectangular assignment these use (scipy's optimum).

Embeddings of many documents come as one ``(n, dim)`` float32 matrix and CSR-style
``offsets`` (``offsets[d]:offsets[d + 1]`` are document ``d``'s rows; ``len(offsets) ==
n_docs + 1``).
"""

from interleaf.signals.sequence import linear_assignment, mmc4_assign, mmc4_assign_documents, sequence_consistency, text_coherence
from interleaf.signals.text import obelics_paragraphs, text_stats

__all__ = ["linear_assignment", "mmc4_assign", "mmc4_assign_documents", "obelics_paragraphs", "sequence_consistency", "text_coherence", "text_stats"]
