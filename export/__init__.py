"""ONNX export of latent-vla world models (``export.exporter``, needs PyTorch) and the PyTorch-free
runtime (``export.runtime``, numpy + onnxruntime only). Import the modules you need directly; this
package imports nothing, so ``import export.runtime`` never pulls in PyTorch.
"""
