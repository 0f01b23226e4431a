"""`make bench`'s merge into bench-results.json: figures of one benchmark replace their own names
and leave every other benchmark's figures alone."""

import json

import pytest

from tests.benchmarks.merge import figure, merge


def test_it_merges_without_losing_the_other_figures(tmp_path):
    path = tmp_path / "bench-results.json"
    path.write_text(json.dumps({"autopilot_reaction_seconds": {"value": 1.2, "unit": "s", "ceiling": 10.0}}))

    merge({"safety.good_halted": figure(0.01, "share")}, path=path)
    merge({"safety.good_halted": figure(0.02, "share")}, prefix="demo.", path=path)
    merge({"safety.good_halted": figure(0.0, "share")}, path=path)

    assert json.loads(path.read_text()) == {
        "autopilot_reaction_seconds": {"value": 1.2, "unit": "s", "ceiling": 10.0},
        "demo.safety.good_halted": {"value": 0.02, "unit": "share"},
        "safety.good_halted": {"value": 0.0, "unit": "share"},
    }


def test_a_figure_with_a_ceiling_carries_its_ratio():
    assert figure(2.5, "s", ceiling=10.0) == {"value": 2.5, "unit": "s", "ceiling": 10.0, "ratio": 0.25}
    assert figure(None, "s", ceiling=10.0) == {"value": None, "unit": "s", "ceiling": 10.0}


def test_it_refuses_what_is_not_a_figure_and_keeps_the_file(tmp_path):
    path = tmp_path / "bench-results.json"
    path.write_text('{"kept": {"value": 1, "unit": "s"}}')

    with pytest.raises(ValueError, match="value and a unit"):
        merge({"broken": {"value": 1}}, path=path)

    assert json.loads(path.read_text()) == {"kept": {"value": 1, "unit": "s"}}
