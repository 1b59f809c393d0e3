"""Recover a Hugging Face state dict from an ONNX export of ``Dinov2Model``.

The exporter keeps most parameters under their own names, but stores each linear weight as an anonymous
``onnx::MatMul_*`` tensor, transposed, whose consumer node names the layer
(``/backbone/encoder/layer.0/mlp/fc1/MatMul``); a position embedding that the graph interpolates may be
split into its cls part (consumed by a Concat) and its patch grid (consumed by a Reshape).
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..config import WeightsError

_MATMUL_NODE = re.compile(r"^/(?:[\w.]+/)*?((?:embeddings|encoder)/[\w./]+?)/MatMul(?:_\d+)?$")


def read_onnx(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Return the float tensors of the graph in Hugging Face naming (prefixes such as ``backbone.`` kept)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - onnx is in requirements.txt
        raise WeightsError("converting ONNX needs the 'onnx' package: pip install onnx") from None
    try:
        model = onnx.load(os.fspath(path))
    except Exception as e:  # onnx raises protobuf DecodeError and several others for bad files
        raise WeightsError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                consumers.setdefault(name, []).append(node)

    state: dict[str, np.ndarray] = {}
    cls_pos = patch_pos = None
    prefix = ""
    for name, tensor in inits.items():
        if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
            continue
        array = numpy_helper.to_array(tensor).astype(np.float32)
        if not name.startswith("onnx::"):
            state[name] = array
            if name.endswith("embeddings.cls_token"):
                prefix = name[: -len("embeddings.cls_token")]
            continue
        for node in consumers.get(name, []):
            m = _MATMUL_NODE.match(node.name) if node.op_type == "MatMul" else None
            if m and array.ndim == 2:
                state[m.group(1).replace("/", ".") + ".weight"] = array.T
            elif "/embeddings/" in node.name and node.op_type == "Concat" and array.ndim == 3 and array.shape[1] == 1:
                cls_pos = array
            elif "/embeddings/" in node.name and node.op_type == "Reshape" and array.ndim == 3:
                patch_pos = array
    if prefix:
        state = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
    if "embeddings.position_embeddings" not in state and cls_pos is not None and patch_pos is not None:
        state["embeddings.position_embeddings"] = np.concatenate([cls_pos, patch_pos], axis=1)
    return state
