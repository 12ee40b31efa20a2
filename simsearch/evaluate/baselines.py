"""Baselines measured beside an encoder: raw pixels (cosine) and perceptual hashes (Hamming)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from simsearch.errors import SimSearchError
from simsearch.images import to_array
from simsearch.preprocess import Preprocess

__all__ = ["BASELINES", "HASHES", "RAW_PIXELS", "hash_codes", "raw_pixel_embeddings", "raw_pixel_pictures"]

RAW_PIXELS = "raw-pixels"
HASHES = ("phash", "dhash", "pdq")
BASELINES = (RAW_PIXELS, *HASHES)
RAW_SIZE = 32  # the side raw pixels are compared at
RAW_DECODE = 64  # the side images are decoded to first (an area downscale to RAW_SIZE follows)


def raw_pixel_embeddings(images: np.ndarray, size: int = 32) -> np.ndarray:
    """The baseline a user might try first: each image area-downscaled to size x size, flattened,
    mean-centred and L2-normalized, so cosine compares raw pixels. images: (N, C, S, S) uint8."""
    n, c, s, _ = images.shape
    x = images.astype(np.float32) / 255.0
    if s != size:
        if s % size == 0:
            f = s // size
            x = x.reshape(n, c, size, f, size, f).mean(axis=(3, 5))
        else:  # nearest rows and columns, for sizes that do not divide
            idx = (np.arange(size) * s / size).astype(int)
            x = x[:, :, idx][:, :, :, idx]
    v = x.reshape(n, -1)
    v = v - v.mean(axis=1, keepdims=True)
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def raw_pixel_pictures(images: Sequence[Image.Image]) -> np.ndarray:
    """Raw-pixel embeddings of PIL images in colour (decoded at 64, compared at 32)."""
    pre = Preprocess.plain(3, RAW_DECODE)
    return raw_pixel_embeddings(np.stack([to_array(im, pre) for im in images]), RAW_SIZE)


def hash_codes(images: Sequence[Image.Image], kind: str) -> np.ndarray:
    """(N, bits) bool perceptual hashes: pHash or dHash (8x8, 64 bits) from the imagehash library, or
    PDQ (Meta's 256-bit hash for copy detection and content matching) from pdqhash."""
    if kind == "pdq":
        try:
            import pdqhash
        except ImportError:
            raise SimSearchError(
                "the PDQ baseline needs pdqhash (a source package: it compiles with a C++ compiler): "
                "pip install 'simsearch[bench-pdq]'"
            ) from None

        def pdq(im: Image.Image) -> np.ndarray:
            return np.asarray(pdqhash.compute(np.asarray(im.convert("RGB")))[0], dtype=bool)

        with ThreadPoolExecutor() as pool:
            return np.stack(list(pool.map(pdq, images)))
    try:
        import imagehash
    except ImportError:
        raise SimSearchError(
            "the perceptual-hash baselines need the imagehash library: pip install 'simsearch[bench]'"
        ) from None
    fn = {"phash": imagehash.phash, "dhash": imagehash.dhash}[kind]
    with ThreadPoolExecutor() as pool:
        return np.stack(list(pool.map(lambda im: np.asarray(fn(im).hash, dtype=bool).reshape(-1), images)))
