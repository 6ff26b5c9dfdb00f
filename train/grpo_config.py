"""Settings of one GRPO run, in TRL's dataclass style, loadable from YAML without importing torch or TRL.

The CLI reads a file through `GRPORunConfig.from_yaml`; every mistake in it (an unknown key, a wrong type, a
group size that does not divide the batch) is reported by key before a model is loaded, because a run that
fails after minutes of loading wastes the GPU time it was scheduled for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.config_io import ConfigError, config_from_dict, load_config
from train.rewards import RewardConfig


@dataclass
class GRPORunConfig:
    model_dir: str = field(metadata={"help": "Local Qwen-VL checkpoint directory (safetensors), the policy."})
    dataset: str = field(
        metadata={
            "help": "Labelled images as KIND:PATH for calibration.datasets.open_dataset, e.g. synth:parts."
        }
    )
    output_dir: str = field(
        metadata={"help": "Where the trained policy is written: a full model, or the LoRA adapter."}
    )
    adapter_dir: str | None = field(
        default=None,
        metadata={"help": "SFT LoRA adapter to start from; GRPO then trains that adapter, not the base."},
    )
    categories: list[str] | None = field(
        default=None, metadata={"help": "Only these categories of the dataset (default: all)."}
    )
    limit: int | None = field(
        default=None, metadata={"help": "At most this many samples, drawn with `seed` (default: all)."}
    )
    good_share: float | None = field(
        default=None,
        metadata={
            "help": "Share of good parts among the rollout images, in (0, 1): the larger side is thinned "
            "(drawn with `seed`) to reach it; default: the dataset's own mix. The verdict's reward reaches "
            "the policy only through groups whose rollouts disagree on it, so this sets how much of that "
            "signal comes from defective parts."
        },
    )
    num_generations: int = field(
        default=8, metadata={"help": "Group size G: rollouts per image whose rewards are compared."}
    )
    beta: float = field(
        default=0.04, metadata={"help": "KL coefficient against the starting policy (0: no ref)."}
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "Peak learning rate."})
    max_steps: int = field(default=500, metadata={"help": "Optimizer steps."})
    per_device_train_batch_size: int = field(
        default=8,
        metadata={"help": "Completions (not images) per device and step; a multiple of num_generations."},
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches accumulated per step."})
    max_completion_length: int = field(
        default=1024,
        metadata={
            "help": "Token budget of a whole trajectory: every turn plus the tool results between them."
        },
    )
    max_tool_calling_iterations: int = field(
        default=4, metadata={"help": "Tool rounds per rollout before the trajectory is cut off."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts."})
    probe_tools: bool = field(
        default=True,
        metadata={
            "help": "Measure each tool call's confidence gain (the policy's P(correct verdict) with the "
            "answer forced before and after the observation) so R_tool can pay reward.alpha; one extra "
            "forward per tool call, sharing a KV cache along the rollout. false: every call just costs "
            "reward.beta."
        },
    )
    max_pixels: int | None = field(
        default=None, metadata={"help": "Image budget in pixels (default: the checkpoint's own)."}
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the sample draw, the shuffling and the sampling."}
    )
    use_cpu: bool = field(default=False, metadata={"help": "Train on the CPU even when CUDA is available."})
    logging_steps: int = field(default=1, metadata={"help": "Log the metrics every this many steps."})
    reward: RewardConfig = field(
        default_factory=RewardConfig,
        metadata={"help": "Reward weights and costs (train.rewards.RewardConfig fields)."},
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Checks that need more than one field, so a bad file fails here rather than inside TRL."""
        positive = (
            "num_generations",
            "max_steps",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
        )
        for name in (*positive, "max_completion_length", "max_tool_calling_iterations", "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ConfigError("num_generations must be at least 2: GRPO compares rollouts within a group")
        if self.per_device_train_batch_size % self.num_generations:
            raise ConfigError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) must be a multiple of "
                f"num_generations ({self.num_generations}): a batch holds whole groups"
            )
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1, got {self.limit}")
        if self.good_share is not None and not 0 < self.good_share < 1:
            raise ConfigError(f"good_share must lie in (0, 1), got {self.good_share}")
        if self.beta < 0 or self.learning_rate <= 0 or self.temperature <= 0:
            raise ConfigError("beta must be >= 0, learning_rate and temperature > 0")
        if ":" not in self.dataset:
            raise ConfigError(f"dataset {self.dataset!r}: expected KIND:PATH, e.g. synth:parts")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> GRPORunConfig:
        return config_from_dict(cls, data, source, {"reward": RewardConfig})

    @classmethod
    def from_yaml(cls, path: str | Path) -> GRPORunConfig:
        """Relative paths in the file are kept as written: they resolve against the working directory."""
        return load_config(cls, path, {"reward": RewardConfig})
