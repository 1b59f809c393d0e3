"""Which numbers describe an image: the block, the pooling and the preprocessing behind one unit vector.

A ``Descriptor`` lives in the weights file's metadata (``"descriptor"``) and in every index manifest, so
that the gallery and each query are always described the same way. The default is the reference choice,
the last block's cls token after the final LayerNorm on the reference centre crop; ``tune-descriptor``
picks another by evaluation.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .model import Dinov2, Dinov2Output, normalize_rows
from .preprocess import ImageInput, input_box, preprocess

POOLINGS = ("cls", "mean", "gem", "cls+mean")
PREPROCESSINGS = ("center-crop", "whole")
# The reference input: a 224 x 224 crop of the picture resized to 256 on its shortest side. The whole image
# is shown at about as many pixels as the crop (size squared), so both cost the same; a smaller size scales both.
REFERENCE_SIZE = 224
RESIZE_PER_SIZE = 256 / 224
GEM_POWER = 3.0


@dataclass(frozen=True)
class Descriptor:
    """``block``: 0-based index of the block whose output is used (-1: the last). ``final_norm``: pass it
    through the model's final LayerNorm. ``pooling``: the cls token, the mean or GeM of the patch tokens,
    or the cls token and the patch mean each normalised and concatenated (twice the width).
    ``preprocessing``: the reference centre crop, or the whole image at about the crop's pixel count.
    ``size``: the model input's side in pixels (the crop's side, or the whole image at about ``size``
    squared pixels; positions are interpolated to its grid), a multiple of the patch size."""

    block: int = -1
    final_norm: bool = True
    pooling: str = "cls"
    preprocessing: str = "center-crop"
    size: int = REFERENCE_SIZE

    def __post_init__(self) -> None:
        if not 14 <= self.size <= 518:
            raise ValueError(f"descriptor size must be between 14 and 518 pixels, got {self.size}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{self.pooling}' (choose from {', '.join(POOLINGS)})")
        if self.preprocessing not in PREPROCESSINGS:
            raise ValueError(f"unknown preprocessing '{self.preprocessing}' (choose from {', '.join(PREPROCESSINGS)})")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Descriptor":
        """The spec as stored in metadata; unknown keys are refused rather than ignored."""
        extra = set(data) - {"block", "final_norm", "pooling", "preprocessing", "size"}
        if extra:
            raise ValueError(f"unknown descriptor fields: {', '.join(sorted(extra))}")
        return cls(block=int(data.get("block", -1)), final_norm=bool(data.get("final_norm", True)),
                   pooling=str(data.get("pooling", "cls")), preprocessing=str(data.get("preprocessing", "center-crop")),
                   size=int(data.get("size", REFERENCE_SIZE)))

    def to_dict(self) -> dict[str, Any]:
        """The spec for metadata; the reference size is left out, so that files and indexes made before
        sizes existed store what they stored."""
        data = asdict(self)
        if self.size == REFERENCE_SIZE:
            del data["size"]
        return data

    def resolved(self, model: Dinov2) -> "Descriptor":
        """The same spec with ``block`` as a non-negative index into ``model``'s blocks."""
        layers = model.config.num_layers
        if not -layers <= self.block < layers:
            raise ValueError(f"the descriptor uses block {self.block}, but the model has {layers}")
        if self.size % model.config.patch_size:
            raise ValueError(f"the descriptor's size {self.size} is not a multiple of the patch size "
                             f"{model.config.patch_size}")
        return Descriptor(self.block % layers, self.final_norm, self.pooling, self.preprocessing, self.size)

    def label(self) -> str:
        """A short name for tables: ``block 8 +norm cls, center-crop`` (``, 168 px`` when not the reference size)."""
        size = "" if self.size == REFERENCE_SIZE else f", {self.size} px"
        return f"block {self.block} {'+norm' if self.final_norm else 'raw'} {self.pooling}, {self.preprocessing}{size}"

    def width(self, model: Dinov2) -> int:
        """Length of the vectors this descriptor makes with ``model``."""
        return 2 * model.dim if self.pooling == "cls+mean" else model.dim


def descriptor_of(model: Dinov2) -> Descriptor:
    """The descriptor stored with the weights, resolved for the model; the reference one if none is."""
    data = model.metadata.get("descriptor")
    return (Descriptor.from_dict(data) if data else Descriptor()).resolved(model)


def prepare(image: ImageInput, descriptor: Descriptor, patch: int = 14, max_pixels: int | None = None) -> np.ndarray:
    """One image as model input (3, H, W) the way ``descriptor`` wants it."""
    if descriptor.preprocessing == "whole":
        return preprocess(image, dynamic=True, pixel_budget=descriptor.size ** 2, patch=patch, max_pixels=max_pixels)
    return preprocess(image, resize=_resize(descriptor), crop=descriptor.size, max_pixels=max_pixels)


def _resize(descriptor: Descriptor) -> int:
    """The shortest side a centre crop of ``descriptor.size`` is cut from (256 for the reference 224)."""
    return int(round(descriptor.size * RESIZE_PER_SIZE))


def run(model: Dinov2, pixels: np.ndarray, descriptors: Sequence[Descriptor]) -> Dinov2Output:
    """One forward pass that stops after the last block any of ``descriptors`` needs, keeping the raw
    output of every block they use."""
    blocks = sorted({d.resolved(model).block for d in descriptors})
    return model(pixels, intermediate_layers=blocks, depth=blocks[-1] + 1)


def pool(model: Dinov2, output: Dinov2Output, descriptor: Descriptor) -> np.ndarray:
    """Unit vectors (B, width) for ``descriptor`` from a pass made by ``run`` with it among the descriptors."""
    d = descriptor.resolved(model)
    tokens = output.intermediate[d.block]
    if d.final_norm:
        tokens = model.final_norm(tokens)
    first_patch = 1 + model.config.num_registers
    if d.pooling == "cls":
        return normalize_rows(tokens[:, 0])
    patches = tokens[:, first_patch:]
    if d.pooling == "gem":
        clamped = np.maximum(patches, np.float32(1e-6))
        return normalize_rows(np.power(np.mean(clamped ** GEM_POWER, axis=1), 1.0 / GEM_POWER).astype(np.float32))
    mean = normalize_rows(patches.mean(axis=1))
    if d.pooling == "mean":
        return mean
    return normalize_rows(np.concatenate([normalize_rows(tokens[:, 0]), mean], axis=1))


def by_shape(embed: Callable[[np.ndarray], np.ndarray], pixels: Sequence[np.ndarray]) -> np.ndarray:
    """``embed`` over preprocessed images (3, H, W) that may differ in shape (whole-image preprocessing):
    each run of one shape is one batch; rows come back in input order."""
    return np.concatenate([embed(np.stack(list(run))) for _, run in itertools.groupby(pixels, key=lambda p: p.shape)])


def describe(model: Dinov2, pixels: np.ndarray, descriptor: Descriptor) -> np.ndarray:
    """Unit vectors (B, width) of preprocessed ``pixels`` (B, 3, H, W)."""
    return pool(model, run(model, pixels, [descriptor]), descriptor)


def prepared_box(width: int, height: int, descriptor: Descriptor) -> tuple[float, float, float, float]:
    """The part (x, y, w, h) of a ``width`` x ``height`` picture, in its own pixels, that ``prepare`` shows
    the model for ``descriptor`` (``preprocess.input_box``)."""
    return input_box(width, height, dynamic=descriptor.preprocessing == "whole", resize=_resize(descriptor),
                     crop=descriptor.size)


def patch_tokens(model: Dinov2, output: Dinov2Output, descriptor: Descriptor) -> np.ndarray:
    """The patch tokens (B, N, D) of ``descriptor``'s block, normalised as its pooling sees them, from a pass
    made by ``run`` with it among the descriptors: what the descriptor pools, patch by patch."""
    d = descriptor.resolved(model)
    tokens = output.intermediate[d.block][:, 1 + model.config.num_registers:]
    return model.final_norm(tokens) if d.final_norm else tokens
