"""GRPO of the inspection agent with TRL: every rollout runs the station's real tools on its own image.

TRL's tools are plain callables with no view of the sample being rolled out, so the tools live on an
environment (TRL's ``environment_factory``): TRL keeps one `InspectionEnvironment` per rollout, calls its
``reset`` with the dataset row before generation (the row carries the image), and runs the model's tool
calls as that instance's methods. The methods hand the call to the project's `ToolRegistry` with a
`ToolContext` on the row's full-resolution frame, exactly as the station's agent loop does, so crop and
enhance return real views of that part (as images in the tool message) and a bad call yields the same error
observation the station would show. TRL masks the tool-result tokens out of the loss (``tool_mask``).

The prompt is the station's protocol: the system prompt, the image and the inspection request, rendered
with the registry's own tool schemas (the block SFT trained on), not schemas TRL would derive from the
methods' signatures. Tool probes (the confidence gain of each observation) are not measured inside TRL's
loop: the reward charges every call its cost beta and pays no bonus, as `train.rewards` documents.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import transformers
from datasets import Dataset, Features, Image, List, Value
from trl import GRPOConfig, GRPOTrainer

from calibration.datasets import Sample, open_dataset
from station.backends.hf.loading import MODEL_CLASSES, check_adapter_dir, check_model_dir
from station.backends.hf.processor import QwenVLProcessor
from station.protocol import SYSTEM_PROMPT, user_text
from tools.image import as_uint8, to_rgb
from tools.prior import PriorStore
from tools.registry import Observation, ToolContext, ToolRegistry
from tools.toolkit import default_registry
from train.grpo_config import GRPORunConfig
from train.rewards import (
    Episode,
    GroundTruth,
    RewardConfig,
    classification_reward,
    completion_texts,
    gt_boxes_from_mask,
    indus_reward,
)

FEATURES = Features(
    {
        "prompt": List({"role": Value("string"), "content": Value("string")}),
        "image": Image(),
        "product": Value("string"),
        "anomalous": Value("bool"),
        "defect_type": Value("string"),
        "gt_boxes": List(List(Value("float64"))),
    }
)


class InspectionEnvironment:
    """One rollout's view of one part: the tools run on the frame of the row given to `reset`.

    The public methods are the tools TRL exposes (their names are the registry's); they take the model's
    arguments as they came, because the registry validates them and answers a bad call with an error
    observation the model can read, which a Python signature would turn into a TypeError instead.
    """

    def __init__(self, registry: ToolRegistry, priors: PriorStore | None = None):
        self._registry = registry
        self._priors = priors
        self._context: ToolContext | None = None
        self.observations: list[Observation] = []

    def reset(self, image: Any, product: str | None = None, **_: Any) -> None:
        """Bind the rollout's image; None means the prompt already shows it, so nothing is appended."""
        self._context = ToolContext(
            frame=to_rgb(as_uint8(np.asarray(image))), product=product, priors=self._priors
        )
        self.observations = []

    def crop(self, **arguments: Any) -> list[dict]:
        """Zoom in: a full-resolution patch of the part's image around bbox."""
        return self._call("crop", arguments)

    def enhance(self, **arguments: Any) -> list[dict]:
        """An enhanced grey view of the image or a region."""
        return self._call("enhance", arguments)

    def prior(self, **arguments: Any) -> list[dict]:
        """The normalcy prior of a product."""
        return self._call("prior", arguments)

    def measure(self, **arguments: Any) -> list[dict]:
        """Geometry between points or boxes."""
        return self._call("measure", arguments)

    def _call(self, name: str, arguments: dict[str, Any]) -> list[dict]:
        if self._context is None:
            raise RuntimeError("tool called before reset: TRL did not bind a sample to this rollout")
        observation = self._registry.call(name, arguments, self._context)
        self.observations.append(observation)
        # As the station's tool message: the JSON text first, so the model knows what the images show.
        return [{"type": "text", "text": observation.text}] + [
            {"type": "image", "image": PIL.Image.fromarray(as_uint8(img))} for img in observation.images
        ]


def load_samples(config: GRPORunConfig) -> list[Sample]:
    samples = list(open_dataset(config.dataset, config.categories).samples())
    if config.limit is not None and config.limit < len(samples):
        samples = random.Random(config.seed).sample(samples, config.limit)
    if not samples:
        raise ValueError(f"dataset {config.dataset} has no samples for the selected categories")
    return samples


def build_dataset(samples: Sequence[Sample]) -> Dataset:
    """One row per image: the protocol's opening (the image is inserted by TRL), and the ground truth as the
    columns `indus_reward` reads. Images stay file paths where possible, so a large dataset is not copied."""
    rows = []
    for sample in samples:
        rows.append(
            {
                "prompt": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": user_text(sample.category)},
                ],
                "image": str(sample.image) if sample.region is None else sample.load_image(),
                "product": sample.category,
                "anomalous": bool(sample.label),
                "defect_type": sample.defect if sample.label else None,
                "gt_boxes": _gt_boxes(sample),
            }
        )
    return Dataset.from_list(rows, features=FEATURES)


def _gt_boxes(sample: Sample) -> list[list[float]] | None:
    """Good parts: no box is the right answer. Defective parts without a mask: unknown (None), which the
    reward scores 0 for the whole group."""
    if not sample.label:
        return []
    mask = sample.load_mask()
    return None if mask is None else [list(box) for box in gt_boxes_from_mask(mask)]


def indus_grpo_reward(
    completions: Sequence[Any],
    anomalous: Sequence[bool],
    environments: Sequence[InspectionEnvironment] | None = None,
    log_metric: Any = None,
    config: RewardConfig | None = None,
    **columns: Any,
) -> list[float]:
    """`indus_reward`, plus the per-step accuracy and the tools each rollout really ran."""
    totals = indus_reward(completions, anomalous, log_metric=log_metric, config=config, **columns)
    if log_metric is not None and completions:
        answers = [Episode.from_texts(completion_texts(c)).answer for c in completions]
        correct = [
            classification_reward(a, GroundTruth(bool(y))) for a, y in zip(answers, anomalous, strict=True)
        ]
        log_metric("accuracy", sum(correct) / len(correct))
        if environments is not None:
            log_metric(
                "tools/calls_per_rollout", sum(len(e.observations) for e in environments) / len(environments)
            )
    return totals


def grpo_args(config: GRPORunConfig) -> GRPOConfig:
    return GRPOConfig(
        output_dir=config.output_dir,
        num_generations=config.num_generations,
        beta=config.beta,
        learning_rate=config.learning_rate,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_completion_length=config.max_completion_length,
        max_tool_calling_iterations=config.max_tool_calling_iterations,
        temperature=config.temperature,
        seed=config.seed,
        use_cpu=config.use_cpu,
        logging_steps=config.logging_steps,
        save_strategy="no",  # the policy is written once, by `run_grpo`, where HFBackend can load it
        report_to="none",
    )


def build_trainer(config: GRPORunConfig) -> GRPOTrainer:
    """The trainer, ready to `train()`: policy (with the SFT adapter when given), dataset, tools, reward."""
    model_dir = Path(config.model_dir)
    model_type = check_model_dir(model_dir)
    dataset = build_dataset(load_samples(config))  # before the weights: a bad dataset fails in seconds
    processor = QwenVLProcessor.from_pretrained(model_dir, max_pixels=config.max_pixels)
    model = getattr(transformers, MODEL_CLASSES[model_type]).from_pretrained(
        model_dir, use_safetensors=True, local_files_only=True
    )
    if config.adapter_dir is not None:
        from peft import PeftModel  # only adapter runs need peft

        check_adapter_dir(Path(config.adapter_dir))
        model = PeftModel.from_pretrained(model, config.adapter_dir, is_trainable=True, local_files_only=True)
    registry = default_registry()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=functools.partial(indus_grpo_reward, config=config.reward),
        args=grpo_args(config),
        train_dataset=dataset,
        processing_class=processor,
        environment_factory=functools.partial(InspectionEnvironment, registry, PriorStore.default()),
    )
    _render_registry_schemas(trainer, registry)
    return trainer


def _render_registry_schemas(trainer: GRPOTrainer, registry: ToolRegistry) -> None:
    """Make TRL render the registry's tool schemas instead of ones derived from the methods' signatures.

    TRL 1.16 renders prompts and parses responses with ``_env_tools[name]`` (schemas or callables alike) and
    executes calls from the environment's methods, so swapping the rendered list keeps execution intact.
    There is no public hook for this; the check fails loudly if a TRL upgrade moves it.
    """
    env_tools = getattr(trainer, "_env_tools", None)
    if not isinstance(env_tools, dict) or set(env_tools) != {None}:
        raise RuntimeError(
            "this TRL version keeps environment tools differently; update _render_registry_schemas"
        )
    names = sorted(tool.__name__ for tool in env_tools[None])
    if names != sorted(registry.names):
        raise RuntimeError(f"environment tools {names} differ from the registry's {sorted(registry.names)}")
    env_tools[None] = registry.schemas()


def save_policy(trainer: GRPOTrainer, config: GRPORunConfig) -> Path:
    """Write the policy where HFBackend loads it: a full checkpoint, or (adapter runs) the LoRA adapter to
    load as ``HFBackend(model_dir, adapter_dir=output_dir)``."""
    out = Path(config.output_dir)
    trainer.save_model(str(out))
    return out


def run_grpo(config: GRPORunConfig) -> Path:
    trainer = build_trainer(config)
    trainer.train()
    return save_policy(trainer, config)
