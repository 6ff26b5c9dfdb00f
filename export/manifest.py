"""The manifest every export writes next to its files: what it was made from, how, and how well it matches.

An edge box runs whatever directory it is given; the manifest is what lets it (and an auditor) tell which
checkpoint, which quantization and which exporter produced the files, and whether they are still the files
that were checked. The GGUF export writes the same structure with its own ``format`` and file list.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """The manifest is missing, unreadable, or does not describe the files beside it."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_hash(model_dir: Path) -> str:
    """One hash over every safetensors file (names and contents): the weights, whatever the sharding."""
    digest = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ManifestError(f"{model_dir} has no .safetensors weights to hash")
    for path in files:
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def package_versions(*names: str) -> dict[str, str | None]:
    """Installed versions (None where missing): exporter behaviour moves with them."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass
class Manifest:
    format: str  # "onnx", "gguf"
    source: dict[str, str]  # path and safetensors_sha256 of the checkpoint
    quantization: str
    files: dict[str, dict[str, Any]]  # relative path -> {"sha256", "bytes"}
    exporter: dict[str, str | None]
    extra: dict[str, Any] = field(default_factory=dict)  # format-specific facts (the ONNX image grid, ...)
    parity: dict[str, Any] = field(default_factory=dict)  # filled by the parity check

    @classmethod
    def describe(
        cls,
        out_dir: Path,
        files: list[str],
        *,
        format: str,
        model_dir: Path,
        quantization: str,
        exporter: dict[str, str | None],
        extra: dict[str, Any] | None = None,
    ) -> Manifest:
        """A manifest for ``files`` (relative to ``out_dir``) as they are on disk now."""
        return cls(
            format=format,
            source={"path": str(model_dir.resolve()), "safetensors_sha256": checkpoint_hash(model_dir)},
            quantization=quantization,
            files={
                name: {"sha256": sha256_file(out_dir / name), "bytes": (out_dir / name).stat().st_size}
                for name in files
            },
            exporter=exporter,
            extra=dict(extra or {}),
        )

    def write(self, out_dir: Path) -> Path:
        path = out_dir / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, out_dir: Path) -> Manifest:
        path = out_dir / MANIFEST
        if not path.is_file():
            raise ManifestError(f"{out_dir} has no {MANIFEST}: not an export directory")
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:  # bad JSON, missing or unknown keys
            raise ManifestError(f"{path} is corrupted: {exc}") from exc

    def check_files(self, out_dir: Path, *, hashes: bool = False) -> None:
        """Every listed file present with its size (and with ``hashes`` its content: slow for big models)."""
        for name, facts in self.files.items():
            path = out_dir / name
            if not path.is_file():
                raise ManifestError(f"{path} is listed in {MANIFEST} but missing")
            if path.stat().st_size != facts["bytes"] or (hashes and sha256_file(path) != facts["sha256"]):
                raise ManifestError(f"{path} is not the file {MANIFEST} describes (size or hash differ)")
