"""`indus validate --compare`: two runs side by side, with the images one fixed and the other broke."""

import json

import pytest
from click.testing import CliRunner

from calibration.validate.runner import RunSpec, ValidationRun
from station.backends import load_backend
from station.cli.main import main


@pytest.fixture(scope="module")
def runs(parts, planned_run, tmp_path_factory):
    """A: the plan (6 of 8 right). B: a model that rejects everything (right on the 4 defects only)."""
    b = tmp_path_factory.mktemp("reject_all")
    run = ValidationRun(b, RunSpec.create(f"synth:{parts}", backend="scripted", model="answer:defect"))
    run.report(run.inspect(load_backend("scripted", "answer:defect"), progress=False).results)
    return planned_run[0], b


def compare(*args):
    return CliRunner(env={"COLUMNS": "240"}).invoke(
        main, ["validate", "--compare", *map(str, args)], catch_exceptions=False
    )


def test_json_puts_figures_and_paired_counts_side_by_side(runs, tmp_path):
    a, b = runs
    before = sorted(p.name for folder in runs for p in folder.iterdir())
    result = compare(a, b, "--json")
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.output)
    overall = comparison["figures"]["overall"]
    assert overall["classification.balanced_accuracy"] == {"a": 0.75, "b": 0.5, "delta": -0.25}
    assert overall["classification.recall"] == {"a": 0.75, "b": 1.0, "delta": 0.25}
    assert overall["fail_safes.count"] == {"a": 1, "b": 0, "delta": -1}
    assert comparison["figures"]["brushed_metal"]["ranking.auroc"]["b"] == 0.5
    # B fixes the accepted stain; breaks the three good parts A accepted; both reject pin_connector good/000.
    assert comparison["paired"] == {
        "common": 8,
        "only_a": 0,
        "only_b": 0,
        "both_correct": 3,
        "fixed": 1,
        "broken": 3,
        "both_wrong": 1,
    }
    assert comparison["spec_changes"] == {"model": {"a": "plan", "b": "answer:defect"}}
    assert sorted(p.name for folder in runs for p in folder.iterdir()) == before  # compare writes nothing

    written = compare(a, b, "--out", tmp_path / "cmp")
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text()) == comparison
    assert "1 fixed (wrong in A, right in B), 3 broken" in written.output
    assert "bal. acc." in written.output and "-0.250" in written.output


def test_a_folder_without_metrics_is_refused(runs, tmp_path):
    result = compare(runs[0], tmp_path)
    assert result.exit_code == 1 and "no metrics.json" in result.output
