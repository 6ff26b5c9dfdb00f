"""GRPO with TRL on the tiny model: real tools on each rollout's own image, the protocol prompt, every
reward term logged, and a policy HFBackend loads.

A random model almost never writes a valid tool call, so the test scripts the policy's *sampling* (the
trainer's single-turn generation returns fixed token ids): everything else is TRL's and ours, unmodified:
parsing the calls, running them through the environment on the sample's frame, feeding the observation images
back, masking them from the loss, the confidence probe of every tool call (real forwards of the tiny policy),
the reward, the logged metrics, the gradient step and the save. It proves the plumbing, not that a model
learns to call tools.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.datasets import open_dataset
from calibration.synth.dataset import write_dataset
from station.backends.hf.verdict import BranchTokens, forced_verdict_prob
from station.protocol import SYSTEM_PROMPT, Answer, render_chat, user_text
from station.protocol.turns import think_block
from tools.toolkit import default_registry
from train.grpo_config import ConfigError, GRPORunConfig
from train.grpo_trainer import (
    InspectionEnvironment,
    VerdictProbe,
    build_trainer,
    forced_answer_prefix,
    load_samples,
    save_policy,
    tilt,
)

# Even rollouts: two tools in one round, one more in a second round, then an answer.
TOOL_TURN_TWO = (
    "<think>\nzoom in and enhance\n</think>\n\n<tool_call>\n"
    '{"name": "crop", "arguments": {"bbox": [0, 0, 500, 500]}}\n</tool_call>\n<tool_call>\n'
    '{"name": "enhance", "arguments": {"mode": "clahe"}}\n</tool_call>'
)
TOOL_TURN = (
    "<think>\nzoom in\n</think>\n\n<tool_call>\n"
    '{"name": "crop", "arguments": {"bbox": [500, 500, 1000, 1000]}}\n</tool_call>'
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
    """Replace sampling: even rollouts crop and enhance, then crop again, then answer yes; odd ones answer no
    at once. Returns the decoded prompts of the first turns, to compare with the protocol."""
    tokenizer = trainer.processing_class.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    first_prompts: list[str] = []

    def generate(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        out = []
        for i, ids in enumerate(prompt_ids):
            text = tokenizer.decode(ids)
            responses = text.count("<tool_response>")
            if responses == 0:
                first_prompts.append(text)
                turn = TOOL_TURN_TWO if i % 2 == 0 else ANSWER_NO
            else:
                turn = TOOL_TURN if responses == 2 else ANSWER_YES
            out.append([*tokenizer.encode(turn, add_special_tokens=False), end])
        return out, None

    trainer._generate_single_turn = generate
    return first_prompts


def plain_verdict_prob(model, processor, ids: list[int], images: list) -> float | None:
    """P("yes") after ``ids`` (which end with the forced answer) from one from-scratch forward without a
    cache, the model computing its own M-RoPE positions: the reference the cached probe must equal."""
    tokens = torch.tensor([ids])
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    inputs = {"input_ids": tokens, "mm_token_type_ids": (tokens == image_id).int()}
    if images:
        batch = processor.image_processor(images=images, return_tensors="pt")
        inputs.update(pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"])
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    prefix = forced_answer_prefix()
    return forced_verdict_prob(logits, prefix, BranchTokens(processor.tokenizer))


def check_probe(trainer) -> list[dict]:
    """Wrap the trainer's probe: every reading must equal a plain forward with the same weights, the probe
    must run without gradients and leave the rollout (ids, tool mask, images) and the model's mode as they
    were. Returns what each batch measured."""
    probe: VerdictProbe = trainer.verdict_probe
    processor = trainer.processing_class
    answer_ids = processor.tokenizer(forced_answer_prefix(), add_special_tokens=False)["input_ids"]
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    batches: list[dict] = []

    def recording(model, prompt_ids, completion_ids, tool_mask, images, observations):
        before = copy.deepcopy((prompt_ids, completion_ids, tool_mask, [len(i or []) for i in images]))
        training = model.training
        grad_enabled: list[bool] = []
        hook = model.register_forward_pre_hook(lambda *_: grad_enabled.append(torch.is_grad_enabled()))
        try:
            readings, cost = probe(model, prompt_ids, completion_ids, tool_mask, images, observations)
        finally:
            hook.remove()
        assert (prompt_ids, completion_ids, tool_mask, [len(i or []) for i in images]) == before
        assert model.training == training
        assert grad_enabled and not any(grad_enabled)
        assert cost.forwards == len(grad_enabled)
        model.eval()
        for prompt, completion, mask, imgs, got in zip(
            prompt_ids, completion_ids, tool_mask, images, readings, strict=True
        ):
            points = probe.points(completion, mask)
            if not points:
                assert got is None
                continue
            cuts = [(len(prompt), [])] + [(len(prompt) + offset, tail) for offset, tail in points]
            assert len(got) == len(cuts)
            for (cut, tail), reading in zip(cuts, got, strict=True):
                ids = (prompt + completion)[:cut]
                runs = sum(1 for j, t in enumerate(ids) if t == image_id and (j == 0 or ids[j - 1] != t))
                expected = plain_verdict_prob(model, processor, ids + tail + answer_ids, imgs[:runs])
                assert reading == pytest.approx(expected, abs=1e-5)
        model.train(training)
        batches.append({"readings": readings, "cost": cost, "observations": list(observations)})
        return readings, cost

    trainer.verdict_probe = recording
    return batches


def test_grpo_runs_real_tools_logs_every_term_and_saves(tiny_model_dir: Path, parts: Path, tmp_path: Path):
    from station.backends.hf import HFBackend

    config = make_config(tiny_model_dir, parts, tmp_path / "policy")
    trainer = build_trainer(config)
    first_prompts = script_policy(trainer)
    probed = check_probe(trainer)
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
    views = [o for env in environments for o in env.observations]
    assert views and all(o.tool in ("crop", "enhance") and o.ok and o.images for o in views)
    for env in environments:
        if env.observations:
            assert [o.tool for o in env.observations] == ["crop", "enhance", "crop"]
            assert any(np.array_equal(env._context.frame, frame) for frame in frames)
            patch = env.observations[0].images[0]
            assert patch.ndim == 3 and patch.std() > 0  # a real view of the part, not a blank

    # every tool call was probed: P("yes") at the prompt's end and after each of the three observations
    assert len(probed) == config.max_steps
    for batch in probed:
        assert batch["observations"] == [3, 0, 3, 0]
        assert [len(r) if r else 0 for r in batch["readings"]] == [4, 0, 4, 0]
        assert all(0 <= q <= 1 for r in batch["readings"] if r for q in r)
        assert batch["cost"].forwards == 8

    history = [h for h in trainer.state.log_history if "reward" in h]
    assert len(history) == config.max_steps
    for record in history:
        for key in ("reward/format", "reward/cls", "reward/loc", "reward/type", "reward/tool", "accuracy"):
            assert key in record, key
        assert record["tools/calls_per_rollout"] == pytest.approx(1.5)
        assert record["tools/call_frequency"] > 0 and record["tools/failure_frequency"] == 0
        assert record["reward/format"] == 0  # every scripted trajectory is well-formed
        # two rollouts of four made three calls each: R_tool = (0.3 * positive - 0.1 * 6) / 4
        share = record["tools/positive_gain_share"]
        assert share * 6 == pytest.approx(round(share * 6))
        assert record["reward/tool"] == pytest.approx((0.3 * share * 6 - 0.6) / 4)
        assert -1 <= record["tools/confidence_gain"] <= 1
        assert record["tools/probe_forwards_per_rollout"] == pytest.approx(2.0)  # (1 + 3) x 2 / 4
        assert record["tools/probe_tokens_per_rollout"] > 0 and record["tools/probe_s_per_rollout"] > 0
    assert any(record["grad_norm"] > 0 for record in history)

    out = save_policy(trainer, config)
    backend = HFBackend(out, device="cpu")
    assert backend.model_type == "qwen3_vl"


def test_the_probe_forces_the_protocols_answer_after_an_empty_think_block():
    prefix = forced_answer_prefix()
    assert prefix == '<think>\n\n</think>\n<answer>{"anomaly": "'
    assert Answer(False, content=think_block("")).text.startswith(prefix + "no")


def test_probe_points_follow_every_tool_response(tiny_model_dir: Path):
    from station.backends.hf.processor import QwenVLProcessor

    processor = QwenVLProcessor.from_pretrained(tiny_model_dir)
    probe = VerdictProbe(processor)
    encode = processor.tokenizer.encode
    turn = encode("<think>\nx\n</think>\n<tool_call>{}</tool_call><|im_end|>", add_special_tokens=False)
    reopen = encode("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    one = encode("\n<|im_start|>user\n<tool_response>\nA\n</tool_response>", add_special_tokens=False)
    two = encode("\n<tool_response>\nB\n</tool_response>", add_special_tokens=False)
    answer = encode('<answer>{"anomaly": "no"}</answer><|im_end|>', add_special_tokens=False)
    completion = turn + one + two + reopen + turn + one + reopen + answer
    mask = [1] * len(turn) + [0] * len(one + two + reopen) + [1] * len(turn) + [0] * len(one + reopen)
    mask += [1] * len(answer)
    first = len(turn) + len(one)
    second = first + len(two) + len(reopen) + len(turn) + len(one)
    # two responses in one round share the round's reopening tokens; a round with none has no point
    assert probe.points(completion, mask) == [(first, reopen), (first + len(two), reopen), (second, reopen)]
    assert probe.points(turn + answer, [1] * len(turn + answer)) == []


def test_without_the_probe_every_call_only_pays_beta(tiny_model_dir: Path, parts: Path, tmp_path: Path):
    config = make_config(tiny_model_dir, parts, tmp_path / "policy", probe_tools=False, max_steps=1)
    trainer = build_trainer(config)
    assert trainer.verdict_probe is None
    script_policy(trainer)
    trainer.train()
    (record,) = [h for h in trainer.state.log_history if "reward" in h]
    assert record["reward/tool"] == pytest.approx(-0.1 * 1.5)  # beta per call, 1.5 calls per rollout
    assert "tools/confidence_gain" not in record and "tools/probe_s_per_rollout" not in record


def test_environment_answers_bad_calls_like_the_station(parts: Path):
    env = InspectionEnvironment(default_registry())
    sample = next(iter(open_dataset(f"synth:{parts}").samples()))
    env.reset(image=sample.load_image(), product=sample.category, prompt=[])
    text = env.crop(bbox=[0, 0, 10])[0]["text"]  # unusable box: the tool falls back to a proposal
    assert '"tool": "crop"' in text
    error = env.measure(operation="teleport", items=[[1, 2]])
    assert len(error) == 1 and "invalid_arguments" in error[0]["text"]
    assert [o.ok for o in env.observations] == [True, False]


@pytest.mark.parametrize(("share", "good", "defective"), [(0.25, 8, 24), (0.75, 24, 8), (0.5, 24, 24)])
def test_good_share_thins_the_larger_side(parts: Path, tmp_path: Path, share, good, defective):
    """The parts hold 24 good and 24 defective test images (6 categories x 4 + 4)."""
    config = make_config(Path("m"), parts, tmp_path, limit=None, good_share=share)
    samples = load_samples(config)
    assert (sum(not s.label for s in samples), sum(bool(s.label) for s in samples)) == (good, defective)
    assert load_samples(config) == samples  # the draw follows the seed
    everything = list(open_dataset(f"synth:{parts}").samples())
    assert [s for s in everything if s in samples] == samples  # the dataset's order is kept
    with pytest.raises(ValueError, match="both good and defective"):
        tilt([s for s in everything if not s.label], share, seed=0)
    with pytest.raises(ConfigError, match="good_share must lie in"):
        make_config(Path("m"), parts, tmp_path, good_share=1.0)


def test_config_from_yaml_reports_mistakes_by_key(tmp_path: Path):
    path = tmp_path / "grpo.yaml"
    path.write_text(
        "model_dir: m\ndataset: synth:parts\noutput_dir: o\nlearning_rate: 1e-6\nreward: {w_loc: 1}\n",
        encoding="utf-8",
    )
    config = GRPORunConfig.from_yaml(path)
    assert config.learning_rate == 1e-6 and config.reward.w_loc == 1.0
    assert config.probe_tools and (config.reward.alpha, config.reward.beta) == (0.3, 0.1)  # the paper's
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
