"""Writers of serving formats (GGUF, ONNX) and adapters that run them for measurement."""
