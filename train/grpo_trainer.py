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
methods' signatures.

R_tool needs each tool's confidence gain: the policy's own probability of the correct verdict before and
after the tool's observation. `VerdictProbe` measures it once a rollout is finished, on the rollout's own
tokens and images: at the end of the prompt and right after every ``</tool_response>`` it forces the
protocol's answer (an empty think block, then ``<answer>{"anomaly": "``) and reads P("yes") from the next
token's distribution, as the hf backend reads a verdict (`station.backends.hf.verdict`). The probe is label
free; `train.rewards.measured_tool_probes` turns P("yes") into P(correct) with the row's label. It never
touches the rollout: the forced tokens live only in a private KV cache that is cut back after each reading,
so the completion ids, the tool mask and the loss are those TRL produced.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
import transformers
from datasets import Dataset, Features, Image, List, Value
from transformers import DynamicCache
from trl import GRPOConfig, GRPOTrainer
from trl.models import unwrap_model_for_generation

from calibration.datasets import Sample, open_dataset
from station.backends.hf.loading import MODEL_CLASSES, check_adapter_dir, check_model_dir
from station.backends.hf.processor import QwenVLProcessor
from station.backends.hf.verdict import BranchTokens, expected_values, forced_verdict_prob
from station.protocol import SYSTEM_PROMPT, Answer, user_text
from station.protocol.turns import think_block
from tools.image import as_uint8, to_rgb
from tools.prior import PriorStore
from tools.registry import Observation, ToolContext, ToolRegistry
from tools.toolkit import default_registry
from train.cot.dataset import targets
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

log = logging.getLogger(__name__)

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
    if config.good_share is not None:
        samples = tilt(samples, config.good_share, config.seed)
    if config.limit is not None and config.limit < len(samples):
        samples = random.Random(config.seed).sample(samples, config.limit)
    if not samples:
        raise ValueError(f"dataset {config.dataset} has no samples for the selected categories")
    return samples


def tilt(samples: Sequence[Sample], good_share: float, seed: int) -> list[Sample]:
    """Thin the larger side (good or defective) so that good parts make up `good_share`; the order of the
    samples kept is unchanged, so a tilt of a sorted dataset stays sorted."""
    good = [s for s in samples if not s.label]
    defective = [s for s in samples if s.label]
    if not good or not defective:
        raise ValueError("good_share needs both good and defective samples in the dataset")
    n_good, n_defective = targets(len(good), len(defective), good_share)
    rng = random.Random(seed)
    kept = {id(s) for s in rng.sample(good, n_good) + rng.sample(defective, n_defective)}
    return [s for s in samples if id(s) in kept]


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


def forced_answer_prefix() -> str:
    """The protocol's answer turn up to its verdict value, after an empty think block.

    Derived from `Answer.text` so a protocol change moves the probe with it. The think block is empty because
    the probe asks what the policy would answer now, with the evidence it has, not after more reasoning; it
    is present because every turn the policy was taught has one.
    """
    text = Answer(True, content=think_block("")).text
    prefix = text[: text.index('"yes"') + 1]
    if expected_values(prefix) is None:
        raise RuntimeError(f"the answer prefix {prefix!r} no longer stops before the verdict value")
    return prefix


@dataclass
class ProbeCost:
    """What the probes of one batch cost: model forwards, the tokens they fed, and wall-clock seconds."""

    rollouts: int = 0
    forwards: int = 0
    tokens: int = 0
    seconds: float = 0.0


class VerdictProbe:
    """The policy's P("yes") with the answer forced at each turn boundary of a finished rollout.

    For a rollout with m tool observations it returns ``[q0, q1, ..., qm]``: q0 at the end of the prompt,
    qk right after the k-th ``</tool_response>`` (the tool message closed and the assistant turn reopened with
    the template's own tokens, taken from the rollout), each with `forced_answer_prefix` appended. Rollouts
    that ran no tool need no reading and get None.

    Cost: one forward per reading. The rollout is prefilled piecewise into a KV cache, each piece running up
    to the next reading point with the forced answer (about ten tokens) appended; the cache is then cut back
    to the point, so every rollout token is prefilled once and the forced tokens never stay. The rollouts
    of one group share the prompt's prefill (and q0): the cache is cut back to the prompt and reused. So a
    batch costs about one extra prefill of its tool-using rollouts (not a decode) plus ~10 tokens per tool
    call: m + 1 forwards for a rollout's m tool calls, one fewer when its group's prompt is already cached.
    Measured on the tiny model (2 CPU threads, `tests/train/test_grpo.py`'s scripted rollouts): a rollout
    with three tool calls costs 4 forwards over 1736 tokens (1288 of them the prompt), about 0.25 s warm;
    a plain forward on each prefix would feed 5974 tokens, 3.4 times as many. Rollouts without tools cost
    only the token walk (about a millisecond).

    TRL does not expose its generation cache (and re-prefills each tool round itself), so the probe keeps its
    own. M-RoPE positions are computed once over the whole rollout with the model's rope index and sliced per
    piece; the forced tokens are text and continue one position after the piece, as a from-scratch pass over
    piece + forced answer would place them (a test checks the two agree).
    """

    def __init__(self, processor: Any, answer_prefix: str | None = None):
        tokenizer = processor.tokenizer
        self._image_processor = processor.image_processor
        self._prefix = answer_prefix if answer_prefix is not None else forced_answer_prefix()
        self._answer_ids: list[int] = tokenizer(self._prefix, add_special_tokens=False)["input_ids"]
        self._branches = BranchTokens(tokenizer)
        self._merge = int(self._image_processor.merge_size) ** 2
        ids = tokenizer.convert_tokens_to_ids(["</tool_response>", "<|image_pad|>"])
        if None in ids or (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids):
            raise ValueError("the tokenizer lacks </tool_response> or <|image_pad|> as single tokens")
        self._close_id, self._image_id = ids
        self._prompt: tuple[list[int], list[Any], DynamicCache, float | None] | None = None

    def __call__(
        self,
        model: torch.nn.Module,
        prompt_ids: Sequence[list[int]],
        completion_ids: Sequence[list[int]],
        tool_mask: Sequence[list[int]],
        images: Sequence[list[Any] | None] | None,
        observations: Sequence[int] | None = None,
    ) -> tuple[list[list[float | None] | None], ProbeCost]:
        """P("yes") readings per rollout, and their cost. Runs under no_grad in eval mode (restored after).

        ``observations`` (tool messages per rollout, when known) guards the token walk: a rollout whose
        ``</tool_response>`` count differs is left unmeasured rather than misattributed.
        """
        cost = ProbeCost()
        started = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                readings = [
                    self._rollout(
                        model,
                        list(prompt_ids[i]),
                        list(completion_ids[i]),
                        list(tool_mask[i]),
                        list(images[i] or []) if images is not None else [],
                        None if observations is None else observations[i],
                        cost,
                    )
                    for i in range(len(prompt_ids))
                ]
        finally:
            model.train(was_training)
            self._prompt = None  # never carry a cache (or stale weights' keys) into the next batch
        cost.seconds = time.perf_counter() - started
        return readings, cost

    def points(self, completion_ids: list[int], tool_mask: list[int]) -> list[tuple[int, list[int]]]:
        """(offset in the completion right after each ``</tool_response>``, the tokens that reopen the
        assistant turn there): the tool tokens of a round run from the end of one tool response to the next
        assistant turn, and all responses of a round share that round's closing tokens."""
        found: list[tuple[int, list[int]]] = []
        k, n = 0, len(completion_ids)
        while k < n:
            if tool_mask[k]:
                k += 1
                continue
            start = k
            while k < n and not tool_mask[k]:
                k += 1
            closes = [j for j in range(start, k) if completion_ids[j] == self._close_id]
            if closes:
                tail = completion_ids[closes[-1] + 1 : k]
                found.extend((j + 1, tail) for j in closes)
        return found

    def _rollout(
        self,
        model: torch.nn.Module,
        prompt: list[int],
        completion: list[int],
        mask: list[int],
        images: list[Any],
        observations: int | None,
        cost: ProbeCost,
    ) -> list[float | None] | None:
        points = self.points(completion, mask)
        if not points:
            return None
        if observations is not None and observations != len(points):
            log.warning("probe: %d tool responses in the tokens, %d tool messages", len(points), observations)
            return None
        ids = prompt + completion[: points[-1][0]]
        runs = _runs(ids, self._image_id)
        if len(runs) != len(images):
            log.warning("probe: %d image placeholders for %d images; not measured", len(runs), len(images))
            return None
        pixels, grid = self._pixels(images)
        if [end - start for start, end in runs] != [int(g.prod()) // self._merge for g in grid]:
            log.warning("probe: image placeholders do not match the images' sizes; not measured")
            return None
        positions = self._positions(model, ids, grid)
        cost.rollouts += 1

        def forward(cache: DynamicCache, start: int, end: int, forced: list[int]) -> float | None:
            """Prefill ids[start:end] + forced, read P("yes") after it, keep only ids[:end] in the cache."""
            inside = [i for i, (a, _) in enumerate(runs) if start <= a < end]
            last = int(positions[1:, end - 1].max()) + 1  # the forced tokens are text after text
            steps = torch.arange(len(forced))
            extra = torch.cat([(end + steps)[None], (last + steps).expand(3, -1)])
            kwargs: dict[str, Any] = {}
            if inside:
                kwargs["pixel_values"] = torch.cat([pixels[i] for i in inside]).to(model.device)
                kwargs["image_grid_thw"] = grid[inside].to(model.device)
            out = model(
                input_ids=torch.tensor([ids[start:end] + forced], device=model.device),
                position_ids=torch.cat([positions[:, start:end], extra], dim=1)[:, None, :].to(model.device),
                attention_mask=torch.ones(1, end + len(forced), dtype=torch.long, device=model.device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                **kwargs,
            )
            _cut(cache, end)
            cost.forwards += 1
            cost.tokens += end - start + len(forced)
            return forced_verdict_prob(out.logits[0, -1], self._prefix, self._branches)

        n_prompt_images = sum(1 for a, _ in runs if a < len(prompt))
        shared = self._prompt
        if (
            shared is not None
            and shared[0] == prompt
            and len(shared[1]) == n_prompt_images
            and all(map(_same_image, shared[1], images[:n_prompt_images]))
        ):
            cache, q0 = shared[2], shared[3]
            _cut(cache, len(prompt))
        else:
            cache = DynamicCache(config=model.config)
            q0 = forward(cache, 0, len(prompt), self._answer_ids)
            self._prompt = (prompt, images[:n_prompt_images], cache, q0)
        readings = [q0]
        start = len(prompt)
        for offset, tail in points:
            end = len(prompt) + offset
            readings.append(forward(cache, start, end, tail + self._answer_ids))
            start = end
        return readings

    def _pixels(self, images: list[Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each image's patches (in order) and the grid rows, from the trainer's own image processor."""
        if not images:
            return [], torch.empty(0, 3, dtype=torch.long)
        batch = self._image_processor(images=images, return_tensors="pt")
        grid = batch["image_grid_thw"]
        return list(torch.split(batch["pixel_values"], grid.prod(-1).tolist())), grid

    def _positions(self, model: torch.nn.Module, ids: list[int], grid: torch.Tensor) -> torch.Tensor:
        """(4, L): absolute token index (the row the causal mask reads), then the three M-RoPE rows."""
        tokens = torch.tensor([ids], device=model.device)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper
        rope, _ = base.model.get_rope_index(
            input_ids=tokens,
            mm_token_type_ids=(tokens == self._image_id).int(),
            image_grid_thw=grid.to(model.device) if len(grid) else None,
        )
        return torch.cat([torch.arange(len(ids))[None], rope[:, 0, :].cpu()])


def _runs(ids: list[int], token: int) -> list[tuple[int, int]]:
    """[start, end) of every run of ``token``: one run per image, the placeholders of one image adjacent."""
    runs: list[tuple[int, int]] = []
    for i, t in enumerate(ids):
        if t != token:
            continue
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _cut(cache: DynamicCache, length: int) -> None:
    """Keep the first ``length`` tokens: transformers 5.23 crops by a negative count of tokens to remove."""
    remove = cache.get_seq_length() - length
    if remove > 0:
        cache.crop(-remove)


def _same_image(a: Any, b: Any) -> bool:
    if a is b:
        return True
    x, y = np.asarray(a), np.asarray(b)
    return x.shape == y.shape and np.array_equal(x, y)


class IndusGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer plus the confidence probe of every tool call (`VerdictProbe`).

    The probe runs in `_generate`, right after TRL's rollout and tool loop and before the reward: it needs
    the rollout's tokens, tool mask and images, which TRL hands reward functions only in part. Its readings
    reach the reward as the per-rollout field ``verdict_probs`` (TRL merges a `_generate` extra field into the
    rows the reward functions receive). With ``probe=None`` this is TRL's trainer unchanged.
    """

    def __init__(self, *args: Any, probe: VerdictProbe | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.verdict_probe = probe

    def _generate(self, prompts: list) -> tuple:
        result = super()._generate(prompts)
        if self.verdict_probe is None:
            return result
        prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images = (
            result
        )
        if tool_mask is None:
            return result
        observations = [
            sum(m.get("role") == "tool" for m in c) if isinstance(c, list) else 0 for c in completions
        ]
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as policy,
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            readings, cost = self.verdict_probe(
                policy, prompt_ids, completion_ids, tool_mask, images, observations
            )
        mode = "train" if self.model.training else "eval"
        count = max(len(prompt_ids), 1)
        self._metrics[mode]["tools/probe_s_per_rollout"].append(cost.seconds / count)
        self._metrics[mode]["tools/probe_forwards_per_rollout"].append(cost.forwards / count)
        self._metrics[mode]["tools/probe_tokens_per_rollout"].append(cost.tokens / count)
        extra_fields = {**extra_fields, "verdict_probs": readings}
        return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images


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
    """The trainer, ready to `train()`: policy (with the SFT adapter when given), dataset, tools, reward, and
    (``probe_tools``) the confidence probe of every tool call. An `IndusGRPOTrainer`, a GRPOTrainer."""
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
    trainer = IndusGRPOTrainer(
        model=model,
        reward_funcs=functools.partial(indus_grpo_reward, config=config.reward),
        args=grpo_args(config),
        train_dataset=dataset,
        processing_class=processor,
        environment_factory=functools.partial(InspectionEnvironment, registry, PriorStore.default()),
        probe=VerdictProbe(processor) if config.probe_tools else None,
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
