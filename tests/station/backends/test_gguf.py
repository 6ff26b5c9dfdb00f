"""The gguf backend on the tiny Qwen3-VL exported to GGUF f16: torch's tokens, each token prefilled once.

Turns are forced (`ForcedTurn`, as in test_hf) so a random model still runs a whole protocol inspection: a
crop round, an enhance + prior round (two tool results, one of them an image), then the answer. The f16
export must choose torch's greedy token at every step and prefill exactly the tokens torch prefills.
Everything here skips without llama-cpp-python (the 'gguf' extra) or llama.cpp's converter, except the
test that the backend says what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from export.manifest import Manifest  # noqa: E402
from export.parity import ForcedTurn, check_parity  # noqa: E402
from station.audit.store import AuditDB  # noqa: E402
from station.backends import BackendError, Generation, load_backend  # noqa: E402
from station.camera.simulator import CameraSimulator, generated_parts  # noqa: E402
from station.cli.main import main  # noqa: E402
from station.plc.simulator import PlcSimulator  # noqa: E402
from station.protocol import ToolCall, ToolCalls, assistant_message, opening_messages  # noqa: E402
from tests.station.backends.test_hf import ANSWER, CROP, EVIDENCE, PRODUCT, TOOLS, observe  # noqa: E402
from tools.image import save_image  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model gains nothing from a second torch thread and loses a lot when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def script() -> ForcedTurn:
    return ForcedTurn()


@pytest.fixture(scope="module")
def backend(gguf_f16_dir: Path, script: ForcedTurn):
    from station.backends.gguf import GGUFBackend

    backend = GGUFBackend(gguf_f16_dir, n_threads=1, logits_processors=[script])
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(150, 6, (240, 320, 3)), 0, 255).astype(np.uint8)
    image[110:140, 170:200] = 40  # a dark stain
    return image


def turn_tokens(backend, text: str) -> list[int]:
    return [*backend.tokenizer.encode(text), backend.stop_ids[0]]


def forced_rounds(frame: np.ndarray) -> list[tuple[list[dict], str]]:
    """Crop, enhance + prior, answer: each round's conversation and the turn forced on it."""
    messages = opening_messages(frame, PRODUCT)
    rounds = []
    for turn in (CROP, EVIDENCE, ANSWER):
        rounds.append((list(messages), turn.text))
        messages.append(assistant_message(turn))
        if isinstance(turn, ToolCalls):
            messages.extend(observe(call, frame) for call in turn.calls)
    return rounds


def run_rounds(backend, script: ForcedTurn, rounds) -> list[tuple[Generation, torch.Tensor]]:
    """Each round forced in one session: its generation and the scores the model gave at each step."""
    out = []
    with backend.open_session(TOOLS) as session:
        for messages, turn in rounds:
            script.play(turn_tokens(backend, turn))
            out.append((session.generate(messages, max_new_tokens=200), torch.stack(script.scores)))
    return out


def full_prefill(backend, script: ForcedTurn, messages: list[dict]) -> tuple[int, torch.Tensor]:
    """A fresh session's prefill of ``messages`` (their whole prompt) and its first-step scores."""
    script.play(None)
    with backend.open_session(TOOLS) as session:
        generation = session.generate(messages, max_new_tokens=1)
    return generation.prefill_tokens, script.scores[0]


@pytest.fixture(scope="module")
def inspection(backend, script, frame):
    return run_rounds(backend, script, forced_rounds(frame))


@pytest.fixture(scope="module")
def parity(tiny_model_dir: Path, gguf_f16_dir: Path, frame) -> dict:
    return check_parity(tiny_model_dir, gguf_f16_dir, forced_rounds(frame), tools=TOOLS, record=False)


def test_forced_turns_come_back_verbatim_and_stop_at_im_end(backend, inspection):
    for (generation, _), turn in zip(inspection, (CROP, EVIDENCE, ANSWER), strict=True):
        assert generation.text == turn.text
        assert generation.finish_reason == "stop"
        assert generation.generated_tokens == len(turn_tokens(backend, turn.text))
        assert generation.prefill_s > 0 and generation.decode_s > 0
    assert [g.verdict_prob is None for g, _ in inspection] == [True, True, False]  # only the answer has one


def test_f16_chooses_torchs_greedy_token_at_every_step_of_a_multi_round_inspection(parity):
    for index, r in enumerate(parity["rounds"], 1):
        print(
            f"gguf f16 round {index}: {r['steps']} steps, greedy agreement {r['greedy_agreement']:.3f}, "
            f"max |dlogit| {r['max_abs_logit_diff']:.2e}, prefill tokens {r['prefill_tokens']}, "
            f"prefill s torch {r['prefill_s']['torch']:.3f} / gguf {r['prefill_s']['gguf']:.3f}"
        )
    assert parity["format"] == "gguf" and parity["quantization"] == "f16" and parity["device"] == "CPU"
    assert parity["greedy_equal"] and all(r["greedy_agreement"] == 1.0 for r in parity["rounds"])
    assert all(r["text_equal"] for r in parity["rounds"])
    assert parity["max_abs_logit_diff"] < 5e-3  # f16 weights against fp32 torch
    answer = parity["rounds"][2]["verdict_prob"]
    assert answer["gguf"] == pytest.approx(answer["torch"], abs=1e-3)


def test_each_round_prefills_the_tokens_torch_prefills(parity):
    """Same image grids, same token ids: llama.cpp sees the images at the size the hf processor gives."""
    prefill = [r["prefill_tokens"] for r in parity["rounds"]]
    assert all(p["gguf"] == p["torch"] for p in prefill)


def test_rounds_after_the_first_evaluate_only_the_new_tokens(backend, script, frame, monkeypatch):
    """Round k prefills its prompt minus what the cache holds; each image is encoded exactly once."""
    from station.backends.gguf.session import GGUFSession

    encoded = []
    evaluate = GGUFSession._eval_image
    monkeypatch.setattr(
        GGUFSession, "_eval_image", lambda self, chunk: encoded.append(1) or evaluate(self, chunk)
    )
    rounds = forced_rounds(frame)
    cached = run_rounds(backend, script, rounds)
    assert len(encoded) == 3  # the frame, the crop, the enhanced view: one each, never again
    in_cache = 0
    for (messages, _), (generation, _) in zip(rounds, cached, strict=True):
        whole, _ = full_prefill(backend, script, messages)
        # the previous turn's last token (never evaluated when it was sampled), the tool results, the prompt
        assert generation.prefill_tokens == whole - in_cache
        in_cache = whole + generation.generated_tokens - 1
    prefills = [g.prefill_tokens for g, _ in cached]
    print(f"gguf prefill per round: {prefills} (a from-scratch round 3 would prefill {whole})")
    assert prefills[1] < prefills[0] and prefills[2] < whole / 2


def test_cached_rounds_score_like_a_from_scratch_pass(backend, script, frame, inspection):
    """Round 3 after two cached rounds (two new images on the way) scores like one pass over its prompt."""
    messages, turn = forced_rounds(frame)[2]
    script.play(turn_tokens(backend, turn))
    with backend.open_session(TOOLS) as session:
        session.generate(messages, max_new_tokens=200)
    scratch = torch.stack(script.scores)
    cached = inspection[2][1]
    finite = torch.isfinite(scratch)
    assert torch.equal(cached.argmax(-1), scratch.argmax(-1))
    assert torch.allclose(cached[finite], scratch[finite], atol=1e-3, rtol=0)


def test_the_same_conversation_twice_gets_fresh_logits(backend, script, frame):
    messages = opening_messages(frame, PRODUCT)
    script.play(None)
    with backend.open_session(TOOLS) as session:
        first = session.generate(messages, max_new_tokens=6)
        first_scores = torch.stack(script.scores)
        script.play(None)
        again = session.generate(messages, max_new_tokens=6)
    assert again.text == first.text and torch.allclose(torch.stack(script.scores), first_scores, atol=1e-4)
    assert again.prefill_tokens == first.prefill_tokens  # the prompt again: its logits are long gone


def test_a_rewritten_history_is_prefilled_again_not_trusted(backend, script, frame):
    messages = opening_messages(frame, PRODUCT)
    opening, _ = full_prefill(backend, script, messages)
    with backend.open_session(TOOLS) as session:
        script.play(turn_tokens(backend, CROP.text))
        first = session.generate(messages, max_new_tokens=200)
        other = ToolCalls(calls=(ToolCall("crop", {"bbox": [0, 0, 500, 500]}),))  # not what the model wrote
        messages += [assistant_message(other), observe(other.calls[0], frame)]
        script.play(None)
        second = session.generate(messages, max_new_tokens=1)
        second_scores = script.scores[0]
        darker = opening_messages(frame // 2, PRODUCT)  # same text, another image: nothing can be reused
        third = session.generate(darker, max_new_tokens=1)
    whole, scratch_scores = full_prefill(backend, script, messages)
    assert first.prefill_tokens == opening
    assert second.prefill_tokens == whole - opening  # the opening prompt is kept, the rest prefilled
    assert torch.allclose(second_scores, scratch_scores, atol=1e-3)
    assert third.prefill_tokens == opening


def test_sessions_sharing_the_backend_take_turns_on_the_cache(backend, script, frame):
    """One llama.cpp context holds one conversation: a session that lost it starts again from scratch."""
    rounds = forced_rounds(frame)
    alone = run_rounds(backend, script, rounds[:2])
    first, second = backend.open_session(TOOLS), backend.open_session(TOOLS)
    try:
        script.play(turn_tokens(backend, rounds[0][1]))
        first.generate(rounds[0][0], max_new_tokens=200)
        script.play(None)
        second.generate(opening_messages(frame // 2, PRODUCT), max_new_tokens=3)
        script.play(turn_tokens(backend, rounds[1][1]))
        resumed = first.generate(rounds[1][0], max_new_tokens=200)
        resumed_scores = torch.stack(script.scores)
    finally:
        first.close()
        second.close()
    whole, _ = full_prefill(backend, script, rounds[1][0])
    assert resumed.prefill_tokens == whole  # its cache was taken: everything again, nothing trusted
    assert resumed.text == alone[1][0].text
    assert torch.allclose(resumed_scores, alone[1][1], atol=1e-3)


def test_max_new_tokens_and_deadline_stop_decoding(backend, script, frame):
    never_ends = backend.tokenizer.encode(" scratch")
    messages = opening_messages(frame, PRODUCT)
    with backend.open_session(TOOLS) as session:
        script.play(never_ends)
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


def test_a_conversation_longer_than_the_context_is_a_clear_error(gguf_f16_dir, frame):
    from station.backends.gguf import GGUFBackend

    small = GGUFBackend(gguf_f16_dir, n_threads=1, n_ctx=256)
    try:
        with small.open_session(TOOLS) as session, pytest.raises(BackendError, match="n_ctx is 256"):
            session.generate(opening_messages(frame, PRODUCT), max_new_tokens=4)
        small.close()
        with pytest.raises(BackendError, match="closed"):
            small.open_session(TOOLS).generate(opening_messages(frame, PRODUCT), max_new_tokens=4)
    finally:
        small.close()


def test_missing_or_broken_exports_are_clear_errors(gguf_f16_dir, tmp_path):
    from station.backends.gguf import GGUFBackend

    with pytest.raises(BackendError, match="GGUF export directory not found"):
        GGUFBackend(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match=r"has no manifest\.json: not an export directory"):
        GGUFBackend(tmp_path / "empty")

    def copy(name: str) -> Path:
        return Path(shutil.copytree(gguf_f16_dir, tmp_path / name))

    broken = copy("broken")
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(BackendError, match=r"manifest\.json is corrupted"):
        GGUFBackend(broken)
    old = copy("old")
    manifest = Manifest.read(old)
    del manifest.extra["image_processor"]
    manifest.write(old)
    with pytest.raises(BackendError, match="lacks 'image_processor': export it again"):
        GGUFBackend(old)
    onnx = copy("onnx")
    manifest = Manifest.read(onnx)
    manifest.format = "onnx"
    manifest.write(onnx)
    with pytest.raises(BackendError, match="holds a 'onnx' export, not gguf"):
        GGUFBackend(onnx)
    truncated = copy("truncated")
    (truncated / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(BackendError, match=r"model\.gguf is not the file manifest\.json describes"):
        GGUFBackend(truncated)
    (truncated / "model.gguf").unlink()
    with pytest.raises(BackendError, match=r"model\.gguf is listed in manifest\.json but missing"):
        GGUFBackend(truncated)
    for name, message in (("model.gguf", "llama.cpp could not load"), ("mmproj.gguf", "vision projector")):
        corrupt = copy(f"corrupt-{name}")
        size = (corrupt / name).stat().st_size
        (corrupt / name).write_bytes(b"\x07" * size)  # the size the manifest expects, not a GGUF
        with pytest.raises(BackendError, match=message):
            GGUFBackend(corrupt)


def test_without_llama_cpp_the_backend_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what `import llama_cpp` finds when it is missing
    for module in [m for m in sys.modules if m.startswith("station.backends.gguf")]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(BackendError, match=r"needs the 'gguf' extra \(pip install 'indus-station\[gguf\]'"):
        load_backend("gguf", str(tmp_path))


def test_inspect_runs_with_the_gguf_backend(gguf_f16_dir, tmp_path):
    image = tmp_path / "part.png"
    save_image(image, np.full((96, 128, 3), 120, np.uint8))
    args = ["inspect", str(image), "--backend", "gguf", "--model", str(gguf_f16_dir), "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--max-new-tokens", "8", "--json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["backend"] == "gguf" and "(f16, CPU)" in verdict["model"]
    assert verdict["decision"] == "reject"  # a random model: a fail-safe
    assert verdict["trace"][0]["prefill_tokens"] > 0 and verdict["trace"][0]["generated_tokens"] == 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_station_runs_with_the_gguf_backend(gguf_f16_dir, tmp_path):
    """`indus run` with ``backend: gguf`` and the export given relative to the config file."""
    shutil.copytree(gguf_f16_dir, tmp_path / "model")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    plc = PlcSimulator().start()
    try:
        config = {
            "camera": {"endpoint": endpoint, "mode": "pull"},
            "plc": {"port": plc.device_path, "ack_timeout_s": 0.2},
            "model": {"backend": "gguf", "model": "model", "device": "cpu"},
            "default_recipe": {"deadline_ms": 10000, "max_new_tokens": 8},
            "audit": {"path": "audit.db", "evidence_dir": "evidence"},
            "http": {"port": 0},
        }
        path = tmp_path / "station.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen(
            [sys.executable, "-m", "station.cli.main", "run", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
        )
        for line in proc.stderr:  # the model is loaded once the operator page is announced
            if "operator page" in line or proc.poll() is not None:
                break
        sent = CameraSimulator(generated_parts(3, 96), endpoint=endpoint, linger_s=1).run(3)
        deadline = time.monotonic() + 30
        while len(plc.verdicts) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["verdicts"] == sent == 3
    finally:
        plc.close()
    rows = AuditDB(tmp_path / "audit.db").last()
    assert len(rows) == 3 and {row["backend"] for row in rows} == {"gguf"}
    assert all(row["reason"] != "deadline" for row in rows)  # inspected by the model, in time
