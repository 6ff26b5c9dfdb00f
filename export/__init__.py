"""Export to edge runtimes (GGUF, ONNX) with parity checks."""
