"""`indus train demo`: the recipe's config, and the whole pipeline on a miniature recipe, resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from click.testing import CliRunner

from station.backends.hf.tiny import ModelShape
from train.config_io import ConfigError
from train.demo_config import DemoConfig, DemoConfigError

RECIPE = Path(__file__).resolve().parents[2] / "train" / "configs" / "demo.yaml"
MINI_SHAPE = ModelShape(max_pixels=64 * 64)  # the tests' tiny shape, 16 image tokens per part


def test_the_shipped_recipe_loads_and_keeps_validation_unseen():
    config = DemoConfig.from_yaml(RECIPE)
    rounds = config.sft.all_rounds(config.seed)
    seeds = [r.synth_seed for r in rounds] + [r.focus_seed for r in rounds if r.focus_categories]
    assert config.validation_seed not in (*seeds, config.grpo.synth_seed, config.vision.seed)
    for sft_round in rounds:  # each round's parts hold enough of each label for its good_share
        per_label = (sft_round.synth_n // 2) * 6 + (sft_round.focus_n // 2) * len(sft_round.focus_categories)
        good = round(sft_round.trajectories * sft_round.good_share)
        assert max(good, sft_round.trajectories - good) <= per_label


ROUND = {"trajectories": 4, "synth_n": 4, "synth_seed": 7, "seed": 1, "learning_rate": 1e-4}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"validation_seed": 1000}, "validation_seed"),
        ({"grpo": {"num_generations": 3, "per_device_train_batch_size": 4}}, "multiple"),
        ({"categories": ["brushed_metal", "marble"]}, "unknown"),
        ({"grpo": {"steps": -1}}, "grpo.steps"),
        ({"sft": {"trajectories": 1}}, "positive"),
        ({"sft": {"rounds": [{**ROUND, "synth_seed": 2000}]}}, "distinct"),
        ({"sft": {"rounds": [{**ROUND, "trajectories": 0}]}}, "positive"),
        ({"sft": {"rounds": [{**ROUND, "focus_categories": ["lag_screw"], "focus_n": 4}]}}, "focus_seed"),
        (
            {
                "categories": ["brushed_metal"],
                "sft": {"rounds": [{**ROUND, "focus_categories": ["lag_screw"]}]},
            },
            "not trained on",
        ),
        ({"sft": {"rounds": [{"trajectories": 4}]}}, "sft.rounds\\[0\\].synth_n"),
        ({"sft": {"rounds": [{**ROUND, "good_share": 1.0}]}}, "good_share"),
        ({"grpo": {"good_share": 0.0}}, "grpo.good_share"),
        ({"categories": ["brushed_metal"], "grpo": {"categories": ["lag_screw"]}}, "grpo.categories"),
        ({"grpo": {"categories": []}}, "grpo.categories"),
    ],
)
def test_bad_recipes_are_refused_with_the_key(change: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        DemoConfig.from_dict(change)


def mini_config(out: Path) -> DemoConfig:
    return DemoConfig.from_dict(
        {
            "out_dir": str(out),
            "image_size": 64,
            "categories": ["brushed_metal"],
            "max_new_tokens": 8,
            "vision": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "image_size": 64, "eval_samples": 4},
            "sft": {
                "trajectories": 4,
                "synth_n": 4,
                "num_train_epochs": 1.0,
                "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 1,
                "rounds": [
                    {
                        **ROUND,
                        "focus_categories": ["brushed_metal"],
                        "focus_n": 2,
                        "focus_seed": 8,
                        "freeze_vision_tower": False,  # this round tunes the tower as well
                        "good_share": 0.25,
                    }
                ],
            },
            "grpo": {
                "steps": 1,
                "synth_n": 2,
                "num_generations": 2,
                "per_device_train_batch_size": 2,
                "max_completion_length": 16,
                "categories": ["brushed_metal"],
                "good_share": 0.5,
            },
            "validation_n": 2,
        }
    )


def test_the_pipeline_runs_every_stage_resumes_and_ships_an_fp16_model(tmp_path, monkeypatch):
    import torch
    from safetensors import safe_open

    import train.demo_trainer as demo_trainer
    from station.backends.hf import HFBackend

    monkeypatch.setattr(demo_trainer, "DEMO_SHAPE", MINI_SHAPE)
    config = mini_config(tmp_path / "run")
    seen: list[str] = []
    final = demo_trainer.run_demo_training(config, on_stage=lambda name, _: seen.append(name))
    assert seen == [
        "init", "vision", "cot", "sft", "cot-2", "sft-2", "validate-sft", "grpo", "validate-grpo", "final"
    ]  # fmt: skip
    results = demo_trainer.stage_results(config.out)
    assert set(results) == set(seen)
    assert results["cot"]["written"] == 4 and results["cot"]["good"] == results["cot"]["defective"] == 2
    assert results["sft"]["steps"] == 2
    # the second round trains on its own parts, the focus category's extra ones among them
    sources = [json.loads(line)["source"] for line in (config.out / "cot-2/trajectories.jsonl").open()]
    assert results["cot-2"]["written"] == 4 and all("synth-sft-2" in source for source in sources)
    assert (results["cot-2"]["good"], results["cot-2"]["defective"]) == (1, 3)  # its good_share, 0.25
    assert (config.out / "synth-sft-2-focus/synth_meta.jsonl").is_file()
    assert results["sft-2"]["steps"] == 2
    recipe = json.loads((config.out / "sft-2/recipe.json").read_text(encoding="utf-8"))
    assert recipe["batch"]["freeze_vision_tower"] is False
    assert recipe["from"]["batch"]["freeze_vision_tower"] is True  # the first round kept it frozen
    assert _vision_differs(config.out / "sft", config.out / "sft-2")
    assert not _vision_differs(config.out / "vision", config.out / "sft")
    # SFT ends with the last round: that is the model validate-sft measures and GRPO starts from
    validated = json.loads((config.out / "validate-sft/run.json").read_text(encoding="utf-8"))
    assert Path(validated["spec"]["model"]).name == "sft-2"
    for name in ("validate-sft", "validate-grpo"):
        assert results[name]["images"] == 2  # the validation seed's test split: one good, one defective
        assert 0 <= results[name]["balanced_accuracy"] <= 1
    assert results["final"]["source"] == "grpo"

    with safe_open(final / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.float16}  # noqa: SIM118
    card = (final / "README.md").read_text(encoding="utf-8")
    assert "indus train demo --config train/configs/demo.yaml" in card and '"validation_seed": 4242' in card
    backend = HFBackend(final, device="cpu")
    assert backend.model_id
    backend.close()

    # a second run finds every stage done: nothing is recomputed, the records stay as they were
    stamps = {p: p.stat().st_mtime_ns for p in config.out.glob("*/stage.json")}
    again: list[str] = []
    demo_trainer.run_demo_training(config, on_stage=lambda name, _: again.append(name))
    assert again == seen
    assert {p: p.stat().st_mtime_ns for p in config.out.glob("*/stage.json")} == stamps

    # an edited recipe is refused at the first stage it changes, never silently served from stale stages
    config.grpo.learning_rate = 1e-3
    with pytest.raises(
        DemoConfigError, match=r"stage grpo was built with other settings \(grpo.learning_rate\)"
    ):
        demo_trainer.run_demo_training(config)
    config.grpo.learning_rate = mini_config(tmp_path / "run").grpo.learning_rate
    config.sft.rounds[0].learning_rate = 1e-3  # the second SFT round: everything after it is stale too
    with pytest.raises(DemoConfigError, match=r"stage sft-2 .*\(round.learning_rate\)"):
        demo_trainer.run_demo_training(config)
    (config.out / "vision" / "recipe.json").unlink()
    with pytest.raises(DemoConfigError, match=r"stage vision has no recipe\.json"):
        demo_trainer.run_demo_training(config)
    assert {p: p.stat().st_mtime_ns for p in config.out.glob("*/stage.json")} == stamps

    shipped = demo_trainer.ship(final, tmp_path / "package" / "demo")
    assert {p.name for p in shipped} >= {"model.safetensors", "config.json", "tokenizer.json", "README.md"}


def _vision_differs(before: Path, after: Path) -> bool:
    from safetensors.torch import load_file

    a, b = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    return any(not a[k].equal(b[k]) for k in a if k.startswith("model.visual."))


def test_an_interrupted_stage_runs_again(tmp_path, monkeypatch):
    import train.demo_trainer as demo_trainer

    monkeypatch.setattr(demo_trainer, "DEMO_SHAPE", MINI_SHAPE)
    config = mini_config(tmp_path / "run")
    demo_trainer.run_stage(config, "init")
    (config.out / "cot").mkdir()
    (config.out / "cot" / "trajectories.jsonl").write_text("half a fil", encoding="utf-8")  # killed mid-write
    result = demo_trainer.run_stage(config, "cot")
    assert result["written"] == 4
    lines = (config.out / "cot" / "trajectories.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and all(json.loads(line)["id"] for line in lines)


def test_cli_reports_a_bad_config(tmp_path):
    from station.cli.main import main

    bad = tmp_path / "demo.yaml"
    bad.write_text("sft: {trajectories: lots}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["train", "demo", "--config", str(bad)])
    assert result.exit_code != 0
    assert "sft.trajectories" in result.output


def test_cli_refuses_a_stale_stage_without_a_traceback(tmp_path):
    from station.cli.main import main

    (tmp_path / "init").mkdir()
    (tmp_path / "init" / "stage.json").write_text("{}", encoding="utf-8")  # finished, settings unknown
    result = CliRunner().invoke(main, ["train", "demo", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "stage init has no recipe.json" in result.output
    assert not isinstance(result.exception, DemoConfigError)  # reported by click, not raised
