"""Settings of one SFT run, in TRL's dataclass style, loadable from YAML without importing torch or TRL.

Every mistake in a file (an unknown key, a wrong type, a LoRA rank of zero) is reported by key before a model
is loaded: a run that fails after minutes of loading wastes the GPU time it was scheduled for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.config_io import ConfigError, config_from_dict, load_config

# The language model's projections in Qwen2.5-VL and Qwen3-VL; the vision tower's layers are named
# differently (qkv, proj, linear_fc*), so the default adapter leaves the image encoder as pretrained.
TEXT_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


SFTConfigError = ConfigError  # the name callers of the SFT config know


@dataclass
class SFTRunConfig:
    model_dir: str = field(
        metadata={"help": "Local Qwen-VL checkpoint directory (safetensors) to fine-tune."}
    )
    dataset_dir: str = field(metadata={"help": "An Indus-CoT folder written by `indus train cot`."})
    output_dir: str = field(
        metadata={
            "help": "Where the result goes: a full checkpoint (HFBackend(output_dir)) or, with lora, the "
            "adapter (HFBackend(model_dir, adapter_dir=output_dir)); intermediate checkpoint-N folders too."
        }
    )
    lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter instead of every weight."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(TEXT_PROJECTIONS),
        metadata={"help": "Module names LoRA adapts (default: the language model's projections)."},
    )
    num_train_epochs: float = field(
        default=1.0, metadata={"help": "Passes over the dataset (max_steps wins)."}
    )
    max_steps: int = field(
        default=-1, metadata={"help": "Optimizer steps; -1 runs num_train_epochs instead."}
    )
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate."})
    per_device_train_batch_size: int = field(
        default=1, metadata={"help": "Trajectories per device and step."}
    )
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "Batches accumulated per step."})
    max_length: int = field(
        default=8192,
        metadata={
            "help": "Longest trajectory in tokens, image tokens included. Longer ones are left out, never "
            "truncated: a cut trajectory loses its answer, or image tokens its pixels still need."
        },
    )
    max_pixels: int | None = field(
        default=None,
        metadata={"help": "Image budget in pixels (default: the checkpoint's own); use the station's value."},
    )
    warmup_ratio: float = field(
        default=0.0, metadata={"help": "Share of the steps spent warming the learning rate up linearly."}
    )
    lr_scheduler_type: str = field(
        default="linear", metadata={"help": "transformers scheduler name: linear, cosine, constant, ..."}
    )
    freeze_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Keep the vision tower (patch embedding, blocks, mergers) fixed: train only the language "
            "model, as Qwen-VL fine-tunes usually do, or after the vision tower was pretrained on its own."
        },
    )
    gradient_checkpointing: bool = field(
        default=True,
        metadata={"help": "Recompute activations in the backward pass: less memory, ~30% slower."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the weights' init (LoRA) and the data order."})
    use_cpu: bool = field(default=False, metadata={"help": "Train on the CPU even when CUDA is available."})
    logging_steps: int = field(default=10, metadata={"help": "Log the loss every this many steps."})
    save_steps: int = field(
        default=500, metadata={"help": "Write a checkpoint-N folder every this many steps."}
    )
    save_total_limit: int | None = field(
        default=None, metadata={"help": "Keep only this many newest checkpoint-N folders (None: all)."}
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "Continue from the newest checkpoint-N in output_dir when there is one (weights, "
            "optimizer, schedule, data position), so a long CPU run survives an interruption."
        },
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Checks that need more than the type, so a bad file fails here rather than inside TRL."""
        at_least_one = (
            "lora_r",
            "lora_alpha",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "max_length",
            "logging_steps",
            "save_steps",
        )
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise SFTConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise SFTConfigError(f"save_total_limit must be at least 1, got {self.save_total_limit}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise SFTConfigError(
                f"max_steps must be -1 (use num_train_epochs) or at least 1, got {self.max_steps}"
            )
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise SFTConfigError(
                f"num_train_epochs must be > 0 when max_steps is -1, got {self.num_train_epochs}"
            )
        if self.learning_rate <= 0:
            raise SFTConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.lora_dropout < 1:
            raise SFTConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora and not self.lora_target_modules:
            raise SFTConfigError("lora_target_modules is empty: LoRA would train nothing")
        if not 0 <= self.warmup_ratio < 1:
            raise SFTConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise SFTConfigError(f"max_pixels must be at least 1, got {self.max_pixels}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> SFTRunConfig:
        return config_from_dict(cls, data, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SFTRunConfig:
        """Relative paths in the file are kept as written: they resolve against the working directory."""
        return load_config(cls, path)
