"""Distorted training images: shapes, dtypes and range, the identity at zero strength, bilinear sampling
against scipy.ndimage, the smoothing of the elastic field, and seeding."""

import numpy as np
import pytest
from helpers import synthetic_digits

from nn_gpu.augment import (
    AUGMENTATIONS,
    Distortion,
    batch_rng,
    bilinear,
    distort,
    gaussian_matrix,
    smooth,
    source_points,
)

IMAGES = synthetic_digits(50, seed=4)[0]  # 50 x 784 uint8


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shapes_dtypes_and_range(name, dtype):
    for images in (IMAGES, IMAGES.astype(dtype) / 255):
        out = distort(images, AUGMENTATIONS[name], np.random.default_rng(0), dtype)
        assert out.shape == (50, 784) and out.dtype == dtype
        assert out.min() >= 0 and out.max() <= 1
        assert not np.array_equal(out, IMAGES / 255)
    assert distort(IMAGES[:0], AUGMENTATIONS[name], np.random.default_rng(0)).shape == (0, 784)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_zero_strength_is_the_identity(dtype):
    expected = IMAGES.astype(dtype) / 255
    np.testing.assert_array_equal(distort(IMAGES, Distortion(), np.random.default_rng(0), dtype), expected)
    np.testing.assert_array_equal(distort(expected, Distortion(sigma=2.0), np.random.default_rng(1), dtype), expected)


def test_bilinear_sampling_is_scipys_order_1_with_zeros_outside():
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy is not installed")
    pixels = IMAGES[:6].astype(np.float64) / 255
    source = source_points(AUGMENTATIONS["affine+elastic"], 6, np.random.default_rng(3), np.float64)
    source[:, 0, :5] = [-3.0, 30.0, -0.5, 27.5, 100.0]  # outside, and half a pixel beyond each edge
    ours = bilinear(pixels, source[0], source[1])
    for i in range(6):
        coordinates = [source[0, i].reshape(28, 28), source[1, i].reshape(28, 28)]
        theirs = ndimage.map_coordinates(pixels[i].reshape(28, 28), coordinates, order=1, mode="grid-constant", cval=0)
        np.testing.assert_allclose(ours[i], theirs.ravel(), atol=1e-12)


def test_a_whole_pixel_shift_moves_the_image_by_one_pixel():
    pixels = IMAGES[:2].astype(np.float64) / 255
    rows, cols = np.divmod(np.arange(784), 28)
    shifted = bilinear(pixels, np.tile(rows - 1.0, (2, 1)), np.tile(cols + 2.0, (2, 1))).reshape(2, 28, 28)
    images = pixels.reshape(2, 28, 28)
    np.testing.assert_array_equal(shifted[:, 1:, :-2], images[:, :-1, 2:])  # down one row, left two columns
    assert (shifted[:, 0, :] == 0).all() and (shifted[:, :, -2:] == 0).all()  # what came from outside is 0


def test_the_elastic_field_is_smoothed_as_G_U_G_transposed():
    G = gaussian_matrix(4.0)
    assert G.shape == (28, 28) and np.allclose(G, G.T) and G.sum(axis=1).max() == pytest.approx(1)
    U = np.random.default_rng(0).uniform(-1, 1, (5, 28, 28))
    np.testing.assert_allclose(smooth(U, G), G @ U @ G.T, atol=1e-14)


def test_the_affine_part_rotates_about_the_centre():
    rng = np.random.default_rng(0)
    source = source_points(Distortion(rotation=90.0), 2000, rng, np.float64)
    rows, cols = np.divmod(np.arange(784), 28)
    moved = np.hypot(source[0] - 13.5, source[1] - 13.5)
    np.testing.assert_allclose(moved, np.hypot(rows - 13.5, cols - 13.5)[None, :].repeat(2000, 0), atol=1e-12)
    centre = 14 * 28 + 14  # pixel (14, 14) sits half a pixel from the centre: it moves by at most that
    assert np.abs(source[:, :, centre] - 14).max() <= 1.0 + 1e-12


def test_the_same_seed_and_iteration_give_the_same_images():
    def draw(seed, iteration):
        return distort(IMAGES, AUGMENTATIONS["affine+elastic"], batch_rng(seed, iteration))

    np.testing.assert_array_equal(draw(0, 3), draw(0, 3))
    assert not np.array_equal(draw(0, 3), draw(0, 4)) and not np.array_equal(draw(0, 3), draw(1, 3))
