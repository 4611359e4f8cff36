"""Distorted training images: every recipe against its formula written out again, the identity at zero
strength, bilinear sampling against scipy.ndimage, the smoothing of the elastic field, seeding, and
training's fresh distortions at every step."""

import re

import numpy as np
import pytest
from helpers import synthetic_digits

import nn_gpu
from nn_gpu.augment import (
    AUGMENTATIONS,
    Distortion,
    batch_rng,
    bilinear,
    distort,
    distortion,
    gaussian_matrix,
    smooth,
    source_points,
)
from nn_gpu.parallel import one_blas_thread

IMAGES = synthetic_digits(50, seed=4)[0]  # 50 x 784 uint8


def by_the_formula(images, d: Distortion, seed: int) -> np.ndarray:
    """distort's images written out from the module docstring in float64, the random numbers drawn again
    in their order from default_rng(seed): theta, zoom, shift t, the flips, the elastic field U, then
    erasing's choice, area, aspect, top and left. s(p) = c + A F (p - c) + t + alpha G U G^T (p), read
    by bilinear (checked against scipy on its own), clipped to [0, 1], then one rectangle set to 0."""
    n, rng = len(images), np.random.default_rng(seed)
    theta, zoom = np.deg2rad(rng.uniform(-d.rotation, d.rotation, n)), rng.uniform(1 - d.scale, 1 + d.scale, n)
    t = rng.uniform(-d.shift, d.shift, (2, n))
    flips = np.where(rng.random(n) < 0.5, -1.0, 1.0) if d.flip else np.ones(n)
    rows, cols = np.divmod(np.arange(784), 28)
    source = np.empty((2, n, 784))
    for i in range(n):
        A = np.array([[np.cos(theta[i]), -np.sin(theta[i])], [np.sin(theta[i]), np.cos(theta[i])]]) / zoom[i]
        offset = np.stack([rows - 13.5, flips[i] * (cols - 13.5)])  # F (p - c)
        source[:, i] = 13.5 + A @ offset + t[:, i, None]
    if d.elastic:
        U = rng.random((2 * n, 28, 28), dtype=np.float32).astype(np.float64) * 2 - 1
        i = np.arange(28)
        G = np.exp(-((i[:, None] - i) ** 2) / (2 * d.sigma**2))
        G /= G.sum(axis=1).max()
        source += d.elastic * np.stack([G @ field @ G.T for field in U]).reshape(2, n, 784)
    out = np.clip(bilinear(images.astype(np.float64) / 255, source[0], source[1]), 0, 1).reshape(n, 28, 28)
    if d.erase:
        erased = rng.random(n) < d.erase
        area, aspect = rng.uniform(0.02, 0.4, n) * 784, np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3), n))
        height = np.clip(np.round(np.sqrt(area * aspect)), 1, 28).astype(int)
        width = np.clip(np.round(np.sqrt(area / aspect)), 1, 28).astype(int)
        top, left = (rng.random(n) * (29 - height)).astype(int), (rng.random(n) * (29 - width)).astype(int)
        for k in np.flatnonzero(erased):
            out[k, top[k] : top[k] + height[k], left[k] : left[k] + width[k]] = 0
    return out.reshape(n, 784)


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_recipe_is_its_formula_in_each_dtype_within_0_and_1(name, dtype):
    expected = by_the_formula(IMAGES, AUGMENTATIONS[name], seed=0)
    for images in (IMAGES, IMAGES.astype(dtype) / 255):
        out = distort(images, AUGMENTATIONS[name], np.random.default_rng(0), dtype)
        assert out.shape == (50, 784) and out.dtype == dtype
        assert out.min() >= 0 and out.max() <= 1
        np.testing.assert_allclose(out, expected, atol=1e-12 if dtype == "float64" else 2e-5)
        assert not np.array_equal(out, IMAGES / 255)
    assert distort(IMAGES[:0], AUGMENTATIONS[name], np.random.default_rng(0)).shape == (0, 784)


def test_the_elastic_displacement_is_alpha_times_the_smoothed_field_drawn():
    rng = np.random.default_rng(2)
    rng.random(4 * 6)  # theta, zoom and the shift (two numbers an image), all 0 here, are drawn first
    U = rng.random((12, 28, 28), dtype=np.float32).astype(np.float64) * 2 - 1
    G = gaussian_matrix(3.0)
    rows, cols = np.divmod(np.arange(784), 28)
    moved = source_points(Distortion(elastic=20.0, sigma=3.0), 6, np.random.default_rng(2), np.float64)
    moved -= np.stack([rows, cols])[:, None]
    np.testing.assert_allclose(moved, 20.0 * (G @ U @ G.T).reshape(2, 6, 784), atol=1e-12)
    assert np.abs(moved).max() < 0.2 * np.abs(20.0 * U).max()  # smoothing shrinks the raw field


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


def test_training_distorts_each_steps_batch_afresh_from_the_seed_and_the_step():
    images, labels = synthetic_digits(40, seed=1)
    recipe = AUGMENTATIONS["affine+elastic"]
    with one_blas_thread():  # as training draws them: the elastic field's float32 smoothing rounds by thread count
        batches = [distort(images, recipe, batch_rng(5, t)).T for t in (1, 2, 3)]  # step t's images, n0 x m
    assert not np.array_equal(batches[0], batches[1])
    by_hand = nn_gpu.Network.create(hidden=(8,), device="cpu", seed=0)
    for X in batches:
        by_hand.step(by_hand.backward(by_hand.forward(X, keep=True), labels), alpha=0.1)
    trained = nn_gpu.Network.create(hidden=(8,), device="cpu", seed=0)
    nn_gpu.train(trained, images.T, labels, iterations=3, augment="affine+elastic", seed=5, log=None)
    np.testing.assert_array_equal(trained.flat, by_hand.flat)


def test_recipes_name_parts_with_their_default_strengths():
    assert distortion("affine") == Distortion(rotation=10.0, scale=0.1, shift=2.0)
    assert distortion("affine+elastic") == Distortion(rotation=10.0, scale=0.1, shift=2.0, elastic=34.0, sigma=4.0)
    assert distortion("shift=3+flip+erase") == Distortion(shift=3.0, flip=True, erase=0.5)
    assert distortion("affine+rotation=15+sigma=6+elastic=20") == Distortion(15.0, 0.1, 2.0, 20.0, 6.0)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            "twist",
            "'twist' is not a part of a distortion: use affine, rotation, scale, shift, elastic, sigma, flip, erase",
        ),
        ("shift+", "'' is not a part of a distortion"),
        ("flip=1", "flip takes no value"),
        ("shift=two", "'shift=two': shift takes a number, like shift=2"),
        ("erase=1.5", "'erase=1.5': erase must be from 0 to 1"),
        ("rotation=-5", "'rotation=-5': rotation must be a finite number, 0 or more"),
        ("scale=inf", "'scale=inf': scale must be a finite number, 0 or more"),
    ],
)
def test_a_bad_recipe_is_refused_naming_the_part(recipe, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        distortion(recipe)


def test_a_shift_moves_every_pixel_of_an_image_by_one_vector_within_the_range():
    rows, cols = np.divmod(np.arange(784), 28)
    moved = (
        source_points(Distortion(shift=3.0), 4000, np.random.default_rng(0), np.float64)
        - np.stack([rows, cols])[:, None]
    )
    np.testing.assert_allclose(moved, moved[:, :, :1].repeat(784, axis=2), atol=1e-12)  # one vector an image
    assert np.abs(moved).max() <= 3 and np.abs(moved).max() > 2.9


def test_a_flip_mirrors_half_the_images_left_to_right():
    pixels = IMAGES.astype(np.float64) / 255
    out = distort(IMAGES, Distortion(flip=True), np.random.default_rng(0), "float64").reshape(50, 28, 28)
    mirrored = np.array([np.array_equal(o, p[:, ::-1]) for o, p in zip(out, pixels.reshape(50, 28, 28))])
    same = np.array([np.array_equal(o, p) for o, p in zip(out, pixels.reshape(50, 28, 28))])
    assert (mirrored | same).all() and 15 < mirrored.sum() < 35


def test_erasing_zeroes_one_rectangle_of_the_drawn_size_in_images_chosen_with_its_probability():
    n, white = 4000, np.full((4000, 784), 255, dtype=np.uint8)
    out = distort(white, Distortion(erase=0.3), np.random.default_rng(0), "float64").reshape(n, 28, 28)
    assert set(np.unique(out)) == {0.0, 1.0}
    erased = (out == 0).any(axis=(1, 2))
    assert 0.27 < erased.mean() < 0.33
    for image in out[erased]:
        r, c = np.nonzero(image == 0)
        height, width = r.max() - r.min() + 1, c.max() - c.min() + 1
        assert len(r) == height * width  # the zeros fill their bounding box: one rectangle
        assert 0.02 * 784 * 0.6 <= len(r) <= 0.4 * 784 * 1.25  # its area, up to rounding each side
        assert 0.3 / 1.6 <= height / width <= 3.3 * 1.6  # its aspect ratio, up to rounding
    areas = np.array([(image == 0).sum() for image in out[erased]]) / 784
    assert areas.mean() == pytest.approx(0.21, abs=0.02)  # uniform over 2-40%


def test_a_recipe_without_flip_or_erase_draws_what_it_drew_before_they_existed():
    source = source_points(AUGMENTATIONS["affine"], 3, np.random.default_rng(5), np.float64)
    rng = np.random.default_rng(5)
    theta, zoom, shift = np.deg2rad(rng.uniform(-10, 10, 3)), rng.uniform(0.9, 1.1, 3), rng.uniform(-2, 2, (2, 3, 1))
    rows, cols = np.divmod(np.arange(784), 28)
    r, c = rows - 13.5, cols - 13.5
    expected_rows = 13.5 + (np.cos(theta) / zoom)[:, None] * r - (np.sin(theta) / zoom)[:, None] * c + shift[0]
    np.testing.assert_allclose(source[0], expected_rows, atol=1e-12)
