"""Text embedders: the protocol and batching (``base``), the model families (``hf``, ``sentence``,
``onnx_minilm``, ``static``) and the registry of offline models (``registry``)."""
