"""Element-wise and normalisation kernels, float32 throughout and in place where possible.

NumPy runs one pass over memory per operation, so the long kernels work on cache-sized chunks: a dozen
passes over 128 KiB that stays in L2 cost far less than a dozen passes over main memory.
"""
from __future__ import annotations

import numpy as np

# Elements per chunk: four float32 chunks (1 MiB) stay inside a 1 MiB L2. Larger than cache alone would ask for,
# because each call gives up the GIL and must win it back: with two shards at once, 32768 ran the GELU 1.5x
# slower than alone, 65536 1.1x (alone the two are within noise).
_CHUNK = 65536

# Abramowitz & Stegun 7.1.26 for erfc, rewritten for Phi(-|x|) = erfc(|x| / sqrt 2) / 2: in float64 the
# polynomial is within 7e-8 of math.erfc over the whole line; the float32 kernel's error is in gelu_'s docstring.
# Two passes fewer than the textbook form: t = 1 / (1 + p|x|) is computed as (1/p) / (1/p + |x|), and the
# polynomial a0 t + ... + a4 t^5 in s t with s = a4^(1/5), whose leading coefficient is then 1.
_A = tuple(c * 0.5 for c in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))
_INV_P = np.float32(np.sqrt(2.0) / 0.3275911)
_S = _A[4] ** 0.2
_S_INV_P = np.float32(_S * np.sqrt(2.0) / 0.3275911)
_B = tuple(np.float32(_A[k] / _S ** (k + 1)) for k in range(4))
_MINUS_HALF = np.float32(-0.5)
_ONE = np.float32(1.0)
_QUICK_GELU = np.float32(1.702)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b``. Every matrix product of the forward pass goes through here (looked up as ``ops.matmul``),
    so that ``bench --profile`` can time them apart from the rest."""
    return np.matmul(a, b, out=out)


def _flat(x: np.ndarray) -> np.ndarray:
    """A flat view of ``x``, which must be C-contiguous so that in-place kernels write through."""
    if not x.flags.c_contiguous:
        raise ValueError("in-place kernels need a C-contiguous array")
    return x.reshape(-1)


def gelu_(x: np.ndarray) -> np.ndarray:
    """The erf GELU ``x * Phi(x)`` in place (not the tanh form), written as ``relu(x) - |x| * Phi(-|x|)`` with
    Phi from a polynomial (Abramowitz & Stegun 7.1.26), not from erf itself.

    Measured against ``0.5 * x * (1 + math.erf(x / sqrt 2))`` in float64 on 2,000,001 float32 points in
    [-20, 20] (and at ±50, ±100, ±1e4): the largest absolute error is 3.3e-7 (at x = 3.10, where float32's
    own spacing is 2.4e-7), at most 8 float32 steps for x >= 0, and 0 beyond |x| = 20. For negative x,
    where GELU tends to 0, the absolute error stays below 2.2e-7 but the relative one grows (1.7e-4 at
    x = -3.44, where GELU is -1e-3)."""
    flat = _flat(x)
    b0, b1, b2, b3 = _B

    ax = np.empty(_CHUNK, np.float32)
    t = np.empty(_CHUNK, np.float32)
    q = np.empty(_CHUNK, np.float32)
    # Against an array of zeros, not the scalar 0: NumPy 2.4's maximum with a scalar took 5x as long.
    zeros = np.zeros(_CHUNK, np.float32)
    for s in range(0, flat.size, _CHUNK):
        xc = flat[s:s + _CHUNK]
        n = xc.size
        A, T, Q = ax[:n], t[:n], q[:n]
        np.abs(xc, out=A)
        np.add(A, _INV_P, out=T)
        np.divide(_S_INV_P, T, out=T)
        np.add(T, b3, out=Q)
        Q *= T
        for c in (b2, b1, b0):
            Q += c
            Q *= T
        np.multiply(A, A, out=T)
        T *= _MINUS_HALF
        np.exp(T, out=T)
        Q *= T
        Q *= A
        np.maximum(xc, zeros[:n], out=xc)
        xc -= Q
    return x


def silu_(x: np.ndarray) -> np.ndarray:
    """SiLU in place: ``x * sigmoid(x)``."""
    return _times_sigmoid_(x, _ONE)


def quick_gelu_(x: np.ndarray) -> np.ndarray:
    """OpenAI CLIP's QuickGELU in place: ``x * sigmoid(1.702 x)``."""
    return _times_sigmoid_(x, _QUICK_GELU)


def _times_sigmoid_(x: np.ndarray, slope: np.float32) -> np.ndarray:
    """``x * sigmoid(slope * x)`` in place, as ``x / (1 + exp(-slope * x))``."""
    flat = _flat(x)
    minus_slope = -slope
    t = np.empty(_CHUNK, np.float32)
    for s in range(0, flat.size, _CHUNK):
        xc = flat[s:s + _CHUNK]
        T = t[:xc.size]
        np.multiply(xc, minus_slope, out=T)
        np.exp(T, out=T)
        T += _ONE
        np.divide(xc, T, out=xc)
    return x


def standardize(x: np.ndarray, eps: float) -> np.ndarray:
    """``(x - mean) / sqrt(var + eps)`` over the last axis into a new array: LayerNorm without its affine
    part, which the next linear layer absorbs."""
    # einsum sums rows in a third of the time of ``x.mean(axis=-1)`` (NumPy 2.4, rows of 384).
    mean = np.einsum("...i->...", x)[..., None]
    mean *= np.float32(1.0 / x.shape[-1])
    out = np.subtract(x, mean)
    var = np.einsum("...i,...i->...", out, out)[..., None]
    var *= np.float32(1.0 / x.shape[-1])
    var += np.float32(eps)
    np.sqrt(var, out=var)
    out /= var
    return out


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis into a new array."""
    out = standardize(x, eps)
    out *= weight
    out += bias
    return out
