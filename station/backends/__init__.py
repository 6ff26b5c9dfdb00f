"""Model backends behind one interface (`base`): hf, scripted, openai.

Backends with heavy dependencies are imported only when asked for, so the station and its tests run
without torch or the openai client installed.
"""

from __future__ import annotations

from station.backends.base import Backend, BackendError, Generation, Session

BACKENDS = ("hf", "onnx", "scripted", "openai")


def load_backend(
    kind: str,
    model: str,
    *,
    adapter: str | None = None,
    device: str = "auto",
    base_url: str | None = None,
) -> Backend:
    """Open a backend by name. ``model`` is a directory (hf), an export directory (onnx), a script spec
    (scripted) or a server-side model name (openai)."""
    if kind == "scripted":
        from station.backends.scripted import ScriptedBackend

        try:
            return ScriptedBackend.from_spec(model)
        except ValueError as exc:
            raise BackendError(str(exc)) from exc
    if kind == "hf":
        try:
            from station.backends.hf import HFBackend
        except ImportError as exc:
            raise BackendError(
                f"the hf backend needs the 'hf' extra (pip install 'indus-station[hf]'): {exc}"
            ) from exc
        return HFBackend(model, adapter_dir=adapter, device=device)
    if kind == "onnx":
        try:
            import onnxruntime

            from station.backends.onnx import OnnxBackend
            from station.backends.onnx.backend import GPU_PROVIDERS
        except ImportError as exc:
            raise BackendError(f"the onnx backend needs the 'onnx' (CPU) or 'gpu' extra: {exc}") from exc
        gpu = device != "cpu" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        return OnnxBackend(model, providers=GPU_PROVIDERS if gpu else ("CPUExecutionProvider",))
    if kind == "openai":
        if not base_url:
            raise BackendError("the openai backend needs --base-url, e.g. http://127.0.0.1:8000/v1")
        try:
            from station.backends.openai import OpenAIBackend
        except ImportError as exc:
            raise BackendError(f"the openai backend needs the 'openai' extra: {exc}") from exc
        return OpenAIBackend(base_url, model)
    raise BackendError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "BackendError", "Generation", "Session", "load_backend"]
