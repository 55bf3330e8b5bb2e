"""Precision variants of exported graphs: fp16 and int8 (export side only).

* fp16: weights and activations in float16, inputs/outputs kept float32 (``keep_io_types``), so the
  runtime feeds every variant the same arrays.
* int8 dynamic: weights int8, activations quantized on the fly; for MLP graphs (the policy).
* int8 static QDQ: weights and activations int8 with scales from a calibration set; for the CNN
  encoder. Only Conv / MatMul / Gemm are quantized, so normalizations and softmaxes stay float, and
  so do the small layers that read the state / task inputs or a softmax map (:func:`float_kept_nodes`).

On a plain x86 CPU int8 is usually not faster for models this small (NOTES.md); it pays off in size
and on TensorRT / edge accelerators. ``benchmarks/export_latency.py`` measures it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx

log = logging.getLogger("latent_vla.export")

QUANT_OPS = ["Conv", "MatMul", "Gemm"]


def to_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write a float16 copy of ``src`` with float32 inputs and outputs; returns ``dst``."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(half, str(dst))
    return Path(dst)


def _preprocess(src: str | os.PathLike[str], tmp_dir: str) -> str:
    """Shape inference + graph optimization that onnxruntime recommends before quantizing."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = os.path.join(tmp_dir, "pre.onnx")
    quant_pre_process(str(src), out, skip_symbolic_shape=True)
    return out


def to_int8_dynamic(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Dynamic int8 quantization of MatMul/Gemm weights (for MLP graphs); returns ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        pre = _preprocess(src, tmp)
        quantize_dynamic(
            pre,
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            reduce_range=True,  # 7-bit weights: u8 x s8 products saturate on x86 CPUs without VNNI
        )
    return Path(dst)


class _Reader:
    """``CalibrationDataReader`` over a list of feed dicts."""

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]]) -> None:
        self._it = iter(list(feeds))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def float_kept_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul / Gemm nodes that stay float in static int8 quantization.

    * Those that read a graph input directly (the joint state, the task embedding): uint8 activations
      would clip any value outside the calibration frames' range, and an arm's joints or an unseen
      instruction easily leave it; these layers are tiny, the convolutions are where int8 pays.
    * Those that read a Softmax output (spatial-softmax keypoints): a probability map of ~1/1000 per
      pixel would mostly round to zero and move the keypoints by whole cells.
    """
    inputs = {i.name for i in model.graph.input}
    producer = {out: node for node in model.graph.node for out in node.output}

    def keep(node: onnx.NodeProto) -> bool:
        if node.op_type not in ("MatMul", "Gemm"):
            return False
        return any(i in inputs or (i in producer and producer[i].op_type == "Softmax") for i in node.input)

    return [node.name for node in model.graph.node if keep(node)]


def to_int8_static(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], calibration: Iterable[Mapping[str, np.ndarray]]
) -> Path:
    """Static QDQ int8 quantization with per-channel weights, calibrated on ``calibration`` feeds.

    Args:
        src: float32 ONNX graph.
        dst: output path.
        calibration: feed dicts (input name -> array), e.g. one observation each.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    feeds = list(calibration)
    if not feeds:
        raise ValueError("static int8 quantization needs at least one calibration input")
    with tempfile.TemporaryDirectory() as tmp:
        pre = _preprocess(src, tmp)
        exclude = float_kept_nodes(onnx.load(pre))
        quantize_static(
            pre,
            str(dst),
            _Reader(feeds),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,  # 7-bit weights: u8 x s8 products saturate on x86 CPUs without VNNI
            op_types_to_quantize=QUANT_OPS,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=exclude,
        )
    return Path(dst)
