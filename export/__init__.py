"""snnchip.export: checkpoint <-> NIR, the NIR reference executor, Loihi fixed-point quantization, ONNX, netx."""
