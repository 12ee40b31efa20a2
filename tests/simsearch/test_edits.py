"""The copy edits: named, seeded, deterministic, and each one really changes the picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simsearch.edits import EDITS, apply_edit, random_view
from simsearch.symbols import write_photos


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Image.Image:
    root = write_photos(tmp_path_factory.mktemp("pic"), 1, seed=3, side=128)
    with Image.open(next(root.glob("*.jpg"))) as im:
        return im.convert("RGB")


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", list(EDITS))
def test_each_edit_is_deterministic_under_a_seed_and_changes_the_image(picture: Image.Image, name: str) -> None:
    a = apply_edit(picture, name, np.random.default_rng(5))
    b = apply_edit(picture, name, np.random.default_rng(5))
    assert _same(a, b)
    assert a.mode == "RGB"
    assert not _same(a, picture)


def test_random_edits_differ_between_seeds(picture: Image.Image) -> None:
    for name in ("crop", "text", "border", "color"):
        assert not _same(
            apply_edit(picture, name, np.random.default_rng(1)), apply_edit(picture, name, np.random.default_rng(2))
        )


def test_edit_strengths_match_their_names(picture: Image.Image) -> None:
    w, h = picture.size
    small = apply_edit(picture, "resize", np.random.default_rng(0))
    assert small.size == (round(w * 0.3), round(h * 0.3))
    for seed in range(20):
        cw, ch = apply_edit(picture, "crop", np.random.default_rng(seed)).size
        assert 0.5 * w - 1 <= cw <= 0.9 * w + 1 and 0.5 * h - 1 <= ch <= 0.9 * h + 1
    bordered = apply_edit(picture, "border", np.random.default_rng(0))
    assert bordered.size[0] > w and bordered.size[1] > h
    gray = np.asarray(apply_edit(picture, "grayscale", np.random.default_rng(0))).astype(int)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    flipped = apply_edit(picture, "flip", np.random.default_rng(0))
    assert np.array_equal(np.asarray(flipped), np.asarray(picture)[:, ::-1])


def test_unknown_edit_is_refused(picture: Image.Image) -> None:
    with pytest.raises(ValueError, match="unknown edit"):
        apply_edit(picture, "sepia", np.random.default_rng(0))


def test_random_view_is_seeded(picture: Image.Image) -> None:
    views = [random_view(picture, np.random.default_rng(s)) for s in (0, 0, 1)]
    assert _same(views[0], views[1])
    assert not _same(views[0], views[2])


def test_random_view_grayscale_chance(picture: Image.Image) -> None:
    def gray_share(p: float) -> float:
        views = [np.asarray(random_view(picture, np.random.default_rng(s), gray=p)).astype(int) for s in range(40)]
        # a view counts as gray when most pixels are (a text overlay drawn afterwards keeps its colour;
        # JPEG recompression leaves rounding of a grey level or two)
        return float(np.mean([np.mean(np.ptp(v, axis=2) <= 2) > 0.8 for v in views]))

    assert gray_share(1.0) == 1.0 and gray_share(0.0) == 0.0
    assert 0.3 < gray_share(0.5) < 0.7


def test_the_augly_edit_set_is_seeded_and_beyond_our_ranges():
    from simsearch.edits import AUGLY_EDITS, EDITS, apply_edit, expand_edits

    img = Image.linear_gradient("L").resize((160, 120)).convert("RGB")
    for name in AUGLY_EDITS:
        a = apply_edit(img, name, np.random.default_rng(3))
        b = apply_edit(img, name, np.random.default_rng(3))
        assert a.mode == "RGB" and a.tobytes() == b.tobytes() and a.tobytes() != img.tobytes(), name
    canvas = apply_edit(img, "pad_canvas", np.random.default_rng(0))
    assert canvas.width >= 1.5 * img.width  # wider than any border the encoders trained with (20%)
    assert expand_edits("augly") == list(AUGLY_EDITS) and expand_edits("all,pixelize")[-1] == "pixelize"
    assert expand_edits("all") == list(EDITS)
    with pytest.raises(ValueError, match="unknown edit"):
        expand_edits("nosuch")


def test_wide_views_are_seeded_and_reach_beyond_the_classic_ones(picture: Image.Image) -> None:
    from simsearch.edits import view_canvas, view_corner, view_fade, wide_view

    views = [wide_view(picture, np.random.default_rng(s)) for s in (3, 3, 4)]
    assert _same(views[0], views[1]) and not _same(views[0], views[2])
    # the photo small on a canvas: the canvas is bigger than the photo, the photo is in it
    canvas = view_canvas(picture, np.random.default_rng(1))
    assert canvas.size[0] > picture.size[0] and canvas.size[1] > picture.size[1]
    # a corner crop never keeps the middle of the photo at the middle of the view
    for s in range(10):
        corner = view_corner(picture, np.random.default_rng(s))
        assert corner.size[0] <= 0.75 * picture.size[0] + 1 and corner.size[1] <= 0.75 * picture.size[1] + 1
    faded = np.asarray(view_fade(picture, np.random.default_rng(2))).astype(int)
    assert 0 < np.abs(faded - np.asarray(picture).astype(int)).mean()


def test_a_self_supervised_run_takes_classic_or_wide_views_only() -> None:
    from simsearch.train import SelfSupConfig

    assert SelfSupConfig(views="wide").views == "wide"
    with pytest.raises(ValueError, match=r"unknown views .extreme.; allowed: classic, wide"):
        SelfSupConfig(views="extreme")
