"""Configuration of `indus train demo`: every number that decides the shipped demo model, in one file.

The shipped model's recipe is `train/configs/demo.yaml` (`RECIPE`): `indus train demo` runs it unless given
another, and rebuilds the model; a GPU runs the same recipe in minutes. The defaults here are its first SFT
round and its GRPO, without the further rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from station.backends.hf.tiny import ModelShape
from train.config_io import ConfigError, config_from_dict, load_config
from train.vision_pretrain import VisionPretrainConfig

# 4 M parameters: 8 MB in fp16. 256 px parts at patch 16 are 64 image tokens after the 2x2 merge: enough to
# see a 1-2 px scratch, which the 16 tokens of 128 px were not.
DEMO_SHAPE = ModelShape(
    hidden_size=192,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=6,
    num_key_value_heads=2,
    head_dim=32,
    mrope_section=(8, 4, 4),
    vision_depth=4,
    vision_hidden_size=128,
    vision_intermediate_size=512,
    vision_num_heads=4,
    patch_size=16,
    deepstack_visual_indexes=(1, 3),
    max_pixels=256 * 256,
)


RECIPE = Path(__file__).resolve().parent / "configs" / "demo.yaml"


class DemoConfigError(ConfigError):
    """A demo configuration that cannot be run."""


@dataclass
class DemoSFTRound:
    """A further SFT pass from the previous round's model, on parts it has not seen.

    Measured on the demo: fresh parts keep lifting balanced accuracy where more epochs over the same ones do
    not, and the weak families can be given more of them (``focus_categories``)."""

    trajectories: int = field(metadata={"help": "Indus-CoT trajectories (balanced) of this round."})
    synth_n: int = field(metadata={"help": "`indus synth --n` per category for this round's parts."})
    synth_seed: int = field(metadata={"help": "Seed of this round's parts (unique across the recipe)."})
    seed: int = field(metadata={"help": "Seed of this round's trajectory build and data order."})
    learning_rate: float = field(metadata={"help": "Peak learning rate (cosine decay to zero)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the trajectories."})
    warmup_ratio: float = field(default=0.02, metadata={"help": "Share of the steps spent warming up."})
    focus_categories: list[str] = field(
        default_factory=list,
        metadata={"help": "Categories that get `focus_n` more parts each (drawn from `focus_seed`)."},
    )
    focus_n: int = field(default=0, metadata={"help": "Extra `indus synth --n` per focus category."})
    focus_seed: int | None = field(
        default=None, metadata={"help": "Seed of the focus parts (required with focus_categories)."}
    )
    freeze_vision_tower: bool | None = field(
        default=None,
        metadata={"help": "Override `sft.freeze_vision_tower` for this round (false: tune the tower too)."},
    )
    good_share: float = field(
        default=0.5,
        metadata={
            "help": "Share of good parts among the round's trajectories (0.5: balanced). Below 0.5 shows the "
            "model more defects; on the demo, 0.4 did not move its first decision (README, The demo model)."
        },
    )


@dataclass
class DemoSFTConfig:
    trajectories: int = field(
        default=2000, metadata={"help": "Indus-CoT trajectories (balanced) to train on."}
    )
    synth_n: int = field(
        default=350, metadata={"help": "`indus synth --n` per category for the Indus-CoT source parts."}
    )
    synth_seed: int = field(
        default=1000, metadata={"help": "Seed of the source parts (never a validation seed)."}
    )
    teacher_style: str = field(
        default="terse",
        metadata={"help": "Programmatic teacher's wording (`ProgrammaticTeacher` style: rich or terse)."},
    )
    direct_ratio: float = field(
        default=0.15, metadata={"help": "Share of trajectories that answer without a tool call."}
    )
    prior_ratio: float = field(
        default=0.15,
        metadata={"help": "Share that also recalls the product's prior (long text: costly on CPU)."},
    )
    num_train_epochs: float = field(default=2.0, metadata={"help": "Passes over the trajectories."})
    learning_rate: float = field(
        default=1e-3, metadata={"help": "Peak learning rate (the LM starts from scratch)."}
    )
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of the steps spent warming up."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Trajectories per forward pass."})
    gradient_accumulation_steps: int = field(default=2, metadata={"help": "Batches accumulated per step."})
    freeze_vision_tower: bool = field(
        default=True,
        metadata={"help": "Keep the pretrained vision tower fixed while the LM learns to read it."},
    )
    rounds: list[DemoSFTRound] = field(
        default_factory=list,
        metadata={"help": "Further SFT rounds on fresh parts, each from the previous round's model."},
    )

    def all_rounds(self, seed: int) -> list[DemoSFTRound]:
        """Every SFT round in order, as it runs: the first one spelled out by this config's own fields, and
        `freeze_vision_tower` resolved in each."""
        first = DemoSFTRound(
            trajectories=self.trajectories,
            synth_n=self.synth_n,
            synth_seed=self.synth_seed,
            seed=seed,
            learning_rate=self.learning_rate,
            num_train_epochs=self.num_train_epochs,
            warmup_ratio=self.warmup_ratio,
        )
        return [
            replace(r, freeze_vision_tower=self.freeze_vision_tower) if r.freeze_vision_tower is None else r
            for r in (first, *self.rounds)
        ]


@dataclass
class DemoGRPOConfig:
    steps: int = field(
        default=40, metadata={"help": "GRPO optimizer steps after SFT (0: ship the SFT model)."}
    )
    synth_n: int = field(
        default=40, metadata={"help": "`indus synth --n` per category for the rollout parts."}
    )
    synth_seed: int = field(default=2000, metadata={"help": "Seed of the rollout parts."})
    categories: list[str] | None = field(
        default=None,
        metadata={"help": "Roll out on parts of only these categories (default: every trained one)."},
    )
    good_share: float | None = field(
        default=None,
        metadata={
            "help": "Share of good parts among the rollout parts, in (0, 1) (default: the synthetic mix, "
            "half); see GRPORunConfig.good_share."
        },
    )
    num_generations: int = field(default=4, metadata={"help": "Rollouts per part (the group)."})
    per_device_train_batch_size: int = field(
        default=4, metadata={"help": "Rollouts per step (whole groups)."}
    )
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate."})
    beta: float = field(default=0.04, metadata={"help": "KL coefficient against the SFT policy."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts."})
    max_completion_length: int = field(default=1024, metadata={"help": "Tokens a rollout may write in all."})


@dataclass
class DemoConfig:
    out_dir: str = field(
        default="runs/demo", metadata={"help": "Working folder; every stage resumes from it."}
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the initial weights and of every stage's data order."}
    )
    image_size: int = field(default=256, metadata={"help": "Side of the synthetic parts in px."})
    categories: list[str] | None = field(
        default=None, metadata={"help": "`indus synth` categories to train and validate on (default: all)."}
    )
    max_new_tokens: int = field(
        default=384, metadata={"help": "Tokens the model may write per round when it is validated."}
    )
    deadline_s: float = field(
        default=60.0,
        metadata={"help": "Budget per part when validated: offline, so only a runaway is stopped."},
    )
    vision: VisionPretrainConfig = field(default_factory=VisionPretrainConfig)
    sft: DemoSFTConfig = field(default_factory=DemoSFTConfig)
    grpo: DemoGRPOConfig = field(default_factory=DemoGRPOConfig)
    validation_seed: int = field(
        default=4242, metadata={"help": "Seed of the validation parts: a stream no stage trains on."}
    )
    validation_n: int = field(
        default=24,
        metadata={"help": "`indus synth --n` per category for validation (half good, half defective)."},
    )

    def __post_init__(self) -> None:
        from calibration.synth.parts import CATEGORIES

        rounds = self.sft.all_rounds(self.seed)
        seeds = [self.grpo.synth_seed]
        for r in rounds:
            seeds += [r.synth_seed] + ([r.focus_seed] if r.focus_categories else [])
        if len(set(seeds)) < len(seeds):
            raise DemoConfigError("every synth seed (SFT rounds, focus parts, GRPO) must be distinct")
        if self.validation_seed in seeds:
            raise DemoConfigError(
                "validation_seed must differ from the training seeds: it measures unseen parts"
            )
        if self.validation_n < 2 or any(r.trajectories < 2 or r.synth_n < 1 for r in rounds):
            raise DemoConfigError(
                "trajectories, synth_n (of every SFT round) and validation_n must be positive (>= 2)"
            )
        if self.categories is not None:
            unknown = sorted(set(self.categories) - set(CATEGORIES))
            if unknown or not self.categories:
                raise DemoConfigError(
                    f"categories: unknown or empty {unknown}; known: {', '.join(CATEGORIES)}"
                )
        for number, r in enumerate(rounds, start=1):
            unknown = sorted(set(r.focus_categories) - set(self.categories or CATEGORIES))
            if unknown:
                raise DemoConfigError(f"sft round {number}: focus_categories not trained on: {unknown}")
            if r.focus_categories and (r.focus_n < 1 or r.focus_seed is None):
                raise DemoConfigError(
                    f"sft round {number}: focus_categories need focus_n >= 1 and a focus_seed"
                )
            if not 0 < r.good_share < 1:
                raise DemoConfigError(
                    f"sft round {number}: good_share must lie in (0, 1), got {r.good_share}"
                )
        unknown = sorted(set(self.grpo.categories or []) - set(self.categories or CATEGORIES))
        if unknown or self.grpo.categories == []:
            raise DemoConfigError(f"grpo.categories: empty or not trained on: {unknown}")
        if self.grpo.good_share is not None and not 0 < self.grpo.good_share < 1:
            raise DemoConfigError(f"grpo.good_share must lie in (0, 1), got {self.grpo.good_share}")
        from train.cot.teacher import STYLES

        if self.sft.teacher_style not in STYLES:
            raise DemoConfigError(f"sft.teacher_style must be one of {', '.join(STYLES)}")
        if self.grpo.steps < 0:
            raise DemoConfigError("grpo.steps must be >= 0")
        if self.grpo.steps and self.grpo.per_device_train_batch_size % self.grpo.num_generations:
            raise DemoConfigError(
                "grpo.per_device_train_batch_size must be a multiple of grpo.num_generations"
            )

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> DemoConfig:
        return config_from_dict(cls, data, source, _NESTED)

    @classmethod
    def from_yaml(cls, path: str | Path) -> DemoConfig:
        """Relative paths in the file are kept as written: they resolve against the working directory."""
        return load_config(cls, path, _NESTED)


_NESTED = {"vision": VisionPretrainConfig, "sft": DemoSFTConfig, "grpo": DemoGRPOConfig}
