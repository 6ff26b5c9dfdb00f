"""The hf backend on the tiny random Qwen3-VL: each token prefilled once, exactly as a from-scratch pass.

A random model never writes protocol turns by itself, so `Script` forces the token sequence of a real protocol
turn through the backend's ``generate_kwargs`` logits processors. Generation, caching, stopping and verdict
reading all run for real; only the choice of token is dictated. `Script` also records the scores the model
produced at each step (after the backend's own processors, which only suppress vision tokens).
"""

from __future__ import annotations

import json
import shutil
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


from export.parity import ForcedTurn  # noqa: E402
from station.backends.base import BackendError, Generation  # noqa: E402
from station.backends.hf import HFBackend  # noqa: E402
from station.backends.hf.backend import VISION_TOKENS  # noqa: E402
from station.backends.hf.processor import QwenVLProcessor  # noqa: E402
from station.backends.hf.session import message_images  # noqa: E402
from station.backends.hf.verdict import BranchTokens, expected_values  # noqa: E402
from station.protocol import (  # noqa: E402
    Answer,
    ToolCall,
    ToolCalls,
    assistant_message,
    opening_messages,
    parse_turn,
    render_chat,
    tool_message,
)
from station.protocol.turns import think_block  # noqa: E402
from tools.prior import PriorStore  # noqa: E402
from tools.registry import ToolContext  # noqa: E402
from tools.toolkit import default_registry  # noqa: E402

REGISTRY = default_registry()
TOOLS = REGISTRY.schemas()
PRODUCT = "hole_plate"
CROP = ToolCalls(
    calls=(ToolCall("crop", {"bbox": [450, 350, 700, 600]}),),
    content=think_block("A dark spot right of centre."),
)
EVIDENCE = ToolCalls(  # two calls: the enhanced view (an image) and the normalcy prior (text only)
    calls=(ToolCall("enhance", {"mode": "edges", "bbox": [450, 350, 700, 600]}), ToolCall("prior", {})),
    content=think_block("Is it a hole or a stain?"),
)
ANSWER = Answer(
    anomaly=True, type="stain", bbox=(480, 380, 660, 560), confidence=0.9, content=think_block("A stain.")
)


# The forcing processor export parity uses too: forces a turn's tokens and records the scores it was given.
Script = ForcedTurn


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model gains nothing from a second torch thread and loses a lot when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def script() -> Script:
    return Script()


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path, script: Script) -> HFBackend:
    return HFBackend(tiny_model_dir, generate_kwargs={"logits_processor": [script]})


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(150, 6, (240, 320, 3)), 0, 255).astype(np.uint8)
    image[110:140, 170:200] = 40  # a dark stain
    return image


def turn_tokens(backend: HFBackend, text: str) -> list[int]:
    return [*backend.tokenizer.encode(text, add_special_tokens=False), backend.stop_ids[0]]


def encode(backend: HFBackend, messages: list[dict], generation_prompt: bool):
    """The standard processor path: the whole conversation tokenised, every image processed, from scratch."""
    text = render_chat(messages, TOOLS, add_generation_prompt=generation_prompt)
    images = message_images(messages) or None
    return backend.processor(images=images, text=text, return_tensors="pt")


def scratch_logits(model, inputs) -> torch.Tensor:
    """One forward over the whole conversation; transformers computes the M-RoPE positions itself."""
    with torch.no_grad():
        return model(**inputs).logits[0].float()


def scratch_continuation(backend: HFBackend, messages: list[dict], tokens: list[int]) -> torch.Tensor:
    """From-scratch logits at the steps that chose ``tokens`` after the prompt of ``messages``."""
    inputs = encode(backend, messages, True)
    n = inputs["input_ids"].shape[1]
    ids = torch.cat([inputs["input_ids"], torch.tensor([tokens])], dim=1)
    inputs.update(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        mm_token_type_ids=torch.cat(
            [inputs["mm_token_type_ids"], torch.zeros(1, len(tokens), dtype=torch.long)], 1
        ),
    )
    return scratch_logits(backend.model, inputs)[n - 1 : n - 1 + len(tokens)]


def prompt_len(backend: HFBackend, messages: list[dict]) -> int:
    return encode(backend, messages, True)["input_ids"].shape[1]


@cache
def priors() -> PriorStore:
    return PriorStore.default(embedder="lexical")


def observe(call: ToolCall, frame: np.ndarray) -> dict:
    context = ToolContext(frame=frame, product=PRODUCT, priors=priors())
    return tool_message(REGISTRY.call(call.name, call.arguments, context))


def run_inspection(backend: HFBackend, script: Script, frame: np.ndarray):
    """Crop, enhance + prior, answer: three rounds as the agent loop runs them, turns forced."""
    messages = opening_messages(frame, PRODUCT)
    rounds = []
    with backend.open_session(TOOLS) as session:
        for turn in (CROP, EVIDENCE, ANSWER):
            prompt = list(messages)
            script.play(turn_tokens(backend, turn.text))
            generation = session.generate(messages, max_new_tokens=200)
            rounds.append((prompt, generation, torch.stack(script.scores)))
            parsed = parse_turn(generation.text)
            messages.append(assistant_message(parsed))
            if isinstance(parsed, ToolCalls):
                messages.extend(observe(call, frame) for call in parsed.calls)
    return messages, rounds


@pytest.fixture(scope="module")
def inspection(backend: HFBackend, script: Script, frame: np.ndarray):
    return run_inspection(backend, script, frame)


def assert_scores_match(scores: torch.Tensor, reference: torch.Tensor) -> None:
    """Equal wherever the model scored a token (the backend suppresses the vision tokens: -inf there)."""
    finite = torch.isfinite(scores)
    assert finite.sum() > 0.99 * scores.numel() - 4 * scores.shape[0]
    assert torch.allclose(scores[finite], reference[finite], atol=1e-4, rtol=0)


def test_forced_turns_come_back_verbatim_and_stop_at_im_end(backend, inspection):
    _, rounds = inspection
    for (_, generation, _), turn in zip(rounds, (CROP, EVIDENCE, ANSWER), strict=True):
        assert generation.text == turn.text
        assert generation.finish_reason == "stop"
        assert generation.generated_tokens == len(turn_tokens(backend, turn.text))
        assert generation.prefill_s > 0 and generation.decode_s > 0
    assert [len(message_images(prompt)) for prompt, _, _ in rounds] == [
        1,
        2,
        3,
    ]  # crop and enhance add one each


def test_each_token_is_prefilled_at_most_once(backend, inspection):
    """The done-criterion: prefill over all rounds <= 1.05 x the final conversation (images expanded)."""
    messages, rounds = inspection
    final_len = encode(backend, messages, False)["input_ids"].shape[1]
    assert sum(g.prefill_tokens for _, g, _ in rounds) <= 1.05 * final_len
    in_cache = 0
    for prompt, generation, _ in rounds:
        # exactly the tokens not in the cache: the previous turn's <|im_end|>, the tool results, the prompt
        assert generation.prefill_tokens == prompt_len(backend, prompt) - in_cache
        in_cache = prompt_len(backend, prompt) + generation.generated_tokens - 1


def test_cached_rounds_equal_a_from_scratch_pass(backend, inspection):
    """Rounds 2 and 3 add an image each; their logits must be one pass's over the whole conversation."""
    messages, rounds = inspection
    logits = scratch_logits(backend.model, encode(backend, messages, False))
    for prompt, generation, scores in rounds:
        start = prompt_len(backend, prompt) - 1
        assert_scores_match(scores, logits[start : start + generation.generated_tokens])


def test_greedy_continuation_after_a_new_image_equals_generate_from_scratch(backend, script, frame):
    messages = opening_messages(frame, PRODUCT)
    with backend.open_session(TOOLS) as session:
        script.play(turn_tokens(backend, CROP.text))
        session.generate(messages, max_new_tokens=200)
        messages.append(assistant_message(CROP))
        messages.append(observe(CROP.calls[0], frame))
        script.play(None)
        generation = session.generate(messages, max_new_tokens=12)
    greedy = [int(s.argmax()) for s in script.scores]
    inputs = encode(backend, messages, True)
    with torch.no_grad():
        out = backend.model.generate(
            **inputs,
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=backend.stop_ids,
            pad_token_id=backend.stop_ids[1],
            suppress_tokens=[backend.tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS],
        )
    reference = out[0, inputs["input_ids"].shape[1] :].tolist()
    assert greedy == reference
    assert generation.generated_tokens == len(reference)
    text = backend.tokenizer.decode(reference, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert text.removesuffix("<|im_end|>") == generation.text


def test_verdict_prob_is_the_yes_share_at_the_verdict_token(backend, inspection):
    messages, rounds = inspection
    prompt, generation, _ = rounds[2]
    tokenizer = backend.tokenizer
    ids = turn_tokens(backend, ANSWER.text)[:-1]
    value_at = ANSWER.text.index('"anomaly": "') + len('"anomaly": "')
    step = next(k for k in range(len(ids)) if len(tokenizer.decode(ids[: k + 1])) > value_at)
    lead = ANSWER.text[len(tokenizer.decode(ids[:step])) : value_at]
    vocab = [tokenizer.decode([i]) for i in range(len(tokenizer))]

    def branch(text: str, other: str) -> list[int]:
        return [i for i, s in enumerate(vocab) if s and text.startswith(s) and not other.startswith(s)]

    yes_text, no_text = f'{lead}yes", "type"', f'{lead}no", "type"'
    yes, no = branch(yes_text, no_text), branch(no_text, yes_text)
    assert ids[step] in yes and yes and no
    logits = scratch_logits(backend.model, encode(backend, messages, False))
    probs = logits[prompt_len(backend, prompt) - 1 + step].softmax(-1)
    expected = float(probs[yes].sum() / (probs[yes].sum() + probs[no].sum()))
    assert generation.verdict_prob == pytest.approx(expected, abs=1e-6)
    assert rounds[0][1].verdict_prob is None  # a tool-call turn has no verdict


def test_expected_values_follow_the_text_before_the_verdict():
    then = '", "type"'
    assert expected_values('<answer>{"anomaly":') == (f' "yes{then}', f' "no{then}')
    assert expected_values('<answer>{"anomaly": ') == (f'"yes{then}', f'"no{then}')
    assert expected_values('<think>\nx\n</think>\n<answer>{"anomaly": "') == (f"yes{then}", f"no{then}")
    assert expected_values('{"anomaly": "') is None  # not inside an answer
    assert expected_values('<answer>{"anomaly": "yes') is None


def test_branch_tokens_count_tokens_that_merge_the_quote_with_the_word():
    class Vocab:
        def get_vocab(self) -> dict[str, int]:
            # byte-level spelling: Ġ is the space
            return {'Ġ"': 0, 'Ġ"yes': 1, 'Ġ"y': 2, 'Ġ"no': 3, "yes": 4, "no": 5, '"': 6, "Ġ": 7, 'yes",': 8}

    branches = BranchTokens(Vocab())
    assert branches(' "yes", "type"', ' "no", "type"') == ([2, 1], [3])  # Ġ and Ġ" decide nothing
    assert branches('yes", "type"', 'no", "type"') == ([4, 8], [5])


def test_max_new_tokens_gives_length(backend, script, frame):
    script.play(backend.tokenizer.encode(" scratch", add_special_tokens=False))
    with backend.open_session(TOOLS) as session:
        generation = session.generate(opening_messages(frame, PRODUCT), max_new_tokens=5)
    assert (generation.finish_reason, generation.generated_tokens) == ("length", 5)


def test_deadline_stops_decoding(backend, script, frame):
    script.play(backend.tokenizer.encode(" scratch", add_special_tokens=False))  # never ends by itself
    with backend.open_session(TOOLS) as session:
        start = time.monotonic()
        generation = session.generate(
            opening_messages(frame, PRODUCT), max_new_tokens=20_000, deadline=start + 0.3
        )
        elapsed = time.monotonic() - start
    assert generation.finish_reason == "deadline"
    assert 0 < generation.generated_tokens < 20_000
    assert elapsed < 1.3  # the deadline plus generous slack for a busy machine


def test_a_passed_deadline_returns_at_once(backend, frame):
    with backend.open_session(TOOLS) as session:
        generation = session.generate(opening_messages(frame, PRODUCT), max_new_tokens=5, deadline=0.0)
    assert generation == Generation(text="", finish_reason="deadline")


def test_a_rewritten_history_is_prefilled_again_not_trusted(backend, script, frame):
    """The cache is kept only for the part of the conversation that is still the same text and images."""
    messages = opening_messages(frame, PRODUCT)
    with backend.open_session(TOOLS) as session:
        script.play(turn_tokens(backend, CROP.text))
        first = session.generate(messages, max_new_tokens=200)
        other = ToolCalls(calls=(ToolCall("crop", {"bbox": [0, 0, 500, 500]}),))  # not what the model wrote
        messages += [assistant_message(other), observe(other.calls[0], frame)]
        script.play(None)
        second = session.generate(messages, max_new_tokens=4)
        # the opening prompt is kept; the rewritten assistant turn and what follows are prefilled
        expected = prompt_len(backend, messages) - prompt_len(backend, messages[:2])
        scores = torch.stack(script.scores)
        darker = opening_messages(frame // 2, PRODUCT)  # same text, another image: nothing can be reused
        third = session.generate(darker, max_new_tokens=4)
    greedy = [int(s.argmax()) for s in scores]
    assert_scores_match(scores, scratch_continuation(backend, messages, greedy))
    assert second.prefill_tokens == expected < first.prefill_tokens
    assert third.prefill_tokens == prompt_len(backend, darker)


def test_sampling_with_temperature_runs(tiny_model_dir, frame):
    sampler = HFBackend(tiny_model_dir, temperature=0.8)
    torch.manual_seed(0)
    with sampler.open_session(TOOLS) as session:
        generation = session.generate(opening_messages(frame, PRODUCT), max_new_tokens=4)
    assert generation.generated_tokens > 0


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft's
def test_lora_adapter_changes_the_model_like_peft_does(tiny_model_dir, backend, script, frame, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import Qwen3VLForConditionalGeneration

    torch.manual_seed(0)
    base = Qwen3VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    lora = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = peft.get_peft_model(base, lora).eval()
    peft_model.save_pretrained(tmp_path / "adapter")

    recorder = Script()
    adapted = HFBackend(
        tiny_model_dir, adapter_dir=tmp_path / "adapter", generate_kwargs={"logits_processor": [recorder]}
    )
    messages = opening_messages(frame, PRODUCT)
    with adapted.open_session(TOOLS) as session:
        generation = session.generate(messages, max_new_tokens=6)
    with backend.open_session(TOOLS) as session:
        script.play(None)
        session.generate(messages, max_new_tokens=6)

    inputs = encode(backend, messages, True)
    reference = scratch_logits(peft_model, inputs)[-1]
    assert_scores_match(recorder.scores[0][None], reference[None])
    assert not torch.allclose(script.scores[0], recorder.scores[0], atol=1e-3)  # the adapter matters
    with torch.no_grad():
        out = peft_model.generate(
            **inputs,
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=adapted.stop_ids,
            pad_token_id=adapted.stop_ids[1],
            suppress_tokens=[adapted.tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS],
        )
    assert generation.generated_tokens == out.shape[1] - inputs["input_ids"].shape[1]
    assert [int(s.argmax()) for s in recorder.scores] == out[0, inputs["input_ids"].shape[1] :].tolist()
    assert adapted.model_id.endswith("adapter")


TOKEN_IDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def build_variant(tiny_dir: Path, out: Path, model_type: str) -> Path:
    """A tiny random Qwen2.5-VL (patch 14, window attention) or Qwen3-VL MoE with the tiny tokenizer."""
    import transformers

    out.mkdir(parents=True)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "preprocessor_config.json",
    ):
        shutil.copy(tiny_dir / name, out / name)
    tiny = json.loads((tiny_dir / "config.json").read_text())
    text = {k: v for k, v in tiny["text_config"].items() if k != "model_type"}
    vision = {k: v for k, v in tiny["vision_config"].items() if k != "model_type"}
    if model_type == "qwen2_5_vl":
        config_class, model_class = (
            transformers.Qwen2_5_VLConfig,
            transformers.Qwen2_5_VLForConditionalGeneration,
        )
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
        }
        vision["fullatt_block_indexes"] = [1]
        preprocessor = {
            "image_processor_type": "Qwen2VLImageProcessor",
            "min_pixels": 784,
            "max_pixels": 112 * 112,
        }
        (out / "preprocessor_config.json").write_text(json.dumps(preprocessor))  # old style, CLIP mean/std
    else:
        config_class, model_class = (
            transformers.Qwen3VLMoeConfig,
            transformers.Qwen3VLMoeForConditionalGeneration,
        )
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
    config = config_class(text_config=text, vision_config=vision, **{key: tiny[key] for key in TOKEN_IDS})
    torch.manual_seed(0)
    model_class(config).save_pretrained(out)
    return out


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_vl_moe"])
def test_other_qwen_vl_models_load_and_continue_exactly(model_type, tiny_model_dir, frame, tmp_path):
    recorder = Script()
    model_dir = build_variant(tiny_model_dir, tmp_path / model_type, model_type)
    backend = HFBackend(model_dir, generate_kwargs={"logits_processor": [recorder]})
    assert backend.model_type == model_type
    assert backend.image_processor.patch_size == (14 if model_type == "qwen2_5_vl" else 16)
    messages = opening_messages(frame, PRODUCT)
    with backend.open_session(TOOLS) as session:
        recorder.play(turn_tokens(backend, CROP.text))
        session.generate(messages, max_new_tokens=200)
        messages += [assistant_message(CROP), observe(CROP.calls[0], frame)]
        recorder.play(None)
        generation = session.generate(messages, max_new_tokens=4)
    scores = torch.stack(recorder.scores)
    assert generation.generated_tokens == len(scores)
    assert_scores_match(scores, scratch_continuation(backend, messages, [int(s.argmax()) for s in scores]))


# preprocessor_config.json as Qwen3-VL-8B-Instruct and Qwen2.5-VL-7B-Instruct ship it
QWEN3_VL_8B = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "image_processor_type": "Qwen2VLImageProcessorFast",
}
QWEN2_5_VL_7B = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}


@pytest.mark.parametrize(("config", "tokens"), [(QWEN3_VL_8B, 768), (QWEN2_5_VL_7B, 999)])
def test_processor_reads_the_configs_real_checkpoints_ship(config, tokens, tiny_model_dir, tmp_path):
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_model_dir / name, tmp_path / name)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    processor = QwenVLProcessor.from_pretrained(tmp_path)
    images = processor.image_processor
    assert (images.patch_size, images.image_mean) == (config["patch_size"], config["image_mean"])
    frame = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    grey = frame[:, :, 0]
    out = images([frame, grey])
    assert images.num_image_tokens(768, 1024) == tokens  # 1024x768: 768 tokens for Qwen3-VL, 999 for 2.5
    assert out["image_grid_thw"][0].tolist() == out["image_grid_thw"][1].tolist()
    assert out["pixel_values"].shape[0] == 2 * tokens * 4  # 2x2 patches merge into one token
    as_rgb = images(np.repeat(grey[:, :, None], 3, axis=2))["pixel_values"]
    assert torch.equal(out["pixel_values"][tokens * 4 :], as_rgb)  # grey tool views are read as RGB
    bounded = QwenVLProcessor.from_pretrained(tmp_path, max_pixels=256 * 256).image_processor
    assert bounded.num_image_tokens(768, 1024) <= 256 * 256 // (4 * config["patch_size"] ** 2)


def copy_checkpoint(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    shutil.copytree(src, dst, ignore=lambda _, names: [n for n in names if n in skip])
    return dst


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="model directory not found"):
        HFBackend(tmp_path / "nowhere")


def test_pickle_only_weights_are_refused(tiny_model_dir, tmp_path):
    broken = copy_checkpoint(tiny_model_dir, tmp_path / "pickled", skip=("model.safetensors",))
    (broken / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(
        BackendError, match=r"no \.safetensors weights .*pytorch_model\.bin: pickle weights are refused"
    ):
        HFBackend(broken)


def test_a_model_that_is_not_qwen_vl_is_refused(tiny_model_dir, tmp_path):
    other = copy_checkpoint(tiny_model_dir, tmp_path / "llama")
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(BackendError, match="holds a 'llama' model"):
        HFBackend(other)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_bad_adapters_are_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(BackendError, match="adapter directory not found"):
        HFBackend(tiny_model_dir, adapter_dir=tmp_path / "nowhere")
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "adapter_config.json").write_text("{}")
    with pytest.raises(BackendError, match=r"no adapter_model\.safetensors"):
        HFBackend(tiny_model_dir, adapter_dir=tmp_path / "no_weights")
    peft = pytest.importorskip("peft")
    from transformers import Qwen3VLForConditionalGeneration

    base = Qwen3VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "a")
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    config["target_modules"] = ["no_such_proj"]
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match="does not fit the model"):
        HFBackend(tiny_model_dir, adapter_dir=tmp_path / "a")
