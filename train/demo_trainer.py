"""`indus train demo`: the whole pipeline, synthetic parts -> Indus-CoT -> SFT -> GRPO, on a small Qwen3-VL.

The result is the station's embedded default model: `indus demo` and `indus validate --model demo` load it.
It is trained from random weights, so it runs in stages, each writing its own folder under ``out_dir`` and a
``stage.json`` when it finishes; running the command again skips finished stages, so a long CPU run that was
interrupted continues where it stopped.

1. ``init``: random weights of `DEMO_SHAPE`, a BPE of the protocol's text (`demo_tokenizer`), the template.
2. ``vision``: the vision tower learns to see defects from dense mask supervision (`vision_pretrain`).
3. ``cot``: programmatic Indus-CoT trajectories on synthetic parts (real tool calls and observations).
4. ``sft``: TRL SFT on them (`run_sft`), the pretrained vision tower frozen by default.
   Each further round of ``sft.rounds`` adds ``cot-N`` and ``sft-N`` on fresh parts, from the last model.
5. ``grpo``: TRL GRPO with real tools in the rollouts and the accuracy-gated reward (`run_grpo`).
6. ``validate-sft`` / ``validate-grpo``: `indus validate` of the last SFT model and of the GRPO one on parts
   from a seed no stage drew.
7. ``final``: the GRPO policy (the SFT one when GRPO is off) in fp16 safetensors with a README that
   states the recipe and the measured figures.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from station.backends.hf.tiny import build_config, save_processor
from train.demo_config import DEMO_SHAPE, DemoConfig, DemoConfigError, DemoSFTRound

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
RECIPE_FILE = "recipe.json"
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "preprocessor_config.json",
)
SHIPPED_FILES = ("config.json", "generation_config.json", "model.safetensors", *PROCESSOR_FILES, "README.md")


def stage_names(config: DemoConfig) -> list[str]:
    """The stages of a run, in order."""
    sft = []
    for number in range(1, len(config.sft.all_rounds(config.seed)) + 1):
        sft += [_round_folder("cot", number), _round_folder("sft", number)]
    grpo = ["grpo", "validate-grpo"] if config.grpo.steps else []
    return ["init", "vision", *sft, "validate-sft", *grpo, "final"]


def last_sft(config: DemoConfig) -> str:
    """The stage whose model SFT ends with: GRPO starts from it, and `validate-sft` measures it."""
    return _round_folder("sft", len(config.sft.all_rounds(config.seed)))


def _round_folder(kind: str, number: int) -> str:
    """``cot``, ``sft``, ``synth-sft`` for the first round (the names of a one-round run), ``-N`` after."""
    return kind if number == 1 else f"{kind}-{number}"


def run_demo_training(config: DemoConfig, on_stage: Callable[[str, dict], None] | None = None) -> Path:
    """Run (or resume) every stage and return the ``final`` folder."""
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "demo_config.json").write_text(
        json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8"
    )
    for name in stage_names(config):
        result = run_stage(config, name)
        if on_stage is not None:
            on_stage(name, result)
    return config.out / "final"


def run_stage(config: DemoConfig, name: str) -> dict:
    """Run one stage unless its ``stage.json`` says it finished; returns what it recorded.

    A finished stage is reused only if it was built from the same settings (its own and those of every
    stage it builds on, kept in ``recipe.json``): an edited recipe never silently ships stale stages."""
    marker = config.out / name / STAGE_FILE
    recipe = json.loads(json.dumps(stage_recipe(config, name)))  # as read back: tuples are lists
    if marker.is_file():
        _check_recipe(config.out / name, recipe)
        log.info("stage %s: done earlier (%s)", name, marker)
        return json.loads(marker.read_text(encoding="utf-8"))
    log.info("stage %s: running", name)
    started = time.perf_counter()
    result = _stage_function(name)(config)
    result["seconds"] = round(time.perf_counter() - started, 1)
    marker.parent.mkdir(parents=True, exist_ok=True)
    (marker.parent / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    marker.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def stage_recipe(config: DemoConfig, name: str) -> dict[str, Any]:
    """Every setting that decides a stage's output, with the recipes of the stages it builds on."""
    rounds = config.sft.all_rounds(config.seed)
    validation = {
        key: getattr(config, key)
        for key in ("validation_seed", "validation_n", "max_new_tokens", "deadline_s", "image_size")
    }
    validation["categories"] = config.categories
    if name == "init":
        return {"seed": config.seed, "shape": asdict(DEMO_SHAPE)}
    if name == "vision":
        return {"vision": asdict(config.vision), "from": stage_recipe(config, "init")}
    if name == "validate-sft":
        return {"validation": validation, "model": stage_recipe(config, last_sft(config))}
    if name == "grpo":
        return {
            "grpo": asdict(config.grpo),
            "seed": config.seed,
            "parts": {"image_size": config.image_size, "categories": config.categories},
            "from": stage_recipe(config, last_sft(config)),
        }
    if name == "validate-grpo":
        return {"validation": validation, "model": stage_recipe(config, "grpo")}
    if name == "final":
        built = ["validate-sft", *(["grpo", "validate-grpo"] if config.grpo.steps else [])]
        return {stage: stage_recipe(config, stage) for stage in built}
    kind, _, number = name.partition("-")
    index = int(number or 1)
    sft_round = asdict(rounds[index - 1])
    if kind == "cot":  # the data alone: a new learning rate reuses the trajectories
        for key in ("learning_rate", "num_train_epochs", "warmup_ratio", "freeze_vision_tower"):
            del sft_round[key]
        teacher = {key: getattr(config.sft, key) for key in ("teacher_style", "direct_ratio", "prior_ratio")}
        parts = {"image_size": config.image_size, "categories": config.categories}
        return {"round": sft_round, "teacher": teacher, "parts": parts}
    batch = {
        "per_device_train_batch_size": config.sft.per_device_train_batch_size,
        "gradient_accumulation_steps": config.sft.gradient_accumulation_steps,
        "freeze_vision_tower": rounds[index - 1].freeze_vision_tower,
    }
    start = "vision" if index == 1 else _round_folder("sft", index - 1)
    return {
        "round": sft_round,
        "batch": batch,
        "data": stage_recipe(config, _round_folder("cot", index)),
        "from": stage_recipe(config, start),
    }


def _check_recipe(folder: Path, recipe: dict[str, Any]) -> None:
    record = folder / RECIPE_FILE
    remedy = f"delete {folder} (and the stages after it) to rebuild it, or choose another --out"
    if not record.is_file():
        raise DemoConfigError(f"stage {folder.name} has no {RECIPE_FILE}: its settings are unknown; {remedy}")
    built = json.loads(record.read_text(encoding="utf-8"))
    if built != recipe:
        changed = ", ".join(_differences(built, recipe)[:5])
        raise DemoConfigError(f"stage {folder.name} was built with other settings ({changed}); {remedy}")


def _differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Dotted paths where two recipes differ (``from.`` leads into the stage a stage builds on)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            change
            for key in sorted(set(before) | set(after), key=str)
            for change in _differences(before.get(key), after.get(key), f"{path}{key}.")
        ]
    return [] if before == after else [path.rstrip(".")]


def stage_results(out: Path) -> dict[str, dict]:
    """The ``stage.json`` of every finished stage under ``out``."""
    return {
        marker.parent.name: json.loads(marker.read_text(encoding="utf-8"))
        for marker in sorted(Path(out).glob(f"*/{STAGE_FILE}"))
    }


def _init(config: DemoConfig) -> dict:
    from transformers import Qwen3VLForConditionalGeneration

    from train.demo_tokenizer import build_demo_tokenizer

    path = config.out / "init"
    tokenizer = build_demo_tokenizer()
    torch.manual_seed(config.seed)
    model = Qwen3VLForConditionalGeneration(build_config(tokenizer, DEMO_SHAPE))
    model.save_pretrained(path)
    save_processor(path, tokenizer, DEMO_SHAPE)
    return {"parameters": sum(p.numel() for p in model.parameters())}


def _vision(config: DemoConfig) -> dict:
    from station.backends.hf.processor import QwenVLImageProcessor
    from train.vision_pretrain import pretrain_vision

    source, path = config.out / "init", config.out / "vision"
    model = _load(source)
    processor = QwenVLImageProcessor.from_config(
        json.loads((source / "preprocessor_config.json").read_text(encoding="utf-8"))
    )
    _copy_processor(source, path)
    # a long CPU run saves the model as it goes; the stage counts as done only when stage.json is written
    figures = pretrain_vision(
        model,
        processor,
        config.vision,
        checkpoint=path / "training_state.pt",
        on_checkpoint=lambda _: model.save_pretrained(path),
    )
    model.save_pretrained(path)
    return figures


def _cot(config: DemoConfig, number: int) -> dict:
    from calibration.datasets import open_dataset
    from calibration.synth import write_dataset
    from train.cot import build_trajectories
    from train.cot.teacher import ProgrammaticTeacher

    sft_round = config.sft.all_rounds(config.seed)[number - 1]
    parts = config.out / _round_folder("synth-sft", number)
    path = config.out / _round_folder("cot", number)
    write_dataset(parts, sft_round.synth_n, sft_round.synth_seed, config.image_size, config.categories)
    samples = list(open_dataset(f"synth:{parts}").samples())
    if sft_round.focus_categories:
        focus = parts.with_name(parts.name + "-focus")
        write_dataset(
            focus, sft_round.focus_n, sft_round.focus_seed, config.image_size, sft_round.focus_categories
        )
        samples += open_dataset(f"synth:{focus}").samples()
    if path.exists():  # a build interrupted before its stage.json: start it over
        shutil.rmtree(path)
    report = build_trajectories(
        samples,
        path,
        seed=sft_round.seed,
        balance=sft_round.good_share,
        total=sft_round.trajectories,
        teacher=ProgrammaticTeacher(
            direct_ratio=config.sft.direct_ratio,
            prior_ratio=config.sft.prior_ratio,
            style=config.sft.teacher_style,
        ),
    )
    return {
        "written": report.written,
        "good": report.good,
        "defective": report.defective,
        "direct_answers": report.direct_answers,
        "tool_calls": report.tool_calls,
        "rejected": len(report.rejected),
    }


def _sft(config: DemoConfig, number: int) -> dict:
    from train.sft_config import SFTRunConfig
    from train.sft_trainer import STATE_FILE, run_sft

    sft_round: DemoSFTRound = config.sft.all_rounds(config.seed)[number - 1]
    start = "vision" if number == 1 else _round_folder("sft", number - 1)
    path = config.out / _round_folder("sft", number)
    run_sft(
        SFTRunConfig(
            model_dir=str(config.out / start),
            dataset_dir=str(config.out / _round_folder("cot", number)),
            output_dir=str(path),
            num_train_epochs=sft_round.num_train_epochs,
            learning_rate=sft_round.learning_rate,
            warmup_ratio=sft_round.warmup_ratio,
            lr_scheduler_type="cosine",
            per_device_train_batch_size=config.sft.per_device_train_batch_size,
            gradient_accumulation_steps=config.sft.gradient_accumulation_steps,
            freeze_vision_tower=sft_round.freeze_vision_tower,
            gradient_checkpointing=False,
            seed=sft_round.seed,
            use_cpu=not torch.cuda.is_available(),
            logging_steps=10,
            save_steps=25,  # about every 2 minutes on a CPU: an interrupted stage resumes from here
            save_total_limit=1,
            resume=True,
        )
    )
    for checkpoint in path.glob("checkpoint-*"):  # the finished model is in the stage folder itself
        shutil.rmtree(checkpoint)
    history = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    return {"first_loss": losses[0], "last_loss": losses[-1], "steps": history[-1].get("step")}


def _grpo(config: DemoConfig) -> dict:
    from calibration.synth import write_dataset
    from train.grpo_config import GRPORunConfig
    from train.grpo_trainer import run_grpo

    grpo = config.grpo
    parts = config.out / "synth-grpo"
    categories = grpo.categories or config.categories
    write_dataset(parts, grpo.synth_n, grpo.synth_seed, config.image_size, categories)
    run_grpo(
        GRPORunConfig(
            model_dir=str(config.out / last_sft(config)),
            dataset=f"synth:{parts}",
            good_share=grpo.good_share,
            output_dir=str(config.out / "grpo"),
            num_generations=grpo.num_generations,
            per_device_train_batch_size=grpo.per_device_train_batch_size,
            learning_rate=grpo.learning_rate,
            beta=grpo.beta,
            temperature=grpo.temperature,
            max_completion_length=grpo.max_completion_length,
            max_steps=grpo.steps,
            seed=config.seed,
            use_cpu=not torch.cuda.is_available(),
        )
    )
    return {"steps": grpo.steps}


def _validate(config: DemoConfig, stage: str, out: str) -> dict:
    """`indus validate` of one stage's model on parts from the validation seed, into ``out``; the headline."""
    from calibration.synth import write_dataset
    from calibration.validate.runner import RunSpec, ValidationRun
    from station.agent_config import AgentConfig
    from station.backends import load_backend

    parts = config.out / "synth-validation"
    if not (parts / "synth_meta.jsonl").is_file():
        write_dataset(
            parts, config.validation_n, config.validation_seed, config.image_size, config.categories
        )
    model_dir = config.out / stage
    agent = AgentConfig(max_new_tokens=config.max_new_tokens, deadline_s=config.deadline_s)
    spec = RunSpec.create(f"synth:{parts}", backend="hf", model=str(model_dir), agent=agent)
    run = ValidationRun(config.out / out, spec, restart=True)
    backend = load_backend("hf", str(model_dir), device="auto")
    try:
        inspection = run.inspect(backend, progress=False)
    finally:
        backend.close()
    return headline(run.report(inspection.results))


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures the demo model is judged by, from a validation run's metrics."""
    overall = metrics["overall"]
    classification = overall["classification"]
    return {
        "images": overall["images"],
        "balanced_accuracy": classification["balanced_accuracy"],
        "recall": classification["recall"],
        "false_reject_rate": classification["false_reject_rate"],
        "fail_safes": overall["fail_safes"]["count"],
        "tool_calls_per_part": overall["tools"]["per_image"],
        "latency_p50_s": overall["latency"]["p50_s"],
        "by_category": {
            name: scope["classification"]["balanced_accuracy"]
            for name, scope in metrics["categories"].items()
        },
    }


def _final(config: DemoConfig) -> dict:
    source = config.out / ("grpo" if config.grpo.steps else last_sft(config))
    path = config.out / "final"
    model = _load(source).to(torch.float16)
    model.save_pretrained(path)
    _copy_processor(source, path)
    results = stage_results(config.out)
    (path / "README.md").write_text(model_card(config, source.name, results), encoding="utf-8")
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return {"source": source.name, "bytes": size}


def model_card(config: DemoConfig, source: str, results: dict[str, dict]) -> str:
    """The README shipped with the model: what it is, how to rebuild it, and how it measured."""
    figures = {name: results[name] for name in ("validate-sft", "validate-grpo") if name in results}
    return (
        "# indus-station demo model\n\n"
        "A 4 M-parameter Qwen3-VL-shaped model trained from random weights on synthetic parts only, by "
        "`indus train demo`: vision pretraining on defect masks, SFT on programmatic Indus-CoT trajectories "
        "with real tool calls, then GRPO with real tools and the accuracy-gated reward. It knows the six "
        "`indus synth` categories and nothing else: it shows the station and the agent at work; it is not "
        "a detector for real parts.\n\n"
        f"Policy shipped: the `{source}` stage, fp16 safetensors.\n\n"
        "## Rebuild\n\n"
        "```\nindus train demo --config train/configs/demo.yaml --out runs/demo\n```\n\n"
        f"Seed {config.seed}; the whole configuration:\n\n```json\n"
        f"{json.dumps(asdict(config), indent=2)}\n```\n\n"
        "## Measured (`indus validate` on `indus synth` parts from the validation seed)\n\n"
        f"```json\n{json.dumps(figures, indent=2)}\n```\n\n"
        f"Stage records:\n\n```json\n{json.dumps(results, indent=2)}\n```\n"
    )


_STAGES: dict[str, Callable[[DemoConfig], dict]] = {
    "init": _init,
    "vision": _vision,
    "validate-sft": lambda config: _validate(config, last_sft(config), "validate-sft"),
    "grpo": _grpo,
    "validate-grpo": lambda config: _validate(config, "grpo", "validate-grpo"),
    "final": _final,
}


def _stage_function(name: str) -> Callable[[DemoConfig], dict]:
    """The stage's function; ``cot``/``sft`` and their ``-N`` rounds take the round's number."""
    if name in _STAGES:
        return _STAGES[name]
    kind, _, number = name.partition("-")
    round_stages = {"cot": _cot, "sft": _sft}
    if kind not in round_stages or not (number == "" or (number.isdigit() and int(number) > 1)):
        raise KeyError(f"no demo stage named {name!r}")
    return lambda config: round_stages[kind](config, int(number or 1))


def ship(final: Path, destination: Path) -> list[Path]:
    """Copy the shipped files of ``final`` into ``destination`` (the package's demo model folder)."""
    destination.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in SHIPPED_FILES:
        if (final / name).is_file():
            copied.append(Path(shutil.copy2(final / name, destination / name)))
    return copied


def _load(path: Path):
    from transformers import Qwen3VLForConditionalGeneration

    return Qwen3VLForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, use_safetensors=True, local_files_only=True
    )


def _copy_processor(source: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROCESSOR_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, destination / name)
