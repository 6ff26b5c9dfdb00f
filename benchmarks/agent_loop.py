"""What the inspection loop costs besides the model, on a 2048x2048 frame.

Section 1 drives the loop with the `scripted` backend (the model costs ~nothing), so the time per round is
the loop's own overhead: thread hand-off, parsing, message building, tool execution, the verdict. Target:
under 5 ms per round. Section 2 splits the tiny `hf` model's time-to-verdict into prefill, decode and tools
(see `--hf`).

    python benchmarks/agent_loop.py [--parts 50] [--size 2048] [--hf]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from station.agent import Agent
from station.agent_config import AgentConfig
from station.backends.scripted import ANSWER_DEFECT, ScriptedBackend
from station.protocol import ToolCall, ToolCalls
from tools.prior import PriorStore

TARGET_MS = 5.0
REGION = [300, 400, 420, 520]


def turns(*calls: ToolCall) -> list[str]:
    return [ToolCalls((call,)).text for call in calls] + [ANSWER_DEFECT]


SCRIPTS = {
    "answer only": [ANSWER_DEFECT],
    "crop+enhance+prior+measure (regions)": turns(
        ToolCall("crop", {"bbox": REGION}),
        ToolCall("enhance", {"mode": "clahe", "bbox": REGION}),
        ToolCall("prior", {}),
        ToolCall("measure", {"operation": "spacing", "items": [[100 * i, 500] for i in range(1, 9)]}),
    ),
    "crop by proposal + full-frame enhance": turns(
        ToolCall("crop", {}), ToolCall("enhance", {"mode": "highpass"})
    ),
}


def scripted_section(parts: int, size: int) -> Table:
    frame = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    priors = PriorStore.default(embedder="lexical")
    table = Table(title=f"Loop overhead per round, scripted backend, {size}x{size} frame, {parts} parts each")
    columns = (
        "script",
        "rounds",
        "ms/part",
        "ms/round",
        "tools ms/round",
        "loop ms/round",
        f"< {TARGET_MS:.0f} ms",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "script" else "right")
    for name, script in SCRIPTS.items():
        agent = Agent(ScriptedBackend(script), AgentConfig(), priors=priors)
        agent.inspect(frame, "bottle")  # warm-up
        verdicts = [agent.inspect(frame, "bottle") for _ in range(parts)]
        agent.close()
        assert all(not v.fail_safe for v in verdicts), verdicts[0].detail
        rounds = len(verdicts[0].trace)
        total = statistics.median(v.timings.total_s for v in verdicts) * 1000
        tools = statistics.median(v.timings.tools_s for v in verdicts) * 1000
        per_round = total / rounds
        ok = "yes" if per_round < TARGET_MS else "[red]NO[/]"
        loop = (total - tools) / rounds
        table.add_row(
            name, str(rounds), f"{total:.2f}", f"{per_round:.2f}", f"{tools / rounds:.2f}", f"{loop:.2f}", ok
        )
    return table


class ForcedTurns:
    """Teacher-forces a scripted trajectory on a random model, so the tiny model runs real tool rounds.

    A logits processor: each new `generate` call (the prompt grew by more than one token) plays the next
    turn's tokens. The model still prefills and decodes every token; only the choice of token is fixed.
    """

    def __init__(self, turns: list[list[int]]):
        self.turns, self.turn, self.start, self.last_len = turns, -1, 0, -1

    def __call__(self, input_ids, scores):
        import torch

        length = input_ids.shape[1]
        if length != self.last_len + 1:
            self.turn, self.start = (self.turn + 1) % len(self.turns), length
        self.last_len = length
        tokens = self.turns[self.turn]
        forced = torch.full_like(scores, -torch.inf)
        forced[:, tokens[min(length - self.start, len(tokens) - 1)]] = 0.0
        return forced


def hf_section(parts: int) -> Table:
    """The tiny random Qwen3-VL, forced through crop -> enhance -> answer on a 2048x2048 frame."""
    import tempfile

    import torch

    from station.backends.hf import HFBackend
    from station.backends.hf.tiny import build_tiny_model

    torch.set_num_threads(1)
    model_dir = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
    script = SCRIPTS["crop+enhance+prior+measure (regions)"][:2] + SCRIPTS["answer only"]
    forced = ForcedTurns([])
    backend = HFBackend(model_dir, generate_kwargs={"logits_processor": [forced]})
    forced.turns = [
        [*backend.tokenizer.encode(t, add_special_tokens=False), backend.stop_ids[0]] for t in script
    ]
    frame = np.random.default_rng(0).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)
    agent = Agent(backend, AgentConfig(deadline_s=120), priors=PriorStore.default(embedder="lexical"))
    agent.inspect(frame, "bottle")  # warm-up
    verdicts = [agent.inspect(frame, "bottle") for _ in range(parts)]
    agent.close()
    assert all(not v.fail_safe for v in verdicts), verdicts[0].detail

    def med(values) -> str:
        return f"{statistics.median(values) * 1000:.1f}"

    table = Table(title=f"Tiny hf model, time to verdict on a 2048x2048 frame, {parts} parts, 1 torch thread")
    for column in (
        "round",
        "prefill tokens",
        "generated",
        "prefill ms",
        "decode ms",
        "tools ms",
        "model call ms",
    ):
        table.add_column(column, justify="right")
    for i in range(len(verdicts[0].trace)):
        rounds = [v.trace[i] for v in verdicts]
        table.add_row(
            str(i + 1),
            str(rounds[0].prefill_tokens),
            str(rounds[0].generated_tokens),
            med(r.prefill_s for r in rounds),
            med(r.decode_s for r in rounds),
            med(r.tools_s for r in rounds),
            med(r.model_s for r in rounds),
        )
    t = [v.timings for v in verdicts]
    table.add_row(
        "total",
        str(verdicts[0].prefill_tokens),
        str(verdicts[0].generated_tokens),
        med(x.prefill_s for x in t),
        med(x.decode_s for x in t),
        med(x.tools_s for x in t),
        f"verdict {med(x.total_s for x in t)}",
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", type=int, default=50)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--hf", action="store_true", help="Also time the tiny hf model (needs the hf extra).")
    parser.add_argument("--hf-parts", type=int, default=5)
    args = parser.parse_args()
    console = Console(width=150)
    console.print(scripted_section(args.parts, args.size))
    console.print("ms/part: median time to verdict; loop = everything but the model and the tools.")
    if args.hf:
        console.print(hf_section(args.hf_parts))
        console.print("model call = prefill + decode + the hand-off to the model thread; times are medians.")


if __name__ == "__main__":
    main()
