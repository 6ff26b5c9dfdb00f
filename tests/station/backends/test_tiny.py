"""The tiny random Qwen3-VL: deterministic, laid out as a real checkpoint, the protocol's template, a CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from station.backends.hf import HFBackend  # noqa: E402
from station.backends.hf.processor import QwenVLProcessor  # noqa: E402
from station.backends.hf.tiny import PROTOCOL_TOKENS, SPECIAL_TOKENS, build_tiny_model  # noqa: E402
from station.cli.main import main  # noqa: E402
from station.protocol import (  # noqa: E402
    Answer,
    ToolCall,
    ToolCalls,
    assistant_message,
    chat_template,
    opening_messages,
    render_chat,
    tool_message,
)
from tools.registry import Observation  # noqa: E402
from tools.toolkit import default_registry  # noqa: E402

TOOLS = default_registry().schemas()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model gains nothing from a second torch thread and loses a lot when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_seed_same_bytes_other_seed_other_weights(tiny_model_dir, tmp_path):
    assert files(build_tiny_model(tmp_path / "again", seed=0)) == files(tiny_model_dir)
    other = files(build_tiny_model(tmp_path / "seed1", seed=1))
    assert other["model.safetensors"] != files(tiny_model_dir)["model.safetensors"]
    assert other["tokenizer.json"] == files(tiny_model_dir)["tokenizer.json"]


def test_layout_and_config_follow_qwen3_vl(tiny_model_dir):
    names = set(files(tiny_model_dir))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert {"chat_template.jinja", "preprocessor_config.json", "README.md"} <= names
    config = json.loads((tiny_model_dir / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    assert config["model_type"] == "qwen3_vl"
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"]) == (64, 2, 4)
    assert (text["num_key_value_heads"], text["head_dim"]) == (2, 16)
    assert sum(text["rope_parameters"]["mrope_section"]) == text["head_dim"] // 2
    assert (vision["depth"], vision["hidden_size"], vision["patch_size"]) == (2, 32, 16)
    assert vision["deepstack_visual_indexes"] == [0] and vision["out_hidden_size"] == text["hidden_size"]
    preprocessor = json.loads((tiny_model_dir / "preprocessor_config.json").read_text())
    assert preprocessor["image_processor_type"] == "Qwen2VLImageProcessor"
    assert (preprocessor["patch_size"], preprocessor["merge_size"]) == (16, 2)
    assert "never use it" in (tiny_model_dir / "README.md").read_text()


def test_tokenizer_has_qwens_tokens(tiny_model_dir):
    processor = QwenVLProcessor.from_pretrained(tiny_model_dir)
    tokenizer = processor.tokenizer
    config = json.loads((tiny_model_dir / "config.json").read_text())
    for token in (*SPECIAL_TOKENS, *PROTOCOL_TOKENS):
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token
    assert config["image_token_id"] == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config["vision_start_token_id"] == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    call = '<tool_call>\n{"name": "crop"}\n</tool_call><|im_end|>'
    # protocol tags are not special: they survive the decoding TRL and servers do
    assert tokenizer.decode(tokenizer.encode(call), skip_special_tokens=True) == call.removesuffix(
        "<|im_end|>"
    )
    answer = Answer(anomaly=False, confidence=0.02).text
    assert tokenizer.decode(tokenizer.encode(answer)) == answer


def test_chat_template_is_the_protocols_byte_for_byte(tiny_model_dir):
    assert (tiny_model_dir / "chat_template.jinja").read_bytes() == chat_template().encode("utf-8")
    tokenizer = QwenVLProcessor.from_pretrained(tiny_model_dir).tokenizer
    image = np.zeros((40, 60, 3), np.uint8)
    calls = ToolCalls(
        calls=(ToolCall("crop", {"bbox": [1, 2, 300, 400]}),), content="<think>\nzoom\n</think>"
    )
    messages = [
        *opening_messages(image, "bottle"),
        assistant_message(calls),
        tool_message(Observation(tool="crop", data={"bbox": [1, 2, 300, 400]}, images=[image])),
    ]
    rendered = tokenizer.apply_chat_template(
        messages, tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    assert rendered == render_chat(messages, TOOLS, add_generation_prompt=True)


def test_processor_expands_images_like_the_model_expects(tiny_model_dir):
    processor = QwenVLProcessor.from_pretrained(tiny_model_dir)
    image = np.full((200, 300, 3), 128, np.uint8)
    text = render_chat(opening_messages(image, "bottle"), TOOLS, add_generation_prompt=True)
    inputs = processor(images=[image], text=text, return_tensors="pt")
    n_tokens = processor.image_processor.num_image_tokens(200, 300)
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == n_tokens <= 16
    assert int(inputs["image_grid_thw"].prod()) == 4 * n_tokens
    assert inputs["pixel_values"].shape == (4 * n_tokens, 3 * 2 * 16 * 16)
    # a flat image survives the antialiased resize exactly; mean 0.5 and std 0.5 map 128 to 128/255 * 2 - 1
    assert float((inputs["pixel_values"] - (128 / 255 * 2 - 1)).abs().max()) < 1e-6


def test_loads_through_the_hf_backend(tiny_model_dir):
    backend = HFBackend(tiny_model_dir)
    assert (backend.name, backend.model_type, backend.model_id) == ("hf", "qwen3_vl", str(tiny_model_dir))
    assert sum(p.numel() for p in backend.model.parameters()) < 400_000
    assert str(backend.model.dtype) == "torch.float32" and backend.device.type in ("cpu", "cuda")


def test_cli_builds_it_and_says_it_is_random(tiny_model_dir, tmp_path):
    result = CliRunner().invoke(main, ["model", "tiny", "--out", str(tmp_path / "cli"), "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.output and "not a detector" in result.output
    assert files(tmp_path / "cli") == files(tiny_model_dir)
