"""The station's configuration: one YAML file, validated by Pydantic, with errors that name the field.

Product recipes carry what differs between products on one line (prior, deadline, tool limits, threshold);
a frame's ``product`` header selects its recipe. Relative paths are resolved against the config file's folder,
so a config and its model and database can move together.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from station.agent_config import AgentConfig
from station.camera.zmq_source import CameraConfig
from station.plc.config import PlcConfig


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and every bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    backend: Literal["hf", "onnx", "gguf", "scripted", "openai"] = "hf"
    model: str = Field(
        description="Model directory (hf), export directory (onnx, gguf), server model name (openai), "
        "or script (scripted)."
    )
    adapter: str | None = Field(None, description="LoRA adapter directory on top of the model (hf).")
    device: str = Field(
        "auto", description="auto, cpu, cuda or cuda:N (hf); cpu keeps onnx and gguf off the GPU."
    )
    base_url: str | None = Field(None, description="OpenAI-compatible server URL (openai).")


class ProductRecipe(_Strict):
    category: str | None = Field(None, description="Prior to retrieve; the product name when unset.")
    deadline_ms: float = Field(2000, gt=0, description="Budget from capture to the PLC's ACK.")
    threshold: float = Field(
        0.5, ge=0, le=1, description="Reject when the defect probability is at least this."
    )
    max_tool_calls: int = Field(6, ge=0, le=64)
    max_tool_errors: int = Field(1, ge=0, le=16)
    max_new_tokens: int = Field(512, ge=1, le=32768)
    instruction: str | None = None
    mm_per_px: float | None = Field(None, gt=0, description="Pixel scale for the measure tool.")

    def agent_config(self, deadline_s: float, max_observation_pixels: int) -> AgentConfig:
        return AgentConfig(
            max_tool_calls=self.max_tool_calls,
            max_tool_errors=self.max_tool_errors,
            max_new_tokens=self.max_new_tokens,
            deadline_s=deadline_s,
            threshold=self.threshold,
            max_observation_pixels=max_observation_pixels,
            instruction=self.instruction,
            mm_per_px=self.mm_per_px,
        )


class AuditConfig(_Strict):
    path: Path = Path("indus-audit.db")
    evidence_dir: Path | None = Path("indus-evidence")
    keep_evidence: Literal["rejects", "all", "none"] = "rejects"
    max_evidence_parts: int = Field(2000, ge=0)
    max_evidence_mb: float = Field(1024, ge=0)


class HttpConfig(_Strict):
    enabled: bool = True
    host: str = Field("127.0.0.1", description="Bind address; anything but loopback exposes the page.")
    port: int = Field(9400, ge=0, le=65535)


class StationConfig(_Strict):
    camera: CameraConfig = Field(default_factory=CameraConfig)
    plc: PlcConfig = Field(default_factory=PlcConfig)
    model: ModelConfig
    products: dict[str, ProductRecipe] = Field(default_factory=dict)
    default_recipe: ProductRecipe = Field(
        default_factory=ProductRecipe, description="Used for frames whose product has no recipe."
    )
    priors: list[Path] = Field(default_factory=list, description="Extra prior files or folders.")
    audit: AuditConfig = Field(default_factory=AuditConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    queue_size: int = Field(
        4, ge=1, le=1024, description="Frames waiting for the model before back-pressure."
    )
    plc_reserve_ms: float = Field(
        50, ge=0, description="Part of each deadline kept for delivering the verdict to the PLC."
    )
    max_observation_pixels: int = Field(512 * 512, ge=28 * 28)

    def recipe(self, product: str | None) -> tuple[str | None, ProductRecipe]:
        """The prior name and recipe for a frame's product."""
        recipe = self.products.get(product or "", self.default_recipe)
        return recipe.category or product, recipe

    @property
    def version(self) -> str:
        """A short hash of the effective configuration, recorded with every audited part."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @classmethod
    def from_yaml(cls, path: str | Path) -> StationConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (camera, plc, model, products, ...)")
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            lines = [f"{path}: {exc.error_count()} problem(s):"]
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(top level)"
                lines.append(f"  {where}: {err['msg']}")
            raise ConfigError("\n".join(lines)) from None
        return config.resolve_paths(path.parent)

    def resolve_paths(self, base: Path) -> StationConfig:
        def rel(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else base / p

        audit = self.audit.model_copy(
            update={
                "path": rel(self.audit.path),
                "evidence_dir": rel(self.audit.evidence_dir),
            }
        )
        model = self.model
        local = model.backend in ("hf", "onnx", "gguf")  # the model is a directory on this machine
        if local and not Path(model.model).is_absolute() and (base / model.model).exists():
            model = model.model_copy(update={"model": str(base / model.model)})
        priors = [rel(p) for p in self.priors]
        return self.model_copy(update={"audit": audit, "model": model, "priors": priors})
