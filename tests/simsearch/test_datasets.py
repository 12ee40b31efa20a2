"""Labelled sets from folders and zips, class globs, group splits and folds, unlabelled pictures."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from simsearch.datasets import class_group, load_labelled, load_pictures, split_by_group
from simsearch.errors import DataError
from simsearch.preprocess import Preprocess
from simsearch.symbols import write_symbol_set


def test_folder_and_zip_give_the_same_set(tmp_path, gallery):
    pre = Preprocess.plain(1, 20)
    folder = load_labelled(gallery, pre, progress=False)
    archive = tmp_path / "g.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(gallery.rglob("*.png")):
            zf.write(p, "images_background/" + str(p.relative_to(gallery)))  # one shared top folder is dropped
    zipped = load_labelled(archive, pre, progress=False)
    assert folder.classes == zipped.classes == ["circle", "cross", "star", "triangle"]
    assert folder.images.shape == zipped.images.shape == (16, 1, 20, 20) and folder.images.dtype == np.uint8
    assert np.array_equal(folder.images, zipped.images) and np.array_equal(folder.labels, zipped.labels)
    only = load_labelled(gallery, pre, progress=False, classes="c*")
    assert only.classes == ["circle", "cross"] and len(only.images) == 8
    sub = folder.subset(np.array([2]))
    assert sub.classes == ["star"] and set(sub.labels.tolist()) == {0} and len(sub.paths) == 4


def test_unreadable_images_are_skipped_or_refused(tmp_path, gallery):
    (gallery / "star" / "zz_bad.png").write_bytes(b"not a png")
    pre = Preprocess.plain(1, 16)
    assert len(load_labelled(gallery, pre, progress=False).images) == 16
    with pytest.raises(Exception, match="bad"):
        load_labelled(gallery, pre, progress=False, strict=True)
    with pytest.raises(DataError):
        load_labelled(tmp_path / "nowhere", pre, progress=False)


def test_group_split_never_splits_a_group_and_folds_are_disjoint(tmp_path):
    root = tmp_path / "alphabets"
    for alphabet in ("Greek", "Latin", "Runic", "Hebrew", "Cyrillic", "Thai"):
        write_symbol_set(root / alphabet, ["circle", "star"], per_class=2, seed=len(alphabet))
    data = load_labelled(root, Preprocess.plain(1, 16), progress=False)
    assert class_group(data.classes[0]) == data.classes[0].split("/")[0]
    seen = set()
    for fold in range(3):
        train_ids, val_ids = split_by_group(data, 1 / 3, seed=0, fold=fold)
        val_groups = {data.groups[c] for c in val_ids}
        assert len(val_groups) == 2 and not val_groups & {data.groups[c] for c in train_ids}
        assert not val_groups & seen
        seen |= val_groups
    with pytest.raises(DataError, match="fold 3 does not exist"):
        split_by_group(data, 1 / 3, seed=0, fold=3)


def test_pictures_need_no_labels_and_are_shrunk(photos):
    pics, names = load_pictures(photos, max_side=40, progress=False)
    assert len(pics) == len(names) == 120 and min(pics[0].size) == 40 and pics[0].mode == "RGB"
