"""Qwen3-VL to GGUF for llama.cpp: a text model GGUF and a vision projector (mmproj) GGUF.

Conversion is llama.cpp's own ``convert_hf_to_gguf.py`` (run as a subprocess, never re-implemented here): it
is not in the llama-cpp-python wheel nor in the ``gguf`` package, only in llama.cpp itself, which the
llama-cpp-python sdist vendors under ``vendor/llama.cpp`` (NOTES). `find_converter` looks for it in
``$INDUS_LLAMA_CPP_DIR`` then in the cache `fetch_converter` fills from that sdist.

The converter refuses a tokenizer whose pre-tokenizer it does not recognise by hash (a home-trained BPE such
as the tiny test model's); Qwen3-VL tokenizers split text with Qwen2's regex, so an unrecognised hash falls
back to ``pre_tokenizer`` ("qwen2") and the manifest says so. Real Qwen checkpoints are recognised as is.

The text model is converted to f16 and then, for ``q8_0`` / ``q4_k_m``, quantized by llama.cpp
(``llama_model_quantize``); the mmproj stays f16 (small next to the text model; quantizing it is untested).
Q4_K_M needs rows that are multiples of 256: narrower tensors (the tiny model's 64-wide ones) fall back
to other types.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Literal

from export.manifest import Manifest, package_versions
from station.backends.base import BackendError
from station.backends.hf.loading import check_model_dir
from station.backends.hf.processor import PREPROCESSOR_CONFIG, QwenVLImageProcessor

log = logging.getLogger(__name__)

Quant = Literal["f16", "q8_0", "q4_k_m"]
QUANTS: tuple[str, ...] = ("f16", "q8_0", "q4_k_m")
MODEL, MMPROJ = "model.gguf", "mmproj.gguf"
CONVERTER = "convert_hf_to_gguf.py"
ENV_DIR = "INDUS_LLAMA_CPP_DIR"
# llama.cpp's llama_ftype names (include/llama.h), as llama_cpp exports them
FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
# Runs the converter with one change: an unrecognised pre-tokenizer hash falls back to the named one.
_SHIM = """
import os, sys
from pathlib import Path
path = Path(sys.argv[1])
sys.argv = [str(path), *sys.argv[2:]]
sys.path[:0] = [str(path.parent), str(path.parent / "gguf-py")]
packaged = (path.parent / "conversion").is_dir()  # newer llama.cpp: the classes are in `conversion`
if packaged:
    from conversion import base
else:
    import convert_hf_to_gguf as base
original = base.TextModel.get_vocab_base_pre
fallback = os.environ["INDUS_GGUF_PRE_TOKENIZER"]
def get_vocab_base_pre(self, tokenizer):
    try:
        return original(self, tokenizer)
    except NotImplementedError:
        print(f"INDUS: unrecognised pre-tokenizer hash, using {fallback!r}", file=sys.stderr)
        return fallback
base.TextModel.get_vocab_base_pre = get_vocab_base_pre
if packaged:
    import runpy
    runpy.run_path(str(path), run_name="__main__")
else:
    base.main()
"""


class ConverterNotFound(BackendError):
    """llama.cpp's convert_hf_to_gguf.py is not available; `fetch_converter` or $INDUS_LLAMA_CPP_DIR."""


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "indus"


def _llama_cpp_version() -> str | None:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return None


def find_converter() -> Path:
    """``convert_hf_to_gguf.py`` from $INDUS_LLAMA_CPP_DIR (a llama.cpp tree or an extracted llama-cpp-python
    sdist), else from the cache `fetch_converter` fills for the installed llama-cpp-python version."""
    candidates: list[Path] = []
    if root := os.environ.get(ENV_DIR):
        candidates += [Path(root) / CONVERTER, Path(root) / "vendor" / "llama.cpp" / CONVERTER]
    if version := _llama_cpp_version():
        candidates.append(_cache_root() / f"llama-cpp-python-{version}" / "vendor" / "llama.cpp" / CONVERTER)
    for path in candidates:
        if path.is_file():
            return path
    where = ", ".join(str(p) for p in candidates) or "(llama-cpp-python is not installed)"
    raise ConverterNotFound(
        f"llama.cpp's {CONVERTER} not found (looked in {where}); set {ENV_DIR} to a llama.cpp checkout "
        "or run export.gguf.fetch_converter() (`indus export gguf --fetch-converter`)"
    )


def fetch_converter(sdist: str | Path | None = None) -> Path:
    """Extract llama.cpp's converter (with its ``conversion`` package and ``gguf-py``) from the
    llama-cpp-python sdist into the cache.

    ``sdist``: a downloaded ``llama_cpp_python-<version>.tar.gz``; without it pip downloads the sdist of the
    installed version (the converter must match the runtime that loads its output).
    """
    version = _llama_cpp_version()
    if version is None:
        raise ConverterNotFound("llama-cpp-python is not installed: install the 'gguf' extra first")
    dest = _cache_root() / f"llama-cpp-python-{version}"
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            # the sdist only: ":all:" would also build its build dependencies from source
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python"]
            subprocess.run([*pip, f"llama-cpp-python=={version}", "-d", tmp], check=True)
            sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        wanted = (prefix + CONVERTER, prefix + "gguf-py/", prefix + "conversion/")
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(wanted) and m.isfile()]
            if not members:
                raise ConverterNotFound(f"{sdist} has no {prefix}{CONVERTER}")
            staging = Path(tmp) / "extract"
            if any(".." in Path(m.name).parts for m in members):
                raise ConverterNotFound(f"{sdist} has unsafe paths: refusing to extract it")
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python < 3.10.12
            archive.extractall(staging, members=members, **safe)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging / f"llama_cpp_python-{version}", dest)
    return dest / "vendor" / "llama.cpp" / CONVERTER


def _convert(converter: Path, model_dir: Path, outfile: Path, *, mmproj: bool, pre_tokenizer: str) -> bool:
    """Run the converter; True when it fell back to ``pre_tokenizer``."""
    args = [sys.executable, "-c", _SHIM, str(converter), str(model_dir), "--outfile", str(outfile)]
    args += ["--outtype", "f16"] + (["--mmproj"] if mmproj else [])
    env = {**os.environ, "INDUS_GGUF_PRE_TOKENIZER": pre_tokenizer}
    env.pop("NO_LOCAL_GGUF", None)  # use the gguf-py that ships with this converter
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not outfile.is_file():
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BackendError(f"{converter.name} failed on {model_dir} (exit {result.returncode}):\n{tail}")
    return "INDUS: unrecognised pre-tokenizer hash" in result.stderr


def _quantize(src: Path, dst: Path, quant: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[quant])
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if status != 0 or not dst.is_file():
        raise BackendError(f"llama_model_quantize {quant} failed on {src} (status {status})")


def image_bounds(model_dir: Path) -> dict[str, int]:
    """The checkpoint's image geometry, which the mmproj does not carry: llama.cpp would otherwise size
    Qwen-VL images between its own defaults (8 to 4096 tokens), not the checkpoint's ``min/max_pixels``."""
    try:
        config = json.loads((model_dir / PREPROCESSOR_CONFIG).read_text(encoding="utf-8"))
        processor = QwenVLImageProcessor.from_config(config)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot read {model_dir / PREPROCESSOR_CONFIG}: {exc}") from exc
    return {
        "patch_size": processor.patch_size,
        "merge_size": processor.merge_size,
        "min_pixels": processor.min_pixels,
        "max_pixels": processor.max_pixels,
    }


def export_gguf(
    model_dir: str | Path,
    out_dir: str | Path,
    quant: Quant = "f16",
    *,
    pre_tokenizer: str = "qwen2",
) -> Manifest:
    """Write ``model.gguf`` (text, ``quant``), ``mmproj.gguf`` (vision, f16) and ``manifest.json`` (with the
    checkpoint's image bounds, which the gguf backend needs); run it with ``--backend gguf --model OUT``."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {', '.join(QUANTS)}, got {quant!r}")
    if check_model_dir(model_dir) != "qwen3_vl":
        raise BackendError(f"{model_dir}: only dense Qwen3-VL checkpoints are exported to GGUF here")
    converter = find_converter()
    bounds = image_bounds(model_dir)
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        f16 = Path(tmp) / "model-f16.gguf"
        fell_back = _convert(converter, model_dir, f16, mmproj=False, pre_tokenizer=pre_tokenizer)
        _convert(converter, model_dir, out_dir / MMPROJ, mmproj=True, pre_tokenizer=pre_tokenizer)
        if quant == "f16":
            shutil.move(f16, out_dir / MODEL)
        else:
            _quantize(f16, out_dir / MODEL, quant)
    if fell_back:
        log.warning("%s: pre-tokenizer not recognised by llama.cpp, exported as %r", model_dir, pre_tokenizer)
    manifest = Manifest.describe(
        out_dir,
        [MODEL, MMPROJ],
        format="gguf",
        model_dir=model_dir,
        quantization=quant,
        exporter={
            **package_versions("llama-cpp-python", "torch", "transformers", "sentencepiece"),
            "converter": str(converter),
        },
        extra={
            "model": MODEL,
            "mmproj": MMPROJ,
            "mmproj_quantization": "f16",
            "image_processor": bounds,
            "pre_tokenizer_fallback": pre_tokenizer if fell_back else None,
            "export_s": round(time.monotonic() - started, 2),
        },
    )
    manifest.write(out_dir)
    log.info("exported %s to %s (%s) in %.1f s", model_dir, out_dir, quant, manifest.extra["export_s"])
    return manifest
