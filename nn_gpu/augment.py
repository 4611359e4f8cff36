"""Distorted training images, made afresh for each mini-batch: random affine maps and elastic distortions.

Each output pixel p = (row, column) of a 28 x 28 image takes the input's value at a source point

    s(p) = c + A (p - c) + t + alpha G(U)(p)

c = (13.5, 13.5), the image's centre. The affine part (Ciresan et al. 2010) has A = R(theta) / k: a
rotation by theta ~ U(-rotation, rotation) degrees and a zoom by k ~ U(1 - scale, 1 + scale), and
t ~ U(-shift, shift) pixels in each direction. The elastic part (Simard et al. 2003): U holds a
displacement per pixel and direction, drawn from U(-1, 1), smoothed by a Gaussian of width sigma (G,
as the matrix product G U G^T, zero beyond the border), and scaled by alpha pixels. The value at s is
read by bilinear interpolation from the four pixels around it, zero outside the image, so the
output stays in [0, 1]. With every strength 0, s(p) = p and the images come back unchanged.

Written once against `xp`: the same code distorts NumPy arrays on the CPU and CuPy arrays on the GPU.
The random numbers are drawn on the host from (seed, iteration) alone, so a resumed run sees the
same images as one never stopped, and both devices the same distortions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nn_gpu.ops import array_module

SIDE = 28
AUGMENT_STREAM = 2  # keys the random stream apart from the shuffle's and dropout's


@dataclass(frozen=True)
class Distortion:
    """Strengths: rotation in degrees, scale as a fraction, shift and elastic alpha in pixels, sigma in pixels."""

    rotation: float = 0.0
    scale: float = 0.0
    shift: float = 0.0
    elastic: float = 0.0
    sigma: float = 4.0


# --augment's choices: the affine ranges are below Ciresan et al.'s for MNIST (15 degrees, 15%);
# the elastic field's sigma and alpha are Simard et al.'s (4 and 34).
AUGMENTATIONS = {
    "affine": Distortion(rotation=10.0, scale=0.1, shift=2.0),
    "elastic": Distortion(elastic=34.0, sigma=4.0),
    "affine+elastic": Distortion(rotation=10.0, scale=0.1, shift=2.0, elastic=34.0, sigma=4.0),
}


def gaussian_matrix(sigma: float, side: int = SIDE) -> np.ndarray:
    """G (side x side): row i is a Gaussian of width sigma centred on i, normalised to sum 1 over
    the whole line (so pixels near the border get less weight, as if zero lay beyond it); G U G^T
    smooths a side x side field U."""
    i = np.arange(side)
    G = np.exp(-((i[:, None] - i[None, :]) ** 2) / (2 * sigma**2))
    return G / G.sum(axis=1, keepdims=True).max()


def source_points(distortion: Distortion, n: int, rng: np.random.Generator, dtype: type) -> np.ndarray:
    """The source point of every output pixel of n images: (2, n, 784) host array, rows then columns."""
    d = distortion
    theta = np.deg2rad(rng.uniform(-d.rotation, d.rotation, n))
    zoom = rng.uniform(1 - d.scale, 1 + d.scale, n)
    shift = rng.uniform(-d.shift, d.shift, (2, n, 1))
    cos, sin = np.cos(theta) / zoom, np.sin(theta) / zoom
    rows, cols = np.divmod(np.arange(SIDE * SIDE), SIDE)
    centre = (SIDE - 1) / 2
    r, c = rows - centre, cols - centre  # p - c: 784 each
    source = np.empty((2, n, SIDE * SIDE))
    source[0] = centre + cos[:, None] * r - sin[:, None] * c
    source[1] = centre + sin[:, None] * r + cos[:, None] * c
    source += shift
    source = source.astype(dtype)
    if d.elastic:
        U = rng.random((2 * n, SIDE, SIDE), dtype=np.float32).astype(dtype, copy=False) * 2 - 1
        source += dtype(d.elastic) * smooth(U, gaussian_matrix(d.sigma).astype(dtype)).reshape(2, n, SIDE * SIDE)
    return source


def smooth(U: np.ndarray, G: np.ndarray) -> np.ndarray:
    """G U_i G^T for each field U_i of U (k x 28 x 28), as two plain matrix products: k x 28 x 28."""
    k = U.shape[0]
    UGt = (U.reshape(-1, SIDE) @ G.T).reshape(k, SIDE, SIDE)  # U G^T: each row of each field smoothed
    return (UGt.transpose(0, 2, 1).reshape(-1, SIDE) @ G.T).reshape(k, SIDE, SIDE).transpose(0, 2, 1)


def bilinear(images, rows, cols):
    """Each image sampled at its own points: images n x 784 (floating, 28 x 28 row by row), rows and
    cols n x k source coordinates in images' dtype; n x k values, zero outside the image. Written against xp."""
    xp = array_module(images)
    n, width = images.shape[0], SIDE + 2
    padded = xp.zeros((n, width, width), dtype=images.dtype)  # a border of zeros around each image
    padded[:, 1:-1, 1:-1] = images.reshape(n, SIDE, SIDE)
    r = xp.clip(rows + 1, 0, SIDE + 1)  # in padded coordinates; anything further out reads the border
    c = xp.clip(cols + 1, 0, SIDE + 1)
    r0 = xp.minimum(xp.floor(r), SIDE)
    c0 = xp.minimum(xp.floor(c), SIDE)
    fr, fc = r - r0, c - c0  # the weights of the lower and right neighbours, in [0, 1]
    first = width * width * xp.arange(n, dtype=xp.int32)[:, None]  # where each image starts in padded
    top = first + r0.astype(xp.int32) * width + c0.astype(xp.int32)
    padded = padded.ravel()

    def at(offset):
        return xp.take(padded, top + offset)

    upper = at(0) * (1 - fc) + at(1) * fc
    lower = at(width) * (1 - fc) + at(width + 1) * fc
    return upper * (1 - fr) + lower * fr


def distort(images, distortion: Distortion, rng: np.random.Generator, dtype: str = "float32"):
    """Distorted copies of images (n x 784, uint8 pixels or floating pixels / 255, on either device):
    n x 784 floating pixels / 255 in dtype, in [0, 1], on the same device. rng draws every random number."""
    xp = array_module(images)
    n = images.shape[0]
    pixels = images.astype(dtype) / 255 if images.dtype == np.uint8 else images.astype(dtype, copy=False)
    source = xp.asarray(source_points(distortion, n, rng, np.dtype(dtype).type))
    return xp.clip(bilinear(pixels, source[0], source[1]), 0, 1)


def batch_rng(seed: int, iteration: int) -> np.random.Generator:
    """The random numbers of one training step's distortions, from (seed, iteration) alone."""
    return np.random.default_rng([seed, AUGMENT_STREAM, iteration])
