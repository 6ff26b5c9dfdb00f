"""GGUF export of the tiny Qwen3-VL through llama.cpp's own converter, loaded back with llama-cpp-python, and
checked against torch with `indus export check`.

Skips when llama-cpp-python (the 'gguf' extra) or llama.cpp's ``convert_hf_to_gguf.py`` is unavailable: the
converter is not in the wheel; point $INDUS_LLAMA_CPP_DIR at a llama.cpp tree or run
``export.gguf.fetch_converter()`` once (`.ci/run` does it from the sdist it builds the wheel from).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
llama_cpp = pytest.importorskip("llama_cpp")

from export.gguf import ConverterNotFound, export_gguf  # noqa: E402
from export.manifest import Manifest, checkpoint_hash  # noqa: E402
from export.parity import check_parity, forced_rounds, synthetic_parts  # noqa: E402
from station.cli.main import main  # noqa: E402
from tools.toolkit import default_registry  # noqa: E402

pytestmark = pytest.mark.slow

PROMPT = "<|im_start|>user\nInspect this part for defects.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def f16_dir(gguf_f16_dir: Path) -> Path:
    print(f"gguf f16 export: {Manifest.read(gguf_f16_dir).extra['export_s']:.1f} s")
    return gguf_f16_dir


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model gains nothing from a second thread and loses a lot when the other core is busy (the
    parity check gives llama.cpp as many threads as torch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(path: Path, n_ctx: int = 512, **kwargs) -> llama_cpp.Llama:
    """A Llama without llama.cpp's "extra" CPU buffer types (AMX, repacking): a native build on a CPU that
    advertises AMX but where the process may not use it (seen in a VM sandbox) dies with SIGILL in the AMX
    matmul of quantized weights, which would take the whole test run with it. ``Llama`` has no argument for
    this, so the default model params are patched while it loads."""
    module = llama_cpp.llama.llama_cpp
    default = module.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    module.llama_model_default_params = params
    try:
        return llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=1, seed=0, verbose=False, **kwargs)
    finally:
        module.llama_model_default_params = default


def greedy(llm: llama_cpp.Llama, n: int = 8) -> list[int]:
    """n greedy tokens after PROMPT, EOS or not (random weights may well choose it first)."""
    tokens = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    out = []
    for token in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
        out.append(token)
        if len(out) == n:
            break
    return out


def torch_greedy(model_dir: Path, ids: list[int], n: int = 8) -> list[int]:
    from transformers import Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        ids_t = torch.tensor([ids])
        out = model.generate(
            ids_t, attention_mask=torch.ones_like(ids_t), max_new_tokens=n, min_new_tokens=n, do_sample=False
        )
    return out[0, len(ids) :].tolist()


def test_export_writes_model_mmproj_and_manifest(tiny_model_dir, f16_dir):
    manifest = Manifest.read(f16_dir)
    assert manifest.format == "gguf" and manifest.quantization == "f16"
    assert set(manifest.files) == {"model.gguf", "mmproj.gguf"}
    assert manifest.source["safetensors_sha256"] == checkpoint_hash(tiny_model_dir)
    assert manifest.exporter["llama-cpp-python"] and manifest.exporter["converter"]
    # the tiny model's home-trained BPE is unknown to llama.cpp: exported with Qwen2's pre-tokenizer
    assert manifest.extra["pre_tokenizer_fallback"] == "qwen2"
    # the image bounds the mmproj does not carry, for the gguf backend (the tiny model: 1 to 16 tokens)
    assert manifest.extra["image_processor"] == {
        "patch_size": 16,
        "merge_size": 2,
        "min_pixels": 1024,
        "max_pixels": 16384,
    }
    manifest.check_files(f16_dir, hashes=True)
    assert not [p.name for p in f16_dir.iterdir() if p.name not in {*manifest.files, "manifest.json"}]


def test_f16_gguf_loads_and_generates_like_torch(tiny_model_dir, f16_dir):
    llm = load(f16_dir / "model.gguf")
    from transformers import AutoTokenizer

    hf_ids = AutoTokenizer.from_pretrained(tiny_model_dir)(PROMPT)["input_ids"]
    assert llm.tokenize(PROMPT.encode(), add_bos=False, special=True) == hf_ids  # same tokenizer
    tokens = greedy(llm)
    assert len(tokens) == 8 and all(0 <= t < llm.n_vocab() for t in tokens)
    expected = torch_greedy(tiny_model_dir, hf_ids)
    agreement = np.mean([a == b for a, b in zip(tokens, expected, strict=True)])
    print(f"f16 gguf vs torch greedy agreement over 8 tokens: {agreement:.3f} ({tokens} vs {expected})")
    assert tokens[0] == expected[0]


def test_mmproj_runs_an_image_turn(f16_dir):
    from llama_cpp.llama_chat_format import MTMDChatHandler
    from PIL import Image

    handler = MTMDChatHandler(clip_model_path=str(f16_dir / "mmproj.gguf"), verbose=False)
    llm = load(f16_dir / "model.gguf", n_ctx=4096, chat_handler=handler)
    buffer = io.BytesIO()
    Image.fromarray(np.full((128, 128, 3), 150, np.uint8)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Defect?"}]
    reply = llm.create_chat_completion(
        messages=[{"role": "user", "content": content}], max_tokens=4, temperature=0.0
    )
    assert reply["usage"]["prompt_tokens"] > 16  # the 16 image tokens and the text
    assert reply["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_quantized_gguf_is_smaller_and_runs(quant, tiny_model_dir, f16_dir, tmp_path):
    """Agreement with f16 (and with torch through the backend) is reported, not required: quantizing moves a
    random model's logits, and Q4_K_M falls back on most of the tiny model's 64-wide rows."""
    manifest = export_gguf(tiny_model_dir, tmp_path, quant)
    assert manifest.quantization == quant
    f16 = Manifest.read(f16_dir).files
    assert manifest.files["model.gguf"]["bytes"] < f16["model.gguf"]["bytes"]
    assert manifest.files["mmproj.gguf"]["sha256"] == f16["mmproj.gguf"]["sha256"]  # mmproj stays f16
    tokens = greedy(load(tmp_path / "model.gguf"))
    reference = greedy(load(f16_dir / "model.gguf"))
    agreement = np.mean([a == b for a, b in zip(tokens, reference, strict=True)])
    print(f"{quant} vs f16 greedy agreement over 8 tokens: {agreement:.3f}")
    assert len(tokens) == 8
    rounds = forced_rounds(synthetic_parts(1, seed=0)[0][1])
    parity = check_parity(tiny_model_dir, tmp_path, rounds, tools=default_registry().schemas())
    steps = sum(r["steps"] for r in parity["rounds"])
    agreement = sum(r["greedy_agreement"] * r["steps"] for r in parity["rounds"]) / steps
    print(f"{quant} gguf vs torch over a forced 3-round inspection: greedy agreement {agreement:.3f}")
    assert parity["quantization"] == quant and len(parity["rounds"]) == 3


def check(model: Path, export: Path, *extra: str, parts: int = 2):
    args = ["export", "check", "--model", str(model), "--export", str(export), "--synthetic", str(parts)]
    return CliRunner().invoke(main, [*args, "--max-new-tokens", "8", *extra])


@pytest.fixture
def checked_dir(f16_dir: Path, tmp_path: Path) -> Path:
    """A copy of the f16 export, so recording parity leaves the shared one as exported."""
    return Path(shutil.copytree(f16_dir, tmp_path / "f16"))


def test_export_check_passes_an_f16_gguf_and_records_its_parity(tiny_model_dir, checked_dir):
    result = check(tiny_model_dir, checked_dir, "--json")
    assert result.exit_code == 0, result.output
    assert "export check passed" in result.output
    parity = Manifest.read(checked_dir).parity
    assert parity["format"] == "gguf" and parity["device"] == "CPU" and parity["passed"]
    # greedy tokens equal torch's exactly: the free agent runs and every forced step of the 3 rounds
    assert parity["token_agreement"] == parity["forced_greedy_agreement"] == 1.0
    assert parity["verdict_agreement"] == 1.0
    assert len(parity["logits"]["rounds"]) == 3 and parity["logits"]["greedy_equal"]
    assert parity["max_abs_logit_diff"] < 5e-3  # f16 weights against fp32 torch
    for r in parity["logits"]["rounds"]:
        assert r["prefill_tokens"]["gguf"] == r["prefill_tokens"]["torch"]
    part = next(iter(parity["parts"].values()))
    assert part["rounds"] and all(r["text_equal"] for r in part["rounds"])
    assert set(part["verdicts"]) == {"torch", "gguf"}
    printed = json.loads(result.output[: result.output.rindex("}") + 1])
    assert printed["passed"]


def test_a_gguf_that_disagrees_with_torch_fails_the_check(tiny_model_dir, checked_dir, monkeypatch):
    from station.backends.gguf import session

    class Shifted(session.VerdictRecorder):  # the export's scores pushed towards another token every step
        def __call__(self, input_ids, scores):
            scores = super().__call__(input_ids, scores)
            scores[..., 7] += 1e4
            return scores

    monkeypatch.setattr(session, "VerdictRecorder", Shifted)
    result = check(tiny_model_dir, checked_dir, parts=1)
    assert result.exit_code == 1
    assert "export check failed: agent token agreement" in result.output
    assert "forced-turn greedy agreement" in result.output
    assert not Manifest.read(checked_dir).parity["passed"]


def test_unknown_quant_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="quant"):
        export_gguf(tiny_model_dir, tmp_path, "q2")  # type: ignore[arg-type]


def test_missing_converter_is_a_clear_error(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("INDUS_LLAMA_CPP_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ConverterNotFound, match="INDUS_LLAMA_CPP_DIR"):
        export_gguf(tiny_model_dir, tmp_path / "out")
