"""SFT on a small Indus-CoT set: the loss mask, a falling loss, and checkpoints the hf backend loads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from calibration.datasets import open_dataset
from calibration.synth import write_dataset
from train.cot import build_trajectories, load_trajectories
from train.sft_config import SFTConfigError, SFTRunConfig

pytest.importorskip("trl")
pytest.importorskip("peft")

ASSISTANT_TURN = re.compile(r"<\|im_start\|>assistant\n(.*?<\|im_end\|>\n)", re.DOTALL)


@pytest.fixture(scope="module")
def cot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sft")
    write_dataset(root / "synth", n=4, seed=0, size=64, categories=["hole_plate", "brushed_metal"])
    samples = list(open_dataset(f"synth:{root / 'synth'}").samples())
    build_trajectories(samples, root / "cot", seed=0, total=6)
    return root / "cot"


def _config(tiny_model_dir: Path, cot_dir: Path, out: Path, **overrides) -> SFTRunConfig:
    settings = {
        "model_dir": str(tiny_model_dir),
        "dataset_dir": str(cot_dir),
        "output_dir": str(out),
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "learning_rate": 3e-3,
        "gradient_checkpointing": False,
        "use_cpu": True,
        "logging_steps": 1,
    }
    return SFTRunConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def full_run(tiny_model_dir: Path, cot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.sft_trainer import run_sft

    out = tmp_path_factory.mktemp("sft-full") / "model"
    return run_sft(_config(tiny_model_dir, cot_dir, out, max_steps=16, save_steps=8))


def test_the_mask_covers_exactly_the_assistant_turns(tiny_model_dir: Path, cot_dir: Path):
    from trl.chat_template_utils import get_training_chat_template

    from station.backends.hf.processor import QwenVLProcessor
    from train.sft_trainer import IGNORE_INDEX, IndusCoTCollator, build_dataset

    processor = QwenVLProcessor.from_pretrained(tiny_model_dir)
    dataset = build_dataset(cot_dir, processor, max_length=8192)
    collator = IndusCoTCollator(processor, get_training_chat_template(processor), cot_dir)
    texts = {t.id: t.text for t in load_trajectories(cot_dir)}
    rows = [dataset[i] for i in range(3)]
    batch = collator(rows)
    assert batch["pixel_values"].shape[0] > 0
    for row, ids, labels, attention in zip(
        rows, batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        trained = labels != IGNORE_INDEX
        assert (labels[trained] == ids[trained]).all()
        assert not trained[attention == 0].any()  # padding never trains
        # contiguous runs of trained tokens, decoded, are the assistant turns of the stored text, in order
        runs, current = [], []
        for token, keep in zip(ids.tolist(), trained.tolist(), strict=True):
            if keep:
                current.append(token)
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        decoded = [processor.tokenizer.decode(run, skip_special_tokens=False) for run in runs]
        expected = ASSISTANT_TURN.findall(texts[row["id"]])
        assert decoded == expected
        assert any("<tool_call>" in turn for turn in expected) or len(expected) == 1
        image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        assert not trained[ids == image_pad].any()  # neither the part's image nor tool images train


def test_the_dataset_renders_the_stations_tools_block(tiny_model_dir: Path, cot_dir: Path):
    from station.backends.hf.processor import QwenVLProcessor
    from train.sft_trainer import build_dataset

    processor = QwenVLProcessor.from_pretrained(tiny_model_dir)
    dataset = build_dataset(cot_dir, processor, max_length=8192)
    stored = list(load_trajectories(cot_dir))
    assert len(dataset) == len(stored)
    assert all(json.loads(row["tools"]) == t.tools for row, t in zip(dataset, stored, strict=True))
    assert all("# Tools" in t.text and '"name": "crop"' in t.text for t in stored)
    shortest = min(len(t.text) for t in stored)
    assert len(build_dataset(cot_dir, processor, max_length=shortest // 2 + 400)) < len(stored)
    with pytest.raises(SFTConfigError, match="no trajectory fits"):
        build_dataset(cot_dir, processor, max_length=10)


def test_full_fine_tuning_lowers_the_loss_and_loads_in_the_backend(full_run: Path, cot_dir: Path):
    from station.backends.base import Generation
    from station.backends.hf import HFBackend
    from station.protocol import opening_messages

    history = json.loads((full_run / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) >= 16
    assert np.mean(losses[-4:]) < losses[0] - 1.0, losses
    assert (full_run / "checkpoint-8" / "model.safetensors").is_file()

    trajectory = next(iter(load_trajectories(cot_dir)))
    image = trajectory.messages[1]["content"][0]["image"]
    backend = HFBackend(full_run, device="cpu")
    try:
        with backend.open_session(trajectory.tools) as session:
            generation = session.generate(opening_messages(image, trajectory.category), max_new_tokens=16)
    finally:
        backend.close()
    assert isinstance(generation, Generation)
    assert generation.generated_tokens > 0


def test_an_interrupted_run_resumes_from_its_last_checkpoint_to_the_same_weights(
    tiny_model_dir: Path, cot_dir: Path, tmp_path: Path
):
    import shutil

    from safetensors.torch import load_file

    from train.sft_trainer import run_sft

    out = tmp_path / "model"
    config = _config(tiny_model_dir, cot_dir, out, max_steps=4, save_steps=2, resume=True)
    run_sft(config)
    finished = load_file(out / "model.safetensors")
    # as if killed between step 2 and step 4: only checkpoint-2 is on disk
    shutil.rmtree(out / "checkpoint-4")
    (out / "model.safetensors").unlink()
    (out / "checkpoint-9").mkdir()  # killed mid-save: no trainer_state.json, never resumed from
    (out / "checkpoint-9" / "model.safetensors").write_bytes(b"partial")
    run_sft(config)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry][-2:] == [3, 4]
    resumed = load_file(out / "model.safetensors")
    assert all(np.allclose(finished[name], resumed[name], atol=1e-6) for name in finished)


def test_lora_saves_an_adapter_the_backend_merges(tiny_model_dir: Path, cot_dir: Path, tmp_path: Path):
    from station.backends.hf import HFBackend
    from train.sft_trainer import run_sft

    out = run_sft(_config(tiny_model_dir, cot_dir, tmp_path / "adapter", lora=True, lora_r=4, max_steps=2))
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    backend = HFBackend(tiny_model_dir, adapter_dir=out, device="cpu")
    try:
        assert backend.model_id.endswith(str(out))
    finally:
        backend.close()


def test_config_from_yaml_reports_mistakes_by_key(tmp_path: Path):
    good = tmp_path / "sft.yaml"
    good.write_text(
        "model_dir: m\ndataset_dir: d\noutput_dir: o\nlora: true\nlearning_rate: 1e-4\nmax_steps: 5\n"
    )
    config = SFTRunConfig.from_yaml(good)
    assert config.lora and config.learning_rate == 1e-4 and config.max_steps == 5
    cases = {
        "model_dir: m\ndataset_dir: d\n": "missing required key.*output_dir",
        "model_dir: m\ndataset_dir: d\noutput_dir: o\nlr: 1\n": "unknown key.*lr",
        "model_dir: m\ndataset_dir: d\noutput_dir: o\nlora: yes please\n": "lora must be true or false",
        "model_dir: m\ndataset_dir: d\noutput_dir: o\nlora_r: 0\n": "lora_r must be at least 1",
        "model_dir: m\ndataset_dir: d\noutput_dir: o\nmax_steps: 0\n": "max_steps must be -1",
        "model_dir: m\ndataset_dir: d\noutput_dir: o\nsave_total_limit: 0\n": "save_total_limit must be",
        "- a\n- b\n": "expected a mapping",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(SFTConfigError, match=message):
            SFTRunConfig.from_yaml(bad)
    with pytest.raises(SFTConfigError, match="cannot read"):
        SFTRunConfig.from_yaml(tmp_path / "missing.yaml")
