"""Recording an encoder's open-set prior (simsearch.measures.prior) in its checkpoint's model.json: `train`
does it for every labelled model it makes, on the classes its validation held out; `calibrate --encoder`
does it for an imported or fine-tuned encoder on labelled classes it never trained on. The weights, and
so the fingerprint and every index built with them, are unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simsearch.datasets import LabelledSet, load_labelled
from simsearch.errors import DataError, ModelError
from simsearch.files import write_atomic
from simsearch.measures.prior import OpenSetPrior
from simsearch.model_files import CONFIG_FILE, builtin_models, read_model_json, resolve_model

if TYPE_CHECKING:
    from simsearch.embed import Embedder

__all__ = ["MIN_PRIOR_CLASSES", "measure_encoder_prior", "record_prior"]

# a prior needs galleries of at least 2 classes with 5 more classes to probe them
MIN_PRIOR_CLASSES = 7


def record_prior(
    folder: str | os.PathLike[str], data: LabelledSet, measured_on: str, embedder: Embedder | None = None
) -> OpenSetPrior:
    """Measure the checkpoint in `folder` (`embedder`, when it is already loaded) on `data` (classes it
    never trained on) and write the prior into its model.json atomically."""
    from simsearch.embed import Embedder

    folder = Path(folder)
    if len(data.classes) < MIN_PRIOR_CLASSES:
        raise DataError(
            f"an open-set prior needs at least {MIN_PRIOR_CLASSES} classes the encoder never trained on; "
            f"got {len(data.classes)}"
        )
    emb = (embedder or Embedder.load(str(folder))).embed_arrays(data.images)
    prior = OpenSetPrior.measure(emb, data.labels, measured_on)
    meta = read_model_json(folder)
    meta["open_set_prior"] = prior.to_dict()
    write_atomic(folder / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return prior


def measure_encoder_prior(
    model: str, data: str | os.PathLike[str], classes: str | None = None, progress: bool = True
) -> OpenSetPrior:
    """`calibrate --encoder MODEL LABELLED`: the prior of a checkpoint folder (not a built-in, whose own
    is measured with the package) on LABELLED's classes, recorded in its model.json."""
    from simsearch.embed import Embedder

    folder, source = resolve_model(model)
    if source in builtin_models():
        raise ModelError(f"{source} is a built-in encoder: its open-set prior ships with it (simsearch models)")
    embedder = Embedder.load(str(folder))
    found = load_labelled(data, embedder.preprocess, progress=progress, classes=classes)
    where = f"{Path(data).name}" + (f" ({classes})" if classes else "")
    return record_prior(folder, found, f"{len(found.classes)} classes of {where}", embedder)


def held_out_part(data: LabelledSet, held_out: list[str]) -> LabelledSet:
    """The images of the named classes (a training run's held-out ones)."""
    wanted = set(held_out)
    ids = np.array([i for i, c in enumerate(data.classes) if c in wanted], dtype=np.int64)
    return data.subset(ids)
