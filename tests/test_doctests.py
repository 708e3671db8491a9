"""The polars plugin's docstring examples run with the output they show."""

from __future__ import annotations

import doctest

import interleaf.polars


def test_polars_plugin_examples_print_what_their_docstrings_show():
    result = doctest.testmod(interleaf.polars, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted >= 25, result  # every expression has a running example
    assert result.failed == 0, result


def test_signals_example_prints_what_it_shows():
    import interleaf.signals

    result = doctest.testmod(interleaf.signals, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted >= 4 and result.failed == 0, result
