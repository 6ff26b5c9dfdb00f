"""Limits and settings of one inspection, validated on construction (product recipes override them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tool_calls: int = Field(6, ge=0, le=64, description="Tool calls allowed per part before a fail-safe.")
    max_tool_errors: int = Field(
        1,
        ge=0,
        le=16,
        description="Failed tool calls (unknown tool, bad arguments) the model may correct; one more is a "
        "fail-safe.",
    )
    max_new_tokens: int = Field(512, ge=1, le=32768, description="Tokens the model may write per round.")
    deadline_s: float = Field(10.0, gt=0, description="Wall-clock budget from the start of the inspection.")
    threshold: float = Field(
        0.5, ge=0, le=1, description="Reject when the defect probability (confidence) is at least this."
    )
    max_observation_pixels: int = Field(
        512 * 512, ge=28 * 28, description="Largest image a tool returns, in pixels (bounds image tokens)."
    )
    instruction: str | None = Field(None, description="Replaces the default inspection request.")
    mm_per_px: float | None = Field(
        None, gt=0, description="Pixel scale for measure; pixels only when unset."
    )
