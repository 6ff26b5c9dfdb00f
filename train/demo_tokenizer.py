"""The demo model's tokenizer: a byte-level BPE trained on the very text the demo model reads and writes.

The tests' tiny tokenizer (768 merges over the protocol's vocabulary) spells many words in pieces, and a
4 M-parameter LM trained on it misspelt them ("centralient"). This one learns its merges from a small
programmatic Indus-CoT build over every synthetic part family, in both teacher styles, rendered through the
chat template with tool outputs included, so the words and JSON keys the model meets become single tokens: a
trajectory is ~22% shorter (1,298 tokens instead of 1,668 on average), which every SFT step and every
inspection pays for. It cannot go much further: Qwen's pre-tokeniser never merges across words, digits or
punctuation, and the system prompt with its tools block is ~1,000 such pieces. Same pre-tokeniser and
special tokens as Qwen's, so the station, the exporters and llama.cpp treat it as any Qwen tokenizer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from transformers import Qwen2Tokenizer

from station.backends.hf.tiny import build_tokenizer
from station.protocol import render_chat

DEMO_VOCAB_SIZE = 4096  # byte-level BPE before the added tokens; the corpus is what bounds it in practice
CORPUS_SEED = 7  # the parts whose trajectories make the corpus: a stream no stage trains or validates on


def demo_corpus(parts_per_category: int = 2, size: int = 128) -> list[str]:
    """Rendered trajectories (system prompt, tools, turns, tool outputs) of both teacher styles."""
    if parts_per_category < 2:
        raise ValueError("parts_per_category must be at least 2: one good and one defective part")
    from calibration.datasets import open_dataset
    from calibration.synth import write_dataset
    from train.cot import ProgrammaticTeacher, build_trajectories, load_trajectories

    texts = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root / "parts", parts_per_category, CORPUS_SEED, size)
        samples = list(open_dataset(f"synth:{root / 'parts'}").samples())
        for style in ("rich", "terse"):
            out = root / style
            teacher = ProgrammaticTeacher(direct_ratio=0.2, prior_ratio=0.5, style=style)
            build_trajectories(samples, out, seed=CORPUS_SEED, teacher=teacher)
            texts += [render_chat(t.messages, t.tools) for t in load_trajectories(out)]
    return texts


def build_demo_tokenizer() -> Qwen2Tokenizer:
    return build_tokenizer(DEMO_VOCAB_SIZE, demo_corpus())
