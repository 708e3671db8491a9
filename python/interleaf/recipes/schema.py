"""The recipe schema: a YAML file validated by pydantic models.

A recipe names the models it needs, the signals to compute, the dedup steps and the filters::

    name: my-recipe
    models:
      clip: {}                       # given at run time: --model clip=DIR / models={"clip": DIR}
    signals:
      image: {type: image}
      clip_alignment: {type: clip_alignment, method: pair}
      # judge: {type: llm_judge, judge: comm}   # needs an llm: section (an OpenAI-compatible endpoint)
    dedup:
      - {name: phash, method: phash, radius: 5}
    filters:
      node:
        image_size: "image_datacomp_ok"
      doc:
        clip_score: "clip_alignment_score >= 0.28"
    output:
      format: auto

Unknown keys and wrong types are errors that name the key and its line in the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


#: The model names a recipe may use and the kind of model each must be.
MODEL_KINDS = {"clip": "clip", "text": "text-embedder", "lm": "causal-lm", "lid": "language-id", "words": "word-list"}


class ModelSpec(_Strict):
    """A model the recipe uses. ``words`` is a word list, not a model: OBELICS's common words
    (a JSON object or array, or a word per line), which the ``text`` signals' common-word ratio
    and OBELICS's paragraph filter use when it is given. ``path``: a model directory (``lid``: a fastText file;
    ``words``: the list's file) or a name under the models home
    (usually left out of a shared recipe and given at run time; a relative path in a recipe
    file is read from the file's folder when it exists there). Where the models run is chosen
    at run time (``--device``, ``run(device=...)``), not by a recipe."""

    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_device(cls, data: Any) -> Any:
        if isinstance(data, dict) and "device" in data:
            if data["device"] not in ("auto", None):
                raise ValueError(f"device: {data['device']!r}: a recipe does not choose where its models run (the same recipe runs on machines with and without a GPU): give --device {data['device']} at run time (API: run(..., device={data['device']!r}))")
            data = {k: v for k, v in data.items() if k != "device"}  # "auto": what the run chooses
        return data


class _SignalBase(_Strict):
    #: Skip this signal (and the filters that read its columns) with a notice when its model is
    #: not given, instead of failing.
    optional: bool = False


class TextSignal(_SignalBase):
    """OBELICS's text statistics (:class:`interleaf.signals.TextStats`)."""

    type: Literal["text"]
    level: Literal["node", "doc"] = "node"
    paragraphs: bool = False
    char_ngram: int = Field(10, ge=1, le=1000)
    word_ngram: int = Field(5, ge=1, le=1000)


class CaptionSignal(_SignalBase):
    """DataComp's caption word and character counts (:class:`interleaf.signals.CaptionStats`)."""

    type: Literal["caption"]
    level: Literal["node", "doc"] = "doc"


class ImageSignal(_SignalBase):
    """Image statistics and size rules (:class:`interleaf.signals.ImageStats`)."""

    type: Literal["image"]
    max_pixels: int | None = Field(None, ge=1, le=1 << 48)
    max_bytes: int | None = Field(None, ge=1, le=1 << 48)
    #: Read the headers alone (size, format, mode): fast, enough for size and format rules;
    #: pixel statistics (blur, entropy, ...) null, damage after a readable header unseen.
    header_only: bool = False


class ClipAlignmentSignal(_SignalBase):
    """CLIP image-text alignment (:class:`interleaf.signals.ClipAlignment`)."""

    type: Literal["clip_alignment"]
    method: Literal["auto", "pair", "step", "mmc4"] = "auto"
    threshold: float = Field(0.15, ge=-1.0, le=1.0)


class SequenceSignal(_SignalBase):
    """CoMM's image-sequence score F (:class:`interleaf.signals.SequenceConsistency`)."""

    type: Literal["sequence"]


class CoherenceSignal(_SignalBase):
    """Text coherence of step sequences (:class:`interleaf.signals.TextCoherence`)."""

    type: Literal["coherence"]
    shuffles: int = Field(8, ge=0, le=10_000)
    seed: int = Field(0, ge=0, le=2**63 - 1)


class PerplexitySignal(_SignalBase):
    """LM perplexity per text node, per CoMM step text (given on the step's text nodes) or per
    document (:class:`interleaf.signals.Perplexity`)."""

    type: Literal["perplexity"]
    level: Literal["node", "step", "doc"] = "node"
    max_perplexity: float = Field(1500.0, gt=0)
    #: Score only the paragraphs that survive OBELICS's node-level filter (OBELICS's document
    #: perplexity is of that text).
    paragraphs: bool = False


class LanguageSignal(_SignalBase):
    """fastText language id of text nodes or documents (:class:`interleaf.signals.Language`):
    DataComp's English check, OBELICS's document language id."""

    type: Literal["language"]
    level: Literal["node", "doc"] = "doc"
    #: Lower-case the text before fastText reads it (OBELICS; DataComp does not).
    lowercase: bool = False
    #: Identify only the paragraphs that survive OBELICS's node-level filter (OBELICS's
    #: document text).
    paragraphs: bool = False


class LLMJudgeSignal(_SignalBase):
    """An LLM judge per document through the recipe's ``llm`` endpoint
    (:class:`interleaf.signals.LLMJudge`): CoMM's views (``judge: comm``) or InterSyn's SynJudge
    (``judge: synjudge``)."""

    type: Literal["llm_judge"]
    judge: Literal["comm", "synjudge"] = "comm"
    images: bool = True
    max_images: int = Field(10, ge=0, le=100)
    max_edge: int = Field(512, ge=16, le=4096)
    output: Literal["json", "bracket"] = "json"


SignalSpec = Annotated[TextSignal | CaptionSignal | ImageSignal | ClipAlignmentSignal | SequenceSignal | CoherenceSignal | PerplexitySignal | LanguageSignal | LLMJudgeSignal, Field(discriminator="type")]

#: The model each signal type needs (None: none; ``llm``: the recipe's LLM endpoint).
SIGNAL_MODELS: dict[str, str | None] = {"text": None, "caption": None, "image": None, "clip_alignment": "clip", "sequence": "clip", "coherence": "text", "perplexity": "lm", "language": "lid", "llm_judge": "llm"}

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} must be lower-case letters, digits and _ (it names columns and folders)")
    return name


class DedupStep(_Strict):
    """A deduplication step.

    ``exact``: documents with the same key (``by``: normalised text, image bytes, or both;
    ``by`` and not ``on``, which YAML reads as true);
    ``minhash``: documents whose text MinHash Jaccard estimate reaches ``threshold``;
    ``phash``: images within Hamming ``radius`` of each other: across documents
    (``scope: dataset``, each document's first image) or between the images of one document
    (``scope: document``, MMC4's rule: a later image within the radius of an earlier one is
    dropped; among the images the node filters keep, or with ``before_filters: true`` before
    them, in MMC4's order). Across documents the clusters are made among the documents that survive the
    filters (and earlier steps), linking neighbours within the radius or sharing a MinHash
    band; the first of each cluster is kept (in read order), the others are dropped with the
    step's name as the reason.
    """

    name: str
    method: Literal["exact", "minhash", "phash"]
    by: Literal["text", "image", "all"] = "text"
    scope: Literal["dataset", "document"] = "dataset"
    radius: int = Field(5, ge=0, le=63)
    draft: int | None = Field(None, ge=1, le=65535)
    threshold: float = Field(0.8, ge=0.0, le=1.0)
    num_perm: int = Field(128, ge=2, le=1024)
    ngram: int = Field(5, ge=1, le=100)
    unit: Literal["word", "char"] = "word"
    seed: int = Field(1, ge=0, le=2**63 - 1)
    strip_punctuation: bool = False
    #: ``scope: document`` only: drop a document's near-duplicate images before the node
    #: filters (MMC4's order: its paper deduplicates, then drops small and banner images)
    #: rather than among the images they keep.
    before_filters: bool = False
    #: phash only: the largest image decoded, in pixels (default 89,478,485, Pillow's
    #: MAX_IMAGE_PIXELS); a larger image is not hashed (its document stays alone). Raise it with
    #: an image signal's ``max_pixels`` so that the images it accepts are also deduplicated.
    max_pixels: int | None = Field(None, ge=1, le=1 << 48)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name("dedup step", v)

    @model_validator(mode="after")
    def _scope(self, info: ValidationInfo) -> DedupStep:
        if self.scope == "document" and self.method != "phash":
            raise ValueError("scope: document is for phash steps (near-duplicate images within a document)")
        if self.before_filters and self.scope != "document":
            raise ValueError("before_filters is for scope: document steps (a dataset step runs after every filter)")
        # An option the method does not read is refused rather than ignored (a run's stored
        # recipe, which holds every option, is read back as it was written).
        if not (info.context or {}).get("stored"):
            ignored = sorted(self.model_fields_set - {"name", "method"} - _DEDUP_OPTIONS[self.method] - ({"by"} if self.by == _DEDUP_BY.get(self.method) else set()))
            if ignored:
                hashes = " (minhash steps hash the text, phash steps the images)" if "by" in ignored else ""
                raise ValueError(f"{', '.join(ignored)}: not read by {self.method} steps{hashes}; their options: {', '.join(sorted(_DEDUP_OPTIONS[self.method]))}")
        return self


#: The options each dedup method reads, and what the others hash.
_DEDUP_OPTIONS = {"exact": {"by", "strip_punctuation"}, "minhash": {"threshold", "num_perm", "ngram", "unit", "seed"}, "phash": {"radius", "draft", "scope", "before_filters", "max_pixels"}}
_DEDUP_BY = {"minhash": "text", "phash": "image"}


class FilterSpec(_Strict):
    """A filter: keep the rows (nodes or documents) where ``expr`` is true, a polars SQL
    expression over attribute columns (``"clip_alignment_score >= 0.28"``); or keep the top
    ``top_fraction`` of the pool by ``column`` (DataComp's fraction mode: the threshold is the
    ``floor(N * f) + 1``-th largest value of the whole input, so ties keep more).

    ``on_null``: what happens where the expression is null (a signal not defined for that row:
    a text node under an image rule, a document with fewer than 3 images under CoMM's F; or a
    comparison computing NaN there, ``a / b`` with both 0): ``keep`` (the default: the filter
    does not apply) or ``drop``.
    """

    expr: str | None = None
    top_fraction: float | None = Field(None, gt=0.0, le=1.0)
    column: str | None = None
    on_null: Literal["keep", "drop"] = "keep"

    @model_validator(mode="after")
    def _one(self) -> FilterSpec:
        if (self.expr is None) == (self.top_fraction is None):
            raise ValueError("a filter needs exactly one of expr and top_fraction")
        if self.top_fraction is not None and not self.column:
            raise ValueError("top_fraction needs column: the attribute column to rank by")
        if self.expr is not None and self.column is not None:
            raise ValueError("column goes with top_fraction, not with expr")
        return self


def _filters(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: ({"expr": f} if isinstance(f, str) else f) for k, f in v.items()}
    return v


class Filters(_Strict):
    """Node filters (a node that fails leaves its document), then document filters (on the
    documents' attributes after node removal), each in the order written; a row dropped by
    several is recorded under the first. ``drop_errors``: drop nodes and documents that carry
    a read or decode error (a corrupt or missing image, a malformed line), each recorded with
    its error kind, before the other filters."""

    drop_errors: bool = True
    node: dict[str, FilterSpec] = {}
    doc: dict[str, FilterSpec] = {}

    _node = field_validator("node", mode="before")(_filters)
    _doc = field_validator("doc", mode="before")(_filters)

    @field_validator("node", "doc")
    @classmethod
    def _names(cls, v: dict[str, FilterSpec]) -> dict[str, FilterSpec]:
        for k in v:
            _check_name("filter", k)
        return v


class OutputSpec(_Strict):
    """How kept documents are written: ``format`` ``auto`` (the input's own layout: WebDataset
    for WebDataset input, the record layout of a jsonl input (pairs, MMC4, OBELICS, CoMM,
    LLaVA), the node table for parquet input), ``webdataset``, ``parquet`` (the node table),
    ``jsonl`` (interleaf's node schema) or a record layout written as JSON lines (``pairs``,
    ``mmc4``, ``obelics``, ``comm``, ``llava``); ``embed_images``: write image bytes inline
    (``data:`` URIs) in record layouts instead of their references;
    ``compression`` for WebDataset shards; ``text_from``: a String node column whose value
    replaces a kept text node's text where it is not null (OBELICS: ``text_kept_text``, the
    paragraphs that survive its paragraph filter); ``images_to``: a node column holding, for an
    image, the ``pos`` of the text node it belongs to (MMC4: ``clip_alignment_text_pos``, the
    image-sentence assignment): each kept image is written right before that text node, so the
    MMC4 layout's ``matched_text_index`` is the assignment; images where it is null (or whose
    text node was dropped) stay where they were. Record layouts only: the node-table outputs
    (``parquet``, ``jsonl``, ``webdataset``) keep the input's positions, which key the
    attribute and dropped files."""

    format: Literal["auto", "webdataset", "parquet", "jsonl", "pairs", "mmc4", "obelics", "comm", "llava"] = "auto"
    compression: Literal["none", "gz", "zst"] = "none"
    embed_images: bool = False
    text_from: str | None = None
    images_to: str | None = None


class LLMSpec(_Strict):
    """The OpenAI-compatible endpoint of the recipe's LLM signals (:class:`interleaf.llm.Client`
    arguments). ``base_url`` and ``model`` may be left out and given at run time (``--llm-base-url``
    / ``--llm-model``, or ``INTERLEAF_LLM_BASE_URL`` / ``INTERLEAF_LLM_MODEL``); the API key is
    never written in a recipe, nor the variable it is read from: ``INTERLEAF_LLM_API_KEY`` or
    ``OPENAI_API_KEY``, or the one named at run time (``--llm-api-key-env``). A ``base_url``
    that the recipe itself names gets a key only from a variable named at run time (a recipe
    from elsewhere cannot send your key, or any other variable, to a server of its choosing)."""

    base_url: str | None = None
    max_response_bytes: int = Field(64 << 20, ge=1024)
    model: str | None = None
    concurrency: int = Field(16, ge=1, le=4096)
    timeout: float = Field(120.0, gt=0, le=86_400)
    max_retries: int = Field(5, ge=0, le=100)
    cache: str | None = None
    temperature: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    structured: Literal["auto", "json_schema", "json_object", "none"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _no_key_variable(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("api_key_env", None) is not None:
            raise ValueError("api_key_env is not read from a recipe (a recipe must not choose which of your variables is sent to its endpoint): name the variable at run time with --llm-api-key-env (llm={'api_key_env': ...} in Python)")
        return data


class Recipe(_Strict):
    """A recipe: models, signals, dedup steps, filters and output (see the module docs)."""

    name: str = "custom"
    description: str = ""
    models: dict[Literal["clip", "text", "lm", "lid", "words"], ModelSpec] = {}
    llm: LLMSpec | None = None
    signals: dict[str, SignalSpec] = {}
    dedup: list[DedupStep] = []
    filters: Filters = Filters()
    output: OutputSpec = OutputSpec()

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # A section or model written with nothing under it (`signals:`, `models: {clip: }`)
        # is an empty one, not a type error.
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if not (v is None and k in ("models", "signals", "dedup", "filters", "output"))}
            if isinstance(data.get("models"), dict):
                data["models"] = {k: ({} if v is None else v) for k, v in data["models"].items()}
            if isinstance(data.get("filters"), dict):
                data["filters"] = {k: v for k, v in data["filters"].items() if not (v is None and k in ("node", "doc"))}
        return data

    @field_validator("signals")
    @classmethod
    def _signal_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            try:
                _check_name("signal", k)
            except ValueError as e:
                raise _At((k,), str(e)) from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        names = list(self.signals) + [d.name for d in self.dedup]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            # Signals are a mapping: a name given twice is a dedup step's (the later one).
            i = max(i for i, d in enumerate(self.dedup) if d.name in dup)
            raise _At(("dedup", i, "name"), f"signal and dedup step names must be distinct: {dup}")
        clash = set(self.filters.node) & set(self.filters.doc)
        if clash:
            raise _At(("filters", "doc", min(clash)), f"node and doc filters share the names {sorted(clash)}")
        for name, sig in self.signals.items():
            model = SIGNAL_MODELS[sig.type]
            if model == "llm":
                if self.llm is None:
                    raise _At(("signals", name, "type"), f"signal {name} ({sig.type}) needs an LLM endpoint: add an `llm:` section (base_url and model may be given at run time)")
                continue
            if model is not None and model not in self.models:
                raise _At(("signals", name, "type"), f"signal {name} ({sig.type}) needs the model {model!r}: add `{model}: {{}}` under models")
        return self


class _At(ValueError):
    """A whole-recipe check's error with the place it concerns (``loc``, as pydantic's), so
    the message names that key and its line instead of the top level."""

    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class RecipeError(ValueError):
    """A recipe that does not validate; the message names each bad key and its line."""


def _line_of(root: Any, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (a pydantic error location), or of the
    deepest node on the way that exists."""
    import yaml

    # A mapping entry's line is its key's (a block value starts on the next line); a list
    # item's is the item's.
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(key):
                    nxt, line = v, k.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
        if node is None:
            break
    return line


def _mappings(root: Any) -> Iterator[Any]:
    """Every mapping of the composed YAML tree, once each, in document order (aliases point at
    nodes already seen: a walk along every path would be exponential, YAML's "billion
    laughs")."""
    import yaml

    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            yield node
            stack.extend(reversed([v for kv in node.value for v in kv]))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))


def _non_string_key(root: Any) -> tuple[str, str, int] | None:
    """The first mapping key of the YAML tree that YAML reads as true, false or null rather than
    as a name (``on``, ``off``, ``yes``, ``no``, ``null``, ``~`` unquoted): (key, what YAML
    reads, its line)."""
    import yaml

    for m in _mappings(root):
        for k, _ in m.value:
            if isinstance(k, yaml.ScalarNode) and k.tag in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"):
                read = "null" if k.tag.endswith("null") else str(yaml.safe_load(k.value)).lower()
                return str(k.value), read, k.start_mark.line + 1
    return None


def _duplicate_key(root: Any) -> tuple[str, int, int] | None:
    """The first key a mapping of the YAML tree holds twice: (key, its first line, its second)."""
    for m in _mappings(root):
        seen: dict[str, int] = {}
        for k, _ in m.value:
            name, line = str(k.value), k.start_mark.line + 1
            if name in seen:
                return name, seen[name], line
            seen[name] = line
    return None


def parse(text: str, source: str = "<recipe>") -> Recipe:
    """A :class:`Recipe` from YAML text; :class:`RecipeError` naming every bad key and line."""
    import yaml

    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise RecipeError(f"{source}: not valid YAML: {e}") from None
    if (bad := _non_string_key(root)) is not None:
        bad_key, read, at_line = bad
        hint = " (a dedup step names its field with `by`)" if bad_key.lower() == "on" else ""
        raise RecipeError(f"{source}: line {at_line}: the key {bad_key!r} is read by YAML as {read}, not as a name: quote it ('{bad_key}':) or use another{hint}")
    if (dup := _duplicate_key(root)) is not None:
        key, first, again = dup
        raise RecipeError(f"{source}: line {again}: {key!r} is given twice (first on line {first}): YAML would keep the last silently; rename or remove one")
    if data is None:
        raise RecipeError(f"{source}: the recipe is empty (see `interleaf recipes show pairs-basic` for one to start from)")
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping (name, models, signals, dedup, filters, output), not {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            if isinstance(at := (err.get("ctx") or {}).get("error"), _At):
                loc += at.loc
            if len(loc) > 2 and loc[0] == "signals" and loc[2] in SIGNAL_MODELS:
                loc = loc[:2] + loc[3:]  # pydantic names the union member chosen by `type`
            shown = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(root, loc)
            where = f"line {line}: " if line else ""
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{source}: {where}{shown}: {msg}")
        raise RecipeError("\n".join(lines)) from None
