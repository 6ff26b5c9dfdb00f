"""Model backends behind one interface (`base`): hf, onnx, gguf, scripted, openai.

Backends with heavy dependencies are imported only when asked for, so the station and its tests run
without torch or the openai client installed.
"""

from __future__ import annotations

from station.backends.base import Backend, BackendError, Generation, Session

BACKENDS = ("hf", "onnx", "gguf", "scripted", "openai")


def load_backend(
    kind: str,
    model: str,
    *,
    adapter: str | None = None,
    device: str = "auto",
    base_url: str | None = None,
) -> Backend:
    """Open a backend by name. ``model`` is a directory (hf), an export directory (onnx, gguf), a script spec
    (scripted) or a server-side model name (openai). ``device="cpu"`` keeps onnx and gguf off the GPU."""
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
    if kind == "gguf":
        try:
            import llama_cpp

            from station.backends.gguf import GGUFBackend
        except ImportError as exc:
            raise BackendError(
                "the gguf backend needs the 'gguf' extra (pip install 'indus-station[gguf]'; "
                f"llama-cpp-python builds from source, see the README): {exc}"
            ) from exc
        # auto: every layer on the GPU when llama.cpp was built with one; cuda: asked for (warns if not)
        gpu = device != "cpu" and (device != "auto" or llama_cpp.llama_supports_gpu_offload())
        return GGUFBackend(model, n_gpu_layers=-1 if gpu else 0)
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
