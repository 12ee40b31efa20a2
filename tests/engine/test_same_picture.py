"""The second stage of search for encoders with a DCT part (measures.structure): the same picture, faded or
pixelated, comes first among the cosine's best; built on real indexes of generated photos with `photos`."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from simsearch.edits import opacity_over
from simsearch.engine import Searcher, build_index
from simsearch.evaluate.copydetect import ranks_of_truth
from simsearch.measures.structure import STRUCTURE_SURE, StructurePart
from simsearch.symbols import write_photos
from tests.conftest import run_cli


def test_a_query_whose_dct_part_is_a_gallery_pictures_gets_that_picture_first(tmp_path):
    write_photos(tmp_path / "g", 30, seed=3)
    build_index(tmp_path / "g", tmp_path / "g.idx", model="photos", progress=False)
    with Searcher(tmp_path / "g.idx") as s:
        part = StructurePart.of(s.model.config)
        assert part is not None and part.dim == 143
        ids = np.sort(s.store.vectors.ids())
        x, y = s.store.vectors.vectors_of(ids[:2])
        # the networks' part of picture y, the DCT part of picture x: the cosine ranks y first, x's structure is sure
        q = np.concatenate([y[: -part.dim], x[-part.dim :]])[None].astype(np.float32)
        q /= np.linalg.norm(q)
        plain = s.search_vectors(q, ["q"], 5, images=False)[0].results  # text queries have no second stage
        assert plain[0].id == ids[1] and not any(h.same_picture for h in plain)
        first = s.search_vectors(q, ["q"], 5)[0].results
        assert first[0].id == ids[0] and first[0].same_picture and first[0].rank == 1
        assert [h.id for h in first[1:]] == [h.id for h in plain if h.id != ids[0]][:4]  # the rest keep their order
        assert first[0].score < first[1].score  # scores stay the cosines
        # pages agree with the whole list
        page = s.search_vectors(q, ["q"], 2, offset=1)[0].results
        assert [(h.rank, h.id) for h in page] == [(h.rank, h.id) for h in first[1:3]]


def test_a_faded_copy_is_found_and_said_to_be_the_same_picture(tmp_path):
    photos = sorted(write_photos(tmp_path / "g", 30, seed=4).rglob("*.jpg"))
    build_index(tmp_path / "g", tmp_path / "g.idx", model="photos", progress=False)
    faded = tmp_path / "faded.png"
    opacity_over(Image.open(photos[7]), np.random.default_rng(0)).save(faded)
    got = json.loads(run_cli("query", faded, "--index", tmp_path / "g.idx", "-k", "3", "--json", check=True).stdout)
    top = got["results"][0]
    assert top["path"].endswith(photos[7].name) and top["same_picture"] is True
    assert all("same_picture" not in h for h in got["results"][1:])  # unrelated photos are not the same picture
    text = run_cli("query", faded, "--index", tmp_path / "g.idx", "-k", "3", check=True).stdout
    assert "the same picture" in text


def test_copy_detection_ranks_as_search_does():
    rng = np.random.default_rng(0)
    part = StructurePart(dim=4, weight=0.2)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    nets, dcts = unit(rng.normal(size=(50, 12))), unit(rng.normal(size=(50, 4)))
    gallery = np.concatenate([nets * 0.8**0.5, dcts * 0.2**0.5], axis=1).astype(np.float32)
    query = np.concatenate([gallery[1, :12], gallery[0, 12:]])[None]  # picture 1's networks, picture 0's structure
    assert STRUCTURE_SURE < 1.0 and part.sure(query, gallery[None, :2]).tolist() == [[True, False]]
    plain = ranks_of_truth(gallery, query, np.array([0]), "cosine")
    staged = ranks_of_truth(gallery, query, np.array([0]), "cosine", structure=part)
    assert plain[0] > 1 and staged[0] == 1
    assert ranks_of_truth(gallery, query, np.array([1]), "cosine", structure=part)[0] == 2
