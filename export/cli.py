"""`indus export`: turn a checkpoint into an edge runtime's format."""

from __future__ import annotations

from pathlib import Path

import click

from station.backends import BackendError


@click.group()
def export() -> None:
    """Export a Qwen3-VL checkpoint for edge runtimes (ONNX for onnxruntime)."""


@export.command()
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quant", type=click.Choice(["none", "int8", "fp16"]), default="none", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="New folder.")
@click.option("--image-size", type=int, help="Square side the vision graph takes (default: the processor's).")
def onnx(model_dir: Path, quant: str, out: Path, image_size: int | None) -> None:
    """Export MODEL as three ONNX graphs (vision encoder, embeddings, decoder with KV cache), its processor
    and a manifest; run it with `--backend onnx --model OUT`."""
    try:
        from export.onnx import export_onnx
    except ImportError as exc:
        raise click.ClickException(f"ONNX export needs the 'onnx' extra: {exc}") from exc
    try:
        manifest = export_onnx(
            model_dir, out, quant, image_size=(image_size, image_size) if image_size else None
        )
    except (BackendError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out} ({quant}); manifest: {out / 'manifest.json'}")
    click.echo(f"files: {', '.join(sorted(manifest.files))}")
