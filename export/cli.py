"""`indus export`: turn a checkpoint into an edge runtime's format."""

from __future__ import annotations

import json
from pathlib import Path

import click

from station.backends import BackendError


@click.group()
def export() -> None:
    """Export a Qwen3-VL checkpoint for edge runtimes (ONNX for onnxruntime, GGUF for llama.cpp)."""


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


@export.command()
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--export", "export_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--synthetic", type=click.IntRange(min=1), help="Generated parts to check (without --images).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic parts.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--min-token-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True)
@click.option("--min-verdict-agreement", type=click.FloatRange(0, 1), default=0.95, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def check(
    model_dir: Path,
    export_dir: Path,
    images: tuple[Path, ...],
    synthetic: int | None,
    seed: int,
    max_new_tokens: int,
    min_token_agreement: float,
    min_verdict_agreement: float,
    as_json: bool,
) -> None:
    """Run MODEL (torch, CPU fp32) and the export in EXPORT (onnx or gguf, on the CPU) through the same
    greedy agent loop and fail when their turns or verdicts agree less than the bars; the result goes into
    the export's manifest."""
    if bool(images) == bool(synthetic):
        raise click.UsageError("give either --images or --synthetic N")
    from export.parity import check_export, synthetic_parts
    from tools.image import load_image

    try:
        parts = [(str(p), load_image(p)) for p in images] if images else synthetic_parts(synthetic, seed)
        result = check_export(
            model_dir,
            export_dir,
            parts,
            max_new_tokens=max_new_tokens,
            min_token_agreement=min_token_agreement,
            min_verdict_agreement=min_verdict_agreement,
        )
    except (BackendError, OSError, ValueError) as exc:  # an unreadable image is a ValueError
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for name, part in result["parts"].items():
            verdicts = part["verdicts"]
            click.echo(
                f"{name}: tokens {part['token_agreement']:.4f}, verdict "
                f"{'same' if part['verdict_equal'] else 'DIFFERENT'} "
                f"(torch {verdicts['torch']['decision']}, {result['format']} "
                f"{verdicts[result['format']]['decision']})"
            )
        click.echo(
            f"overall: token agreement {result['token_agreement']:.4f}, verdict agreement "
            f"{result['verdict_agreement']:.4f}, forced-turn greedy agreement "
            f"{result['forced_greedy_agreement']:.4f}, max |dlogit| {result['max_abs_logit_diff']:.2e}"
        )
    if not result["passed"]:
        raise click.ClickException(f"export check failed: {'; '.join(result['failures'])}")
    click.echo(f"export check passed; parity recorded in {export_dir / 'manifest.json'}")


@export.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--quant", type=click.Choice(["f16", "q8_0", "q4_k_m"]), default="q8_0", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="New folder.")
@click.option(
    "--fetch-converter", is_flag=True, help="First fetch llama.cpp's converter (llama-cpp-python sdist)."
)
def gguf(model_dir: Path | None, quant: str, out: Path | None, fetch_converter: bool) -> None:
    """Export MODEL as a GGUF text model and an mmproj (llama.cpp's own converter) with a manifest; run it
    with `--backend gguf --model OUT`, check it with `indus export check`."""
    try:
        from export.gguf import export_gguf
        from export.gguf import fetch_converter as fetch
    except ImportError as exc:
        raise click.ClickException(f"GGUF export needs the 'gguf' extra: {exc}") from exc
    try:
        if fetch_converter:
            click.echo(f"converter: {fetch()}")
        if model_dir is None or out is None:
            if fetch_converter:
                return
            raise click.UsageError("--model and --out are required")
        manifest = export_gguf(model_dir, out, quant)
    except (BackendError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out} ({quant}); manifest: {out / 'manifest.json'}")
    click.echo(f"files: {', '.join(sorted(manifest.files))}")
