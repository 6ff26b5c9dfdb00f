"""GRPO with TRL on the tiny model: real tools on each rollout's own image, the protocol prompt, every
reward term logged, and a policy HFBackend loads.

A random model almost never writes a valid tool call, so the test scripts the policy's *sampling* (the
trainer's single-turn generation returns fixed token ids): everything else is TRL's and ours, unmodified:
parsing the calls, running them through the environment on the sample's frame, feeding the observation images
back, masking them from the loss, the reward, the logged metrics, the gradient step and the save. It proves
the plumbing, not that a model learns to call tools.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from calibration.datasets import open_dataset
from calibration.synth.dataset import write_dataset
from station.protocol import SYSTEM_PROMPT, render_chat, user_text
from tools.toolkit import default_registry
from train.grpo_config import ConfigError, GRPORunConfig
from train.grpo_trainer import InspectionEnvironment, build_trainer, save_policy

TOOL_TURN = (
    "<think>\nzoom in\n</think>\n\n<tool_call>\n"
    '{"name": "crop", "arguments": {"bbox": [0, 0, 500, 500]}}\n</tool_call>'
)
ANSWER_YES = (
    '<think>\nseen\n</think>\n\n<answer>{"anomaly": "yes", "type": "scratch", "bbox": [0, 0, 500, 500], '
    '"confidence": 0.9}</answer>'
)
ANSWER_NO = (
    '<think>\nfine\n</think>\n\n<answer>{"anomaly": "no", "type": null, "bbox": null, '
    '"confidence": 0.1}</answer>'
)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parts")
    write_dataset(root, n=8, seed=0, size=128)
    return root


def make_config(model_dir: Path, parts: Path, out: Path, **overrides) -> GRPORunConfig:
    settings = {
        "model_dir": str(model_dir),
        "dataset": f"synth:{parts}",
        "output_dir": str(out),
        "num_generations": 2,
        "per_device_train_batch_size": 4,
        "max_steps": 2,
        "max_completion_length": 512,
        "max_tool_calling_iterations": 2,
        "learning_rate": 1e-3,
        "limit": 4,
        "use_cpu": True,
        "reward": {"embedder": "lexical"},
        **overrides,
    }
    return GRPORunConfig.from_dict(settings)


def script_policy(trainer) -> list[str]:
    """Replace sampling: even rollouts crop then answer yes, odd ones answer no at once. Returns the decoded
    prompts of the first turns, to compare with the protocol."""
    tokenizer = trainer.processing_class.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    first_prompts: list[str] = []

    def generate(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        out = []
        for i, ids in enumerate(prompt_ids):
            text = tokenizer.decode(ids)
            if "<tool_response>" in text:
                turn = ANSWER_YES
            else:
                first_prompts.append(text)
                turn = TOOL_TURN if i % 2 == 0 else ANSWER_NO
            out.append([*tokenizer.encode(turn, add_special_tokens=False), end])
        return out, None

    trainer._generate_single_turn = generate
    return first_prompts


def test_grpo_runs_real_tools_logs_every_term_and_saves(tiny_model_dir: Path, parts: Path, tmp_path: Path):
    from station.backends.hf import HFBackend

    config = make_config(tiny_model_dir, parts, tmp_path / "policy")
    trainer = build_trainer(config)
    first_prompts = script_policy(trainer)
    tool_masks = []
    compute_loss = trainer._compute_loss

    def record_mask(model, inputs):
        tool_masks.append(inputs["tool_mask"].clone())
        return compute_loss(model, inputs)

    trainer._compute_loss = record_mask
    trainer.train()
    # the observation tokens (text and image) are masked out of the loss, the policy's own tokens are not
    assert tool_masks and all((mask == 0).any() and (mask == 1).any() for mask in tool_masks)

    # the prompt is the station's protocol: system prompt, the registry's tools block, image, request
    samples = list(open_dataset(config.dataset).samples())
    expected = {
        render_chat(
            [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": user_text(s.category)}],
                },
            ],
            tools=default_registry().schemas(),
            add_generation_prompt=True,
        )
        for s in samples
    }
    assert first_prompts
    for prompt in first_prompts:
        assert re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", prompt) in expected

    # the tools ran through the registry on each rollout's own full-resolution frame and returned images
    frames = [s.load_image() for s in samples]
    environments = trainer._environment_pool[None]
    crops = [o for env in environments for o in env.observations]
    assert crops and all(o.tool == "crop" and o.ok and o.images for o in crops)
    for env in environments:
        if env.observations:
            assert any(np.array_equal(env._context.frame, frame) for frame in frames)
            patch = env.observations[0].images[0]
            assert patch.ndim == 3 and patch.std() > 0  # a real view of the part, not a blank

    history = [h for h in trainer.state.log_history if "reward" in h]
    assert len(history) == config.max_steps
    for record in history:
        for key in ("reward/format", "reward/cls", "reward/loc", "reward/type", "reward/tool", "accuracy"):
            assert key in record, key
        assert record["tools/calls_per_rollout"] == pytest.approx(0.5)
        assert record["tools/call_frequency"] > 0 and record["tools/failure_frequency"] == 0
        assert record["reward/format"] == 0  # every scripted trajectory is well-formed
        assert record["reward/tool"] == pytest.approx(-0.1 * 0.5)  # beta per call, no probes
    assert any(record["grad_norm"] > 0 for record in history)

    out = save_policy(trainer, config)
    backend = HFBackend(out, device="cpu")
    assert backend.model_type == "qwen3_vl"


def test_environment_answers_bad_calls_like_the_station(parts: Path):
    env = InspectionEnvironment(default_registry())
    sample = next(iter(open_dataset(f"synth:{parts}").samples()))
    env.reset(image=sample.load_image(), product=sample.category, prompt=[])
    text = env.crop(bbox=[0, 0, 10])[0]["text"]  # unusable box: the tool falls back to a proposal
    assert '"tool": "crop"' in text
    error = env.measure(operation="teleport", items=[[1, 2]])
    assert len(error) == 1 and "invalid_arguments" in error[0]["text"]
    assert [o.ok for o in env.observations] == [True, False]


def test_config_from_yaml_reports_mistakes_by_key(tmp_path: Path):
    path = tmp_path / "grpo.yaml"
    path.write_text(
        "model_dir: m\ndataset: synth:parts\noutput_dir: o\nlearning_rate: 1e-6\nreward: {w_loc: 1}\n",
        encoding="utf-8",
    )
    config = GRPORunConfig.from_yaml(path)
    assert config.learning_rate == 1e-6 and config.reward.w_loc == 1.0
    for text, message in [
        ("model_dir: m\ndataset: synth:p\noutput_dir: o\nnum_gens: 4\n", "unknown key(s) num_gens"),
        ("model_dir: m\ndataset: synth:p\n", "missing required key(s): output_dir"),
        ("model_dir: m\ndataset: synth:p\noutput_dir: o\nmax_steps: ten\n", "max_steps must be an integer"),
        ("model_dir: m\ndataset: synth:p\noutput_dir: o\nreward: {w_tol: 1}\n", "reward.w_tol"),
        (
            "model_dir: m\ndataset: synth:p\noutput_dir: o\nnum_generations: 3\n",
            "multiple of num_generations",
        ),
        ("- a list\n", "mapping"),
    ]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=re.escape(message)):
            GRPORunConfig.from_yaml(path)
