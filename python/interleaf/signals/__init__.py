"""Signals: the scores that CoMM, MMC4, OBELICS and DataComp filter on.

Each family has a module with its **function form** (arrays and columns in, arrays and tables
out; the math in Rust) and its **Signal** classes, which :func:`compute` runs over a node batch
(``interleaf.read`` output) with a :class:`Context` that owns the models and shares the
embeddings of the batch between signals:

- ``text``: :func:`text_stats`, :func:`obelics_paragraphs` (OBELICS's statistics and paragraph
  filter, equal to its own functions; its common-word ratio with a list you give,
  :func:`load_common_words`); :class:`TextStats`; :class:`CaptionStats` (DataComp's
  caption word and character counts).
- ``image``: :class:`ImageStats` (:func:`interleaf.image.stats` plus MMC4's, OBELICS's and
  DataComp's size and aspect rules, :func:`size_rules`).
- ``alignment``: :func:`clip_scores` (DataComp's CLIP score), :func:`mmc4_assign`,
  :func:`mmc4_assign_documents` (MMC4's assignment), :func:`linear_assignment` (scipy's
  optimum), :func:`top_k` (nearest rows by cosine); :class:`ClipAlignment` (pair, CoMM step or
  MMC4 assignment per image).
- ``sequence``: :func:`sequence_consistency` (CoMM's F); :class:`SequenceConsistency`.
- ``coherence``: :func:`text_coherence`; :class:`TextCoherence`.
- ``perplexity``: :func:`document_perplexity` (token-weighted); :class:`Perplexity` (per text
  node, per CoMM step text or per document).
- ``language``: :class:`Language` (fastText language id of text nodes or documents, as
  DataComp's and OBELICS's filters).
- ``llm``: :class:`LLMJudge` (CoMM's views or SynJudge per document, through an
  OpenAI-compatible endpoint: :mod:`interleaf.judge`).

Embeddings of many documents come as one ``(n, dim)`` float32 matrix and CSR-style
``offsets`` (``offsets[d]:offsets[d + 1]`` are document ``d``'s rows; ``len(offsets) ==
n_docs + 1``). A value a signal cannot compute is null and its ``<name>_error`` column says
why (a kind from :data:`interleaf.ERROR_KINDS`); nothing else in the batch changes.

Example:
    >>> import interleaf
    >>> from interleaf.cli import SAMPLE_DIR
    >>> from interleaf.signals import ImageStats, TextStats, compute
    >>> batch = next(iter(interleaf.read(SAMPLE_DIR / "comm.jsonl", format="comm")))
    >>> nodes, docs = compute(batch, [ImageStats(), TextStats("doc")])
    >>> docs.select("doc_id", "text_n_words", "text_n_images").head(2).rows()
    [('comm-0001', 109, 5), ('comm-0002', 65, 3)]
"""

from interleaf.signals.alignment import ClipAlignment, clip_scores, linear_assignment, mmc4_assign, mmc4_assign_documents, top_k
from interleaf.signals.base import Context, Embeddings, Signal, compute
from interleaf.signals.coherence import TextCoherence, text_coherence
from interleaf.signals.image import ImageStats, size_rules
from interleaf.signals.language import Language
from interleaf.signals.llm import LLMJudge
from interleaf.signals.perplexity import Perplexity, document_perplexity
from interleaf.signals.sequence import SequenceConsistency, sequence_consistency
from interleaf.signals.text import COMMON_WORD_RULES, DOCUMENT_RULES, PARAGRAPH_RULES, CaptionStats, TextStats, load_common_words, obelics_paragraphs, text_stats

__all__ = [
    "COMMON_WORD_RULES",
    "DOCUMENT_RULES",
    "PARAGRAPH_RULES",
    "CaptionStats",
    "ClipAlignment",
    "Context",
    "Embeddings",
    "ImageStats",
    "LLMJudge",
    "Language",
    "Perplexity",
    "SequenceConsistency",
    "Signal",
    "TextCoherence",
    "TextStats",
    "clip_scores",
    "compute",
    "document_perplexity",
    "linear_assignment",
    "load_common_words",
    "mmc4_assign",
    "mmc4_assign_documents",
    "obelics_paragraphs",
    "sequence_consistency",
    "size_rules",
    "text_coherence",
    "text_stats",
    "top_k",
]
