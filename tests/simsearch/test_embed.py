"""The Embedder: arrays, PIL images, paths and streams of files give the same unit rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from simsearch.embed import Embedder, read_and_decode
from simsearch.encoder import EncoderConfig, build_encoder
from simsearch.images import scan_folder
from simsearch.preprocess import Preprocess


@pytest.fixture
def embedder() -> Embedder:
    torch.manual_seed(0)
    return Embedder(build_encoder(EncoderConfig(widths=(8, 8, 16, 16), embedding_dim=12)), "cpu")


def test_every_input_kind_gives_the_same_rows(embedder, gallery, tmp_path):
    paths = [str(f.path) for f in scan_folder(gallery).files]
    arrays = np.stack([read_and_decode(p, embedder.preprocess)[0] for p in paths])
    by_array = embedder.embed_arrays(arrays, batch_size=5)  # batches of 5: the seams must not show
    assert by_array.dtype == np.float32 and by_array.flags.c_contiguous and by_array.shape == (16, 12)
    assert np.allclose(np.linalg.norm(by_array, axis=1), 1.0, atol=1e-5)
    by_path, failed = embedder.embed_paths([*paths[:3], str(tmp_path / "missing.png"), *paths[3:]])
    assert [f[0] for f in failed] == [str(tmp_path / "missing.png")]
    assert np.allclose(by_path, by_array, atol=1e-5)
    by_pil = embedder.embed_images([Image.open(p) for p in paths])
    assert np.allclose(by_pil, by_array, atol=1e-5)
    assert np.allclose(embedder.embed_bytes(open(paths[0], "rb").read()), by_array[:1], atol=1e-5)
    # streaming: positions index the input, unreadable files go to on_error, rows equal the rest
    (tmp_path / "bad.png").write_bytes(b"nope")
    errors = []
    batches = list(
        embedder.stream(
            [paths[0], str(tmp_path / "bad.png"), *paths[1:]],
            batch_size=4,
            progress=False,
            on_error=lambda pos, err: errors.append((pos, err.reason)),
        )
    )
    assert [e[0] for e in errors] == [1]
    positions = [p for b in batches for p in b.positions]
    assert positions == [0, *range(2, 17)]
    assert np.allclose(np.concatenate([b.vectors for b in batches]), by_array, atol=1e-5)
    assert all(len(f.sha256) == 64 and f.size > 0 for b in batches for f in b.facts)


def test_empty_inputs_and_training_mode_is_restored(embedder):
    assert embedder.embed_arrays(np.zeros((0, 1, 28, 28), np.uint8)).shape == (0, 12)
    assert embedder.embed_paths([])[0].shape == (0, 12)
    embedder.encoder.train()
    embedder.embed_arrays(np.zeros((2, 1, 28, 28), np.uint8))
    assert embedder.encoder.training  # validation during training must not leave the encoder in eval mode


def test_loading_by_name_keeps_where_it_came_from():
    e = Embedder.load("characters", "cpu")
    assert e.model is not None and e.model.source == "characters" and len(e.model.fingerprint) == 64
    assert isinstance(e.preprocess, Preprocess) and e.dim == e.model.config.embedding_dim
