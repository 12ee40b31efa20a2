"""Faces found, levelled and cut out before the faces encoder (simsearch.faces, OpenCV's bundled Haar
cascades) on drawn faces the tests make; re-framings for the robustness measure (edits.reframe)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from simsearch.edits import REFRAMINGS, reframe
from simsearch.errors import ImageError
from simsearch.faces import NO_FACE, FaceChoice, face_crops, find_faces
from simsearch.images import decode_image, load_array
from simsearch.preprocess import Preprocess
from simsearch.symbols import FACE_BACKGROUND as BACKGROUND
from simsearch.symbols import draw_face
from tests.conftest import run_cli


def group_photo() -> Image.Image:
    """Two people side by side: a 200-pixel face on the left, a 160-pixel one on the right."""
    g = Image.new("RGB", (640, 300), BACKGROUND)
    g.paste(draw_face(200), (20, 50))
    g.paste(draw_face(160, hair=(150, 120, 40)), (400, 80))
    return g


FACE_PRE = Preprocess(channels=3, size=32, invert=False, mean=(0.5,) * 3, std=(0.25,) * 3, framing="face")


def test_a_face_is_found_where_it_is_and_cut_out_square_around_it():
    faces = find_faces(draw_face(200))
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert w == h and 110 <= w <= 200 and abs(x + w / 2 - 100) < 20 and abs(y + h / 2 - 100) < 25
    [(_face, cut)] = face_crops(draw_face(200))
    assert cut.size[0] == cut.size[1] and abs(cut.size[0] - 1.1 * w) <= 1


def test_every_face_of_a_group_photo_largest_first_and_the_largest_alone_by_default():
    faces = find_faces(group_photo())
    assert len(faces) == 2
    assert faces[0].box[0] < 320 < faces[1].box[0] and faces[0].box[2] > faces[1].box[2]
    assert len(face_crops(group_photo(), FaceChoice.LARGEST)) == 1


def test_a_picture_without_a_face_is_refused_with_that_reason(tmp_path):
    blank = tmp_path / "sky.png"
    Image.new("RGB", (300, 200), (120, 160, 230)).save(blank)
    with pytest.raises(ImageError) as err:
        load_array(blank, FACE_PRE)
    assert err.value.reason == NO_FACE and str(blank) in str(err.value)


def test_the_face_is_framed_alike_however_the_photo_frames_it():
    """Padded, shifted, scaled or tightly cropped: the encoder's input is nearly the same picture."""
    base = draw_face(200)
    ref = load_array(_png(base), FACE_PRE).astype(np.float32)
    for kind in ("pad", "scale"):
        for seed in range(3):
            img = reframe(base, kind, np.random.default_rng(seed))
            got = load_array(_png(img), FACE_PRE).astype(np.float32)
            assert np.abs(got - ref).mean() < 20, (kind, seed)
    # centre cropping, what the encoder did before, is far off on a padded photo
    padded = reframe(base, "pad", np.random.default_rng(0))
    old = Preprocess(channels=3, size=32, invert=False, mean=(0.5,) * 3, std=(0.25,) * 3, crop=0.5)
    assert (
        np.abs(load_array(_png(padded), old).astype(np.float32) - ref).mean()
        > 2 * np.abs(load_array(_png(padded), FACE_PRE).astype(np.float32) - ref).mean()
    )


def test_reframings_do_what_they_say_and_are_seeded():
    img = draw_face(100)
    assert reframe(img, "pad", np.random.default_rng(1)).size == (200, 200)
    for seed in range(5):
        w, h = reframe(img, "scale", np.random.default_rng(seed)).size
        assert 50 <= w <= 200 and w == h
        tw, _ = reframe(img, "tight", np.random.default_rng(seed)).size
        assert 50 <= tw <= 60
        assert reframe(img, "shift", np.random.default_rng(seed)).size == (100, 100)
    a = reframe(img, "mixed", np.random.default_rng(7))
    b = reframe(img, "mixed", np.random.default_rng(7))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert sorted(REFRAMINGS) == ["pad", "scale", "shift", "tight"]


def test_face_framing_replaces_the_centre_crop():
    with pytest.raises(ValueError, match="face framing"):
        Preprocess(channels=3, size=32, mean=(0.5,) * 3, std=(0.25,) * 3, crop=0.5, framing="face")
    assert Preprocess.from_dict(FACE_PRE.to_dict()) == FACE_PRE


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    """A small random checkpoint that frames faces (its preprocessing: the largest face, 32x32 RGB)."""
    import torch

    from simsearch.checkpoint import save_checkpoint
    from simsearch.encoder import EncoderConfig, build_encoder

    torch.manual_seed(7)
    out = tmp_path_factory.mktemp("face_model")
    config = EncoderConfig(preprocess=FACE_PRE, widths=(8, 16, 16, 32), embedding_dim=32)
    save_checkpoint(build_encoder(config), out)
    return out


def _png(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_identify_every_face_of_a_group_photo_through_the_cli(tmp_path, face_model):
    gallery = tmp_path / "people"
    for name, hair in (("ann", (60, 40, 30)), ("bob", (150, 120, 40))):
        (gallery / name).mkdir(parents=True)
        for i, size in enumerate((180, 200, 220)):
            draw_face(size, hair=hair).save(gallery / name / f"{i}.png")
    Image.new("RGB", (300, 200), (120, 160, 230)).save(gallery / "ann" / "sky.png")
    index = tmp_path / "people.idx"
    built = run_cli("index", "build", gallery, "--index", index, "--model", face_model, "--json", check=True)
    report = json.loads(built.stdout)
    assert report["added"] == 6 and [s["reason"] for s in report["skipped"]] == [NO_FACE]
    group = tmp_path / "group.png"
    group_photo().save(group)
    res = run_cli("identify", group, "--index", index, "--every-face", "--closed-set", "--json", check=True)
    answers = [json.loads(line) for line in res.stdout.splitlines()]
    assert [a["query"].split("@")[0] for a in answers] == [f"{group}#face1", f"{group}#face2"]
    assert all(a["label"] in ("ann", "bob") for a in answers)
    one = run_cli("identify", group, "--index", index, "--closed-set", "--json", check=True)
    assert [json.loads(line)["query"] for line in one.stdout.splitlines()] == [str(group)]


def test_a_faces_encoder_given_pictures_without_faces_warns_and_says_why_each_is_skipped(tmp_path, gallery, face_model):
    res = run_cli("index", "build", gallery, "--index", tmp_path / "x.idx", "--model", face_model, "--json")
    report = json.loads(res.stdout)
    assert any("show no face" in w and "--model photos" in w for w in report["warnings"])
    assert report["added"] == 0 and {s["reason"] for s in report["skipped"]} == {NO_FACE}


def test_every_face_needs_an_encoder_that_frames_faces(tmp_path, gallery, random_model):
    index = tmp_path / "g.idx"
    run_cli("index", "build", gallery, "--index", index, "--model", random_model, check=True)
    res = run_cli("query", next(gallery.rglob("*.png")), "--index", index, "--every-face")
    assert res.returncode == 1 and "needs an encoder that frames faces" in res.stderr


def test_decoded_photos_keep_enough_pixels_for_small_faces(tmp_path):
    """A 12-megapixel group photo is shrunk before the search, but not below where its faces are findable."""
    big = Image.new("RGB", (4000, 3000), BACKGROUND)
    big.paste(draw_face(400), (500, 1200))
    big.paste(draw_face(320, hair=(150, 120, 40)), (2500, 1300))
    path = tmp_path / "big.jpg"
    big.save(path, quality=90)
    img = decode_image(path, channels=3, min_side=1024)
    assert len(find_faces(img)) == 2


def test_train_face_frames_every_image_by_its_face_and_records_it(tmp_path):
    data = tmp_path / "people"
    for name, hair in (("ann", (60, 40, 30)), ("bob", (150, 120, 40)), ("cy", (20, 20, 20))):
        (data / name).mkdir(parents=True)
        for i, size in enumerate((150, 180, 200)):
            draw_face(size, hair=hair).save(data / name / f"{i}.png")
    Image.new("RGB", (300, 200), (120, 160, 230)).save(data / "cy" / "sky.png")
    out = tmp_path / "m"
    run_cli(
        "train", data, "--out", out, "--arch", "resnet", "--channels", "3", "--size", "32", "--widths", "8,16",
        "--embedding-dim", "16", "--face", "--classes-per-batch", "3", "--per-class", "2", "--steps", "2",
        "--val-fraction", "0", "--json", check=True, timeout=240,
    )  # fmt: skip
    pre = json.loads((out / "model.json").read_text())["config"]["preprocess"]
    assert pre["face"] is True and pre["crop"] == 1.0
    refused = run_cli("train", data, "--out", tmp_path / "n", "--face", "--crop", "0.5", "--steps", "1")
    assert refused.returncode == 2 and "face framing" in refused.stderr
