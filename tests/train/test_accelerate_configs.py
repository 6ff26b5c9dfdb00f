"""The shipped accelerate configs and example run configs: accelerate loads them, every key maps to a launch
option, FSDP wraps classes Qwen3-VL has, and `accelerate launch` runs the SFT command in one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from calibration.datasets import open_dataset
from calibration.synth import write_dataset
from train.cot import build_trajectories
from train.grpo_config import GRPORunConfig
from train.sft_config import SFTRunConfig

pytest.importorskip("accelerate")
pytest.importorskip("trl")

from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE_DIR = ROOT / "train" / "accelerate"
RUN_CONFIGS = ROOT / "train" / "configs"
SHIPPED = ("single_gpu", "multi_gpu_ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp")
EXPECTED_TYPES = {
    "single_gpu": DistributedType.NO,
    "multi_gpu_ddp": DistributedType.MULTI_GPU,
    "deepspeed_zero2": DistributedType.DEEPSPEED,
    "deepspeed_zero3": DistributedType.DEEPSPEED,
    "fsdp": DistributedType.FSDP,
}


def test_exactly_the_documented_configs_ship():
    assert sorted(p.stem for p in ACCELERATE_DIR.glob("*.yaml")) == sorted(SHIPPED)
    readme = (ACCELERATE_DIR / "README.md").read_text(encoding="utf-8")
    for name in SHIPPED:
        assert f"{name}.yaml" in readme


@pytest.mark.parametrize("name", SHIPPED)
def test_accelerate_loads_the_config(name: str):
    config = load_config_from_file(str(ACCELERATE_DIR / f"{name}.yaml"))
    assert isinstance(config, ClusterConfig)  # a local machine, not SageMaker
    assert config.distributed_type == EXPECTED_TYPES[name]
    assert config.mixed_precision == "bf16"
    assert config.num_processes >= 1
    assert not config.use_cpu
    if config.distributed_type == DistributedType.NO:
        assert config.num_processes == 1
    else:
        assert config.num_processes > 1


@pytest.mark.parametrize("name", SHIPPED)
def test_every_nested_key_is_a_launch_option(name: str):
    """`accelerate launch` copies deepspeed_config / fsdp_config keys onto its own arguments by name; a key
    it has no option for is silently ignored, so a typo would quietly change the run."""
    options = vars(launch_command_parser().parse_args(["script.py"]))
    raw = yaml.safe_load((ACCELERATE_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    for section, prefix in (("deepspeed_config", ""), ("fsdp_config", "fsdp_")):
        for key in raw.get(section, {}):
            option = key if key.startswith(prefix) else prefix + key
            assert option in options, f"{name}.yaml: {section}.{key} is no `accelerate launch` option"


def test_deepspeed_stages():
    stages = {
        name: load_config_from_file(str(ACCELERATE_DIR / f"{name}.yaml")).deepspeed_config["zero_stage"]
        for name in ("deepspeed_zero2", "deepspeed_zero3")
    }
    assert stages == {"deepspeed_zero2": 2, "deepspeed_zero3": 3}


def test_fsdp_wraps_qwen3_vl_blocks():
    from transformers.models.qwen3_vl import modeling_qwen3_vl

    fsdp = load_config_from_file(str(ACCELERATE_DIR / "fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    names = fsdp["fsdp_transformer_layer_cls_to_wrap"].split(",")
    for class_name in names:
        assert isinstance(getattr(modeling_qwen3_vl, class_name, None), type), class_name
    # the text decoder layer and the vision block: the units the model itself never splits
    assert set(names) == set(modeling_qwen3_vl.Qwen3VLPreTrainedModel._no_split_modules)


def test_example_run_configs_validate():
    assert SFTRunConfig.from_yaml(RUN_CONFIGS / "sft_tiny.yaml").use_cpu
    lora = SFTRunConfig.from_yaml(RUN_CONFIGS / "sft_qwen3vl_8b_lora.yaml")
    assert lora.lora and lora.gradient_checkpointing and not lora.use_cpu
    grpo = GRPORunConfig.from_yaml(RUN_CONFIGS / "grpo_tiny.yaml")
    assert grpo.per_device_train_batch_size % grpo.num_generations == 0


def test_single_process_accelerate_launch_runs_sft(tiny_model_dir: Path, tmp_path: Path):
    write_dataset(tmp_path / "synth", n=2, seed=0, size=64)
    samples = list(open_dataset(f"synth:{tmp_path / 'synth'}").samples())
    build_trajectories(samples, tmp_path / "cot", seed=0, total=4)
    out = tmp_path / "sft-out"
    settings = {
        "model_dir": str(tiny_model_dir),
        "dataset_dir": str(tmp_path / "cot"),
        "output_dir": str(out),
        "max_steps": 2,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "gradient_checkpointing": False,
        "use_cpu": True,
        "logging_steps": 1,
        "save_steps": 2,
    }
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    command = [
        str(Path(sys.executable).parent / "accelerate"),  # the venv's console script: `accelerate launch`
        "launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--cpu",
        "-m",
        "station.cli.main",
        "train",
        "sft",
        "--config",
        str(config),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert f"sft: wrote {out}" in result.stdout
    assert (out / "model.safetensors").is_file()
    assert (out / "checkpoint-2").is_dir()
