"""Options shared by the commands that run the agent (`indus inspect`, `indus validate`), defined once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import click

from station.agent_config import AgentConfig
from station.backends import BACKENDS, Backend, BackendError, load_backend


@dataclass(frozen=True)
class ModelChoice:
    """Which model to run and how to reach it, as given on the command line."""

    backend: str
    model: str | None
    adapter: str | None
    device: str
    base_url: str | None

    @property
    def resolved_model(self) -> str | None:
        """The model with ``demo`` (hf) replaced by the directory of the shipped demo model."""
        if self.model != "demo" or self.backend != "hf":
            return self.model
        from station.models import resolve_model

        try:
            return resolve_model(self.model)
        except FileNotFoundError as exc:
            raise click.ClickException(str(exc)) from exc

    def load(self) -> Backend:
        if not self.model:
            raise click.UsageError("missing --model")
        try:
            return load_backend(
                self.backend,
                self.resolved_model,
                adapter=self.adapter,
                device=self.device,
                base_url=self.base_url,
            )
        except BackendError as exc:
            raise click.ClickException(str(exc)) from exc


def _apply(func: Callable, options: list[Callable]) -> Callable:
    for option in reversed(options):
        func = option(func)
    return func


def model_options(required: bool = True) -> Callable[[Callable], Callable]:
    """--model, --backend, --adapter, --base-url, --device: passed on as ``model_choice``."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, model, backend, adapter, base_url, device, **kwargs):
            return func(*args, model_choice=ModelChoice(backend, model, adapter, device, base_url), **kwargs)

        return _apply(
            wrapper,
            [
                click.option(
                    "--model",
                    required=required,
                    help="Model directory or `demo` (hf), server model name (openai) or script (scripted).",
                ),
                click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True),
                click.option(
                    "--adapter", type=click.Path(file_okay=False), help="LoRA adapter directory (hf)."
                ),
                click.option(
                    "--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (openai)."
                ),
                click.option(
                    "--device",
                    default="auto",
                    show_default=True,
                    help="auto, cpu, cuda or cuda:N (hf); cpu keeps onnx and gguf off the GPU.",
                ),
            ],
        )

    return decorate


def agent_options(func: Callable) -> Callable:
    """The inspection limits: passed on as ``agent_config``."""

    @functools.wraps(func)
    def wrapper(*args, deadline_s, max_tool_calls, max_new_tokens, threshold, mm_per_px, **kwargs):
        config = AgentConfig(
            deadline_s=deadline_s,
            max_tool_calls=max_tool_calls,
            max_new_tokens=max_new_tokens,
            threshold=threshold,
            mm_per_px=mm_per_px,
        )
        return func(*args, agent_config=config, **kwargs)

    return _apply(
        wrapper,
        [
            click.option(
                "--deadline",
                "deadline_s",
                type=click.FloatRange(min=0, min_open=True),
                default=60.0,
                show_default=True,
                help="Seconds per image before a fail-safe.",
            ),
            click.option("--max-tool-calls", type=click.IntRange(0, 64), default=6, show_default=True),
            click.option("--max-new-tokens", type=click.IntRange(1, 32768), default=512, show_default=True),
            click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True),
            click.option(
                "--mm-per-px", type=click.FloatRange(min=0, min_open=True), help="Pixel scale for measure."
            ),
            click.option(
                "--priors",
                "prior_dirs",
                multiple=True,
                type=click.Path(),
                help="Extra prior files or folders.",
            ),
        ],
    )
