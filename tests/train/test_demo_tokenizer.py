"""The demo model's tokenizer: Qwen's special tokens, lossless, and shorter than the tiny one on real text."""

from __future__ import annotations

import pytest

from station.backends.hf.tiny import PROTOCOL_TOKENS, SPECIAL_TOKENS, build_tokenizer
from station.protocol import render_chat
from train.demo_tokenizer import build_demo_tokenizer, demo_corpus


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    texts = demo_corpus(size=96)
    assert len(texts) >= 12
    return texts


def test_it_round_trips_trajectories_and_keeps_the_protocols_tokens_whole(corpus):
    tokenizer = build_demo_tokenizer()
    for text in corpus[:6]:
        assert tokenizer.decode(tokenizer(text).input_ids) == text
    for token in (*SPECIAL_TOKENS, *PROTOCOL_TOKENS):
        assert len(tokenizer(token).input_ids) == 1, token
    assert tokenizer.eos_token == "<|im_end|>"


def test_it_spells_the_models_own_words_in_fewer_tokens_than_the_tiny_one(corpus):
    tiny, demo = build_tokenizer(), build_demo_tokenizer()
    text = "".join(corpus)
    assert len(demo(text).input_ids) < 0.85 * len(tiny(text).input_ids)
    assert demo.tokenize(" irregular") == ["Ġirregular"]


def test_the_corpus_is_rendered_chat_in_both_styles(corpus):
    assert all(text.startswith("<|im_start|>system\n") for text in corpus)
    assert any("The crop shows" in text for text in corpus)  # terse
    assert any("The crop of [" in text for text in corpus)  # rich
    assert render_chat([{"role": "user", "content": "x"}]) not in corpus
