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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", type=int, default=50)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    console = Console(width=150)
    console.print(scripted_section(args.parts, args.size))
    console.print("ms/part: median time to verdict; loop = everything but the model and the tools.")


if __name__ == "__main__":
    main()
