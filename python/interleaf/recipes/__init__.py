"""Recipes: which signals to compute, which dedup steps and filters to apply (YAML validated
by :mod:`interleaf.recipes.schema`), and the presets that reproduce published pipelines.

``load(name_or_path)`` gives a :class:`Recipe`; ``presets()`` lists the shipped ones, and
``preset_text(name)`` gives a preset's YAML (with its header citing where each threshold
comes from) to copy and edit.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from interleaf.recipes.schema import MODEL_KINDS, SIGNAL_MODELS, DedupStep, FilterSpec, Recipe, RecipeError, parse

__all__ = ["MODEL_KINDS", "SIGNAL_MODELS", "DedupStep", "FilterSpec", "Recipe", "RecipeError", "load", "parse", "preset_text", "presets"]


def _preset_dir():
    return resources.files("interleaf.recipes") / "presets"


def presets() -> dict[str, str]:
    """The shipped presets: name -> one-line description."""
    out = {}
    for f in sorted(_preset_dir().iterdir(), key=lambda f: f.name.rsplit(".", 1)[0]):
        if f.name.endswith(".yaml"):
            out[f.name[:-5]] = parse(f.read_text(encoding="utf-8"), f.name).description
    return out


def preset_text(name: str) -> str:
    """The YAML text of preset ``name``."""
    f = _preset_dir() / f"{name}.yaml"
    if not f.is_file():
        raise ValueError(f"no preset named {name!r}; presets: {', '.join(presets())}")
    return f.read_text(encoding="utf-8")


def load(recipe: str | os.PathLike[str] | Recipe) -> Recipe:
    """A :class:`Recipe` from a preset name, a YAML file path, or a Recipe (returned as is)."""
    if isinstance(recipe, Recipe):
        return recipe
    text = os.fspath(recipe)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or os.sep in text or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"{text}: no such recipe file")
        return _anchor_models(parse(path.read_text(encoding="utf-8"), text), path.parent)
    return parse(preset_text(text), f"{text}.yaml")


def _anchor_models(recipe: Recipe, base: Path) -> Recipe:
    """A recipe file's relative model paths read from the file's folder when they exist there
    (as a config file's relative paths are), so the run does not depend on the working
    directory; otherwise they stay as written (the working directory or the models home)."""
    models = {}
    for name, spec in recipe.models.items():
        if spec.path is not None and not os.path.isabs(spec.path) and (base / spec.path).exists():
            spec = spec.model_copy(update={"path": str((base / spec.path).resolve())})
        models[name] = spec
    return recipe.model_copy(update={"models": models})
