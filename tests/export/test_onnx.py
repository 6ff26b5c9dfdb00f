"""ONNX export of the tiny Qwen3-VL and the onnx backend: torch parity over a whole multi-round inspection.

Turns are forced (`ForcedTurn`) so both runtimes score the same conversation: a crop round, an enhance +
prior round (two tool results, one of them an image), then the answer. The fp32 export must choose the same
greedy token as torch at every step; the int8 and fp16 exports only have to run, their agreement is reported.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export.manifest import Manifest, checkpoint_hash  # noqa: E402
from export.onnx import export_onnx  # noqa: E402
from export.parity import ForcedTurn, check_parity  # noqa: E402
from station.backends.base import BackendError, Generation  # noqa: E402
from station.backends.onnx import GPU_PROVIDERS, OnnxBackend  # noqa: E402
from station.protocol import ToolCalls, assistant_message, opening_messages  # noqa: E402
from tests.station.backends.test_hf import ANSWER, CROP, EVIDENCE, PRODUCT, TOOLS, observe  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model gains nothing from a second torch thread and loses a lot when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(150, 6, (240, 320, 3)), 0, 255).astype(np.uint8)
    image[110:140, 170:200] = 40
    return image


@pytest.fixture(scope="module")
def export_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "fp32"
    started = time.monotonic()
    export_onnx(tiny_model_dir, out)
    print(f"fp32 export: {time.monotonic() - started:.1f} s")
    return out


@pytest.fixture(scope="module")
def rounds(frame: np.ndarray) -> list[tuple[list[dict], str]]:
    """Crop, enhance + prior, answer: each round's conversation and the turn forced on it."""
    messages = opening_messages(frame, PRODUCT)
    out = []
    for turn in (CROP, EVIDENCE, ANSWER):
        out.append((list(messages), turn.text))
        messages.append(assistant_message(turn))
        if isinstance(turn, ToolCalls):
            messages.extend(observe(call, frame) for call in turn.calls)
    return out


@pytest.fixture(scope="module")
def parity(tiny_model_dir: Path, export_dir: Path, rounds) -> dict:
    return check_parity(tiny_model_dir, export_dir, rounds, tools=TOOLS)


def report(parity: dict) -> None:
    for index, r in enumerate(parity["rounds"], 1):
        print(
            f"{parity['quantization']} round {index}: {r['steps']} steps, greedy agreement "
            f"{r['greedy_agreement']:.3f}, max |dlogit| {r['max_abs_logit_diff']:.2e}, prefill "
            f"{r['prefill_tokens']['onnx']} tokens, prefill s torch {r['prefill_s']['torch']:.3f} / onnx "
            f"{r['prefill_s']['onnx']:.3f}, decode s torch {r['decode_s']['torch']:.3f} / onnx "
            f"{r['decode_s']['onnx']:.3f}"
        )


def test_export_writes_three_graphs_the_processor_and_a_manifest(tiny_model_dir, export_dir):
    manifest = Manifest.read(export_dir)
    assert manifest.format == "onnx" and manifest.quantization == "none"
    assert manifest.source["safetensors_sha256"] == checkpoint_hash(tiny_model_dir)
    assert {"vision.onnx", "embed.onnx", "decoder.onnx", "processor/tokenizer.json"} <= set(manifest.files)
    assert manifest.extra["image_size"] == [128, 128] and manifest.extra["image_grid_thw"] == [1, 8, 8]
    assert manifest.exporter["torch"] and manifest.exporter["onnxruntime"]
    manifest.check_files(export_dir, hashes=True)


def test_fp32_onnx_matches_torch_over_a_multi_round_inspection(parity, export_dir):
    report(parity)
    assert parity["greedy_equal"]  # every step of all three rounds: the same argmax
    assert parity["max_abs_logit_diff"] < 1e-4
    assert all(r["text_equal"] for r in parity["rounds"])
    assert Manifest.read(export_dir).parity == json.loads(json.dumps(parity))


def test_kv_cache_prefills_only_new_tokens_like_the_hf_backend(parity):
    prefill = [r["prefill_tokens"] for r in parity["rounds"]]
    assert all(p["onnx"] == p["torch"] for p in prefill)
    # rounds 2 and 3 prefill their tool results, not the conversation again
    first, second, third = (p["onnx"] for p in prefill)
    assert second < first and third < first + second


@pytest.mark.parametrize("quant", ["int8", "fp16"])
def test_quantized_exports_load_and_run(quant, tiny_model_dir, rounds, tmp_path):
    manifest = export_onnx(tiny_model_dir, tmp_path / quant, quant=quant)
    assert manifest.quantization == quant
    parity = check_parity(tiny_model_dir, tmp_path / quant, rounds[:1], tools=TOOLS)
    report(parity)  # agreement with torch is reported, not required: quantizing moves a random model's logits
    assert parity["rounds"][0]["steps"] > 0


def test_the_provider_really_in_use_is_reported(export_dir, caplog):
    with caplog.at_level(logging.WARNING):
        backend = OnnxBackend(export_dir, providers=GPU_PROVIDERS)
    assert backend.providers_in_use  # what onnxruntime really runs, not what was asked
    if backend.providers_in_use[0] != GPU_PROVIDERS[0]:  # a CPU build (or no GPU): the fallback is logged
        assert "not TensorrtExecutionProvider" in caplog.text
    assert backend.providers_in_use[0] in backend.model_id


def test_max_new_tokens_and_deadline_stop_decoding(export_dir, frame):
    turns = ForcedTurn()
    backend = OnnxBackend(export_dir, logits_processors=[turns])
    never_ends = backend.tokenizer.encode(" scratch", add_special_tokens=False)
    messages = opening_messages(frame, PRODUCT)
    with backend.open_session(TOOLS) as session:
        turns.play(never_ends)
        generation = session.generate(messages, max_new_tokens=5)
        assert (generation.finish_reason, generation.generated_tokens) == ("length", 5)
    with backend.open_session(TOOLS) as session:
        start = time.monotonic()
        generation = session.generate(messages, max_new_tokens=20_000, deadline=start + 0.3)
        elapsed = time.monotonic() - start
    assert generation.finish_reason == "deadline"
    assert 0 < generation.generated_tokens < 20_000 and elapsed < 1.3
    with backend.open_session(TOOLS) as session:
        assert session.generate(messages, max_new_tokens=5, deadline=0.0) == Generation(
            text="", finish_reason="deadline"
        )


def test_missing_or_broken_exports_are_clear_errors(export_dir, tmp_path):
    with pytest.raises(BackendError, match="ONNX export directory not found"):
        OnnxBackend(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match=r"has no manifest\.json: not an export directory"):
        OnnxBackend(tmp_path / "empty")
    broken = Path(shutil.copytree(export_dir, tmp_path / "broken"))
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(BackendError, match=r"manifest\.json is corrupted"):
        OnnxBackend(broken)
    truncated = Path(shutil.copytree(export_dir, tmp_path / "truncated"))
    (truncated / "decoder.onnx").write_bytes(b"\0" * 10)
    with pytest.raises(BackendError, match=r"decoder\.onnx is not the file manifest\.json describes"):
        OnnxBackend(truncated)
    (truncated / "decoder.onnx").unlink()
    with pytest.raises(BackendError, match=r"decoder\.onnx is listed in manifest\.json but missing"):
        OnnxBackend(truncated)
