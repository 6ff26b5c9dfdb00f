"""Fixtures shared across test packages."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Qwen3-VL checkpoint (seed 0), built once per test run; imports torch when used."""
    from station.backends.hf.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen3-vl", seed=0)


@pytest.fixture(scope="session")
def gguf_f16_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported to GGUF f16 (text model + mmproj), once per test run; skips without
    llama-cpp-python (the 'gguf' extra) or llama.cpp's converter."""
    pytest.importorskip("llama_cpp")
    from export.gguf import ConverterNotFound, export_gguf, find_converter

    try:
        find_converter()
    except ConverterNotFound as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("gguf") / "f16"
    export_gguf(tiny_model_dir, out, "f16")
    return out
