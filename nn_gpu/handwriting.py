"""Your own handwriting, made to look like an MNIST digit.

MNIST's digits are light strokes on a black background, scaled to fit a 20 x 20 box and placed in a
28 x 28 image so that their centre of mass sits at the centre. `load_grayscale` reads a picture as
people take them (Pillow, in the optional extra `plot`): turned upright by its EXIF orientation (a
phone photo held sideways), and, when it is partly transparent, composited onto black if its ink is
light and onto white if its ink is dark, so white or coloured ink on a transparent background stays
visible; a 16-bit grayscale picture is brought to 8 bits by its own depth (65,535 is white). Only
the formats in FORMATS are opened (so a PostScript file never reaches Ghostscript), and pictures over
Pillow's decompression-bomb limit (about 89 megapixels) are refused.
`preprocess` then does what MNIST did:

1. grayscale;
2. polarity: if the border is brighter than the middle on average (dark ink on light paper), invert;
3. crop to the bounding box of the ink (pixels above a fifth of the brightest);
4. scale the longer side to 20 pixels, keeping the aspect ratio (antialiased);
5. paste into a black 28 x 28 image with the centre of mass at (14, 14), rounded to whole pixels.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from nn_gpu.errors import DataError, one_line
from nn_gpu.plots import PLOT_HINT
from nn_gpu.safe_io import input_problem, write_atomically

FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")  # what Pillow may open: its own decoders, no helper program
DEEP_GRAY = ("I;16", "I;16L", "I;16B", "I")  # Pillow's modes of 16-bit grayscale (a 16-bit PNG opens as I;16 or I)


def name_of(picture: Path | bytes) -> str | Path:
    """How messages name a picture: its path, or "the picture" for the bytes of an upload."""
    return "the picture" if isinstance(picture, bytes) else picture


def load_grayscale(picture: Path | bytes, max_pixels: int | None = None) -> np.ndarray:
    """A picture, at a path or as the bytes of its file (an upload), as a 2-D uint8 array: upright,
    transparency composited (module docstring). DataError naming the path, or "the picture" for bytes;
    for a picture of more than max_pixels pixels too (default: Pillow's limit), before it is decoded."""
    name = name_of(picture)
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise DataError(f"{name}: reading images needs Pillow: {PLOT_HINT}") from None
    if isinstance(picture, bytes):
        problem = None if picture else "it is empty"
    else:
        problem = input_problem(picture)
    if problem:
        raise DataError(f"{name}: {problem}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(picture) if isinstance(picture, bytes) else picture, formats=FORMATS) as image:
                if max_pixels is not None and image.width * image.height > max_pixels:
                    raise DataError(
                        f"{name}: too large a picture ({image.width} x {image.height} pixels; the limit is "
                        f"{max_pixels:,}); shrink or crop it"
                    )
                image = ImageOps.exif_transpose(image)
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    return _composite(image.convert("RGBA"))
                if image.mode in DEEP_GRAY:
                    levels = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
                    return np.round(levels * (255 / 65535)).astype(np.uint8)
                return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"{name}: too large a picture ({one_line(error)}); shrink or crop it") from None
    except UnidentifiedImageError:
        raise DataError(f"{name}: not a readable image: not a {', '.join(FORMATS)} picture") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{name}: not a readable image ({one_line(error)})") from None


def _composite(rgba) -> np.ndarray:
    """Gray levels of an RGBA picture laid on black when its ink (the opaque part) is light, else on white."""
    gray = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float64)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255
    ink = (gray * alpha).sum() / alpha.sum() if alpha.sum() else 0.0
    background = 0.0 if ink > 127.5 else 255.0
    return np.round(gray * alpha + background * (1 - alpha)).astype(np.uint8)


def preprocess(gray: np.ndarray) -> np.ndarray:
    """A 28 x 28 uint8 MNIST-like digit from a 2-D grayscale picture (see the module docstring)."""
    from PIL import Image

    gray = gray.astype(np.float64)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > gray.mean():  # dark ink on light paper
        gray = 255 - gray
    gray -= gray.min()
    if gray.max() <= 0:
        raise ValueError("it is blank: no ink to find")
    rows, columns = np.nonzero(gray > 0.2 * gray.max())
    ink = gray[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    ink = ink * (255 / ink.max())
    height, width = ink.shape
    scale = 20 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(ink.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
    total = small.sum()
    centre_row = (small.sum(axis=1) * np.arange(small.shape[0])).sum() / total
    centre_column = (small.sum(axis=0) * np.arange(small.shape[1])).sum() / total
    top = int(np.clip(round(14 - centre_row), 0, 28 - small.shape[0]))
    left = int(np.clip(round(14 - centre_column), 0, 28 - small.shape[1]))
    digit = np.zeros((28, 28), dtype=np.float64)
    digit[top : top + small.shape[0], left : left + small.shape[1]] = small
    return np.clip(digit, 0, 255).astype(np.uint8)


def save_digit(digit: np.ndarray, path: Path) -> None:
    """Write a 28 x 28 uint8 digit as a PNG, to show what the network saw."""
    from PIL import Image

    write_atomically(path, lambda f: Image.fromarray(digit).save(f, format="PNG"))
