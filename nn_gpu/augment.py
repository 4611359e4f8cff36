"""Distorted training images, made afresh for each mini-batch: random affine maps, elastic distortions,
mirror images and erased rectangles.

Each output pixel p = (row, column) of a 28 x 28 image takes the input's value at a source point

    s(p) = c + A F (p - c) + t + alpha G(U)(p)

c = (13.5, 13.5), the image's centre. The affine part (Ciresan et al. 2010) has A = R(theta) / k: a
rotation by theta ~ U(-rotation, rotation) degrees and a zoom by k ~ U(1 - scale, 1 + scale), and
t ~ U(-shift, shift) pixels in each direction. F mirrors the columns (a horizontal flip) of half the
images when flip is on, and is the identity otherwise. The elastic part (Simard et al. 2003): U holds a
displacement per pixel and direction, drawn from U(-1, 1), smoothed by a Gaussian of width sigma (G,
as the matrix product G U G^T, zero beyond the border), and scaled by alpha pixels. The value at s is
read by bilinear interpolation from the four pixels around it, zero outside the image, so the
output stays in [0, 1]. With every strength 0, s(p) = p and the images come back unchanged. Random
erasing (Zhong et al. 2017) then sets a rectangle of each image to 0 with probability `erase`: its
area a uniform 2-40% of the image, its aspect ratio log-uniform in [0.3, 3.3], its place uniform.

--augment names a recipe as parts joined by "+", each a part's name (its default strength) or
name=value: rotation (10 degrees), scale (0.1), shift (2 pixels), elastic (alpha 34), sigma (4
pixels), flip, erase (0.5), and affine, short for rotation+scale+shift. So "affine+elastic" is
Ciresan's and Simard's distortions, and "shift=3+flip+erase=0.3" a recipe for clothes.

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
    flip: bool = False
    erase: float = 0.0  # the probability that an image has a rectangle erased


# Each part's strength when --augment names it without a value: the affine ranges are below Ciresan et
# al.'s for MNIST (15 degrees, 15%); the elastic field's sigma and alpha are Simard et al.'s (4 and 34);
# erasing's probability is Zhong et al.'s.
PARTS = {"rotation": 10.0, "scale": 0.1, "shift": 2.0, "elastic": 34.0, "sigma": 4.0, "flip": True, "erase": 0.5}
AFFINE = ("rotation", "scale", "shift")
ERASED_AREA = (0.02, 0.4)  # the rectangle's share of the image
ERASED_ASPECT = (0.3, 1 / 0.3)  # its height / width


def distortion(recipe: str) -> Distortion:
    """The Distortion of an --augment recipe ("affine+elastic", "shift=3+flip+erase"); ValueError,
    naming the part, for one that is not a recipe."""
    strengths: dict = {}
    for part in recipe.split("+"):
        name, has_value, value = (p.strip() for p in part.partition("="))
        if name == "affine" and not has_value:
            strengths.update({n: PARTS[n] for n in AFFINE})
        elif name not in PARTS:
            raise ValueError(f"{part!r} is not a part of a distortion: use {', '.join(['affine', *PARTS])}")
        elif name == "flip" or not has_value:
            if has_value:
                raise ValueError("flip takes no value: it mirrors half the images")
            strengths[name] = PARTS[name]
        else:
            try:
                strengths[name] = float(value)
            except ValueError:
                raise ValueError(f"{part!r}: {name} takes a number, like {name}={PARTS[name]:g}") from None
            if not 0 <= strengths[name] < float("inf") or (name == "erase" and strengths[name] > 1):
                bound = "from 0 to 1" if name == "erase" else "a finite number, 0 or more"
                raise ValueError(f"{part!r}: {name} must be {bound}")
    return Distortion(**strengths)


# Recipes to try and to test: the digits' distortions, and ones that keep clothes upright and centred.
AUGMENTATIONS = {
    name: distortion(name)
    for name in ("affine", "elastic", "affine+elastic", "shift", "flip", "erase", "shift+flip", "shift+flip+erase")
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
    if d.flip:  # F (p - c): the column's offset from the centre mirrored in half the images
        c = np.where(rng.random(n) < 0.5, -1.0, 1.0)[:, None] * c
    source = np.empty((2, n, SIDE * SIDE))
    source[0] = centre + cos[:, None] * r - sin[:, None] * c
    source[1] = centre + sin[:, None] * r + cos[:, None] * c
    source += shift
    source = source.astype(dtype)
    if d.elastic:
        U = rng.random((2 * n, SIDE, SIDE), dtype=np.float32).astype(dtype, copy=False) * 2 - 1
        source += dtype(d.elastic) * smooth(U, gaussian_matrix(d.sigma).astype(dtype)).reshape(2, n, SIDE * SIDE)
    return source


def kept_pixels(probability: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random erasing's masks: n x 784 bool host array, False on the rectangle erased from an image (each
    image has one with the given probability), True elsewhere."""
    erased = rng.random(n) < probability
    area = rng.uniform(*ERASED_AREA, n) * SIDE * SIDE
    aspect = np.exp(rng.uniform(*np.log(ERASED_ASPECT), n))
    height = np.clip(np.round(np.sqrt(area * aspect)), 1, SIDE).astype(int)
    width = np.clip(np.round(np.sqrt(area / aspect)), 1, SIDE).astype(int)
    top = (rng.random(n) * (SIDE - height + 1)).astype(int)
    left = (rng.random(n) * (SIDE - width + 1)).astype(int)
    rows, cols = np.divmod(np.arange(SIDE * SIDE), SIDE)
    inside = (rows >= top[:, None]) & (rows < (top + height)[:, None])
    inside &= (cols >= left[:, None]) & (cols < (left + width)[:, None])
    return ~(inside & erased[:, None])


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
    out = xp.clip(bilinear(pixels, source[0], source[1]), 0, 1)
    if distortion.erase:
        out *= xp.asarray(kept_pixels(distortion.erase, n, rng))
    return out


def batch_rng(seed: int, iteration: int) -> np.random.Generator:
    """The random numbers of one training step's distortions, from (seed, iteration) alone."""
    return np.random.default_rng([seed, AUGMENT_STREAM, iteration])
