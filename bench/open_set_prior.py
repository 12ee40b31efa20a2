"""The built-in encoders' open-set priors (issue 38): how each encoder's best-of-gallery scores behave in
galleries of classes its training never saw, measured at gallery sizes from 2 classes up to what the held-out
classes allow, so that a one-image-a-class gallery gets a threshold for its size from a measurement.

Classes: those each encoder's training held out for validation (recorded in its model.json): Omniglot
background alphabets (characters), LFW A-J people (faces), SigComp2011 train writers' genuine signatures
(signatures; faces on dlib's network, which trained on no split here: all A-J people); for photos (copies: each
photo its own class) the clothing set's validation photos, which its training never used, probed also by an
edited copy of each (a copy is what that encoder is queried with; a gallery can only probe itself with its
originals, and the prior says how the two differ). `objects` has none:
the only set of kinds here, clothing, is what its head trained on (its 10 kinds), so no held-out kinds exist. Never an evaluation split. With --write the prior goes into the encoder's
model.json as `open_set_prior` (the weights, and so the fingerprint, are unchanged).

    python bench/open_set_prior.py --data ../shared/data [--write]

A study of how the prior is measured (nothing shipped): `--others-at-least K --sizes 2,3,4,5,6 --write-to DIR`
measures galleries that leave as few as K classes beside them for unknown probes (the shipped rule leaves 5)
and writes the encoder with that prior into a copy at DIR, for `simsearch evaluate ... --compare DIR`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simsearch.checkpoint import builtin_models
from simsearch.datasets import load_labelled, load_pictures
from simsearch.edits import ALL_EDITS, copies_in_turn
from simsearch.embed import Embedder
from simsearch.files import write_atomic
from simsearch.measures.prior import OpenSetPrior
from simsearch.model_files import read_model_json

DATA = {
    "characters": "omniglot/images_background.zip",
    "faces": "lfw/lfw-deepfunneled.zip",
    "signatures": "signatures/sigcomp2011-processed.zip",
    "photos": "clothing/clothing-small-256.zip",
}


def held_out(name: str, meta: dict) -> list[str] | str:
    if name == "photos":
        return "validation/*"
    held = [str(c) for c in meta.get("training", {}).get("held_out_classes", [])]
    if name == "faces" and not held:  # dlib's network, trained on no LFW split here: all of the training split
        return "[A-J]*"
    if name == "signatures":  # a writer is one class: its genuine signatures
        held = [c for c in held if "/genuine/" in c]
    return held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--models", default="characters,faces,signatures,photos")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--write-to", type=Path, default=None, help="write a copy of the encoder with this prior here")
    ap.add_argument("--others-at-least", type=int, default=5, help="classes left beside a gallery for unknowns")
    ap.add_argument("--sizes", default="2,5,10,20,50,100,200,500,1000", help="gallery sizes to measure")
    args = ap.parse_args()
    print("| encoder | classes (images) | sizes measured | threshold at FPIR 1% by size | seconds |")
    print("|---|---|---|---|---|")
    sizes = tuple(int(s) for s in args.sizes.split(","))
    if args.write_to is not None and "," in args.models:
        ap.error("--write-to writes one encoder: give one name to --models")
    for name in args.models.split(","):
        folder = builtin_models()[name]
        meta = read_model_json(folder)
        t0 = time.perf_counter()
        emb_model = Embedder.load(name)
        classes = held_out(name, meta)
        if name == "photos":  # copies: each photo its own class, queried by an edited copy of it
            pictures, _ = load_pictures(args.data / DATA[name], classes=str(classes), progress=False)
            emb, labels = emb_model.embed_images(pictures), np.arange(len(pictures))
            what = f"{len(emb)} validation/ photos of {DATA[name].split('/')[-1]}, each its own class"
            prior = OpenSetPrior.measure(
                emb,
                labels,
                what,
                sizes=sizes,
                others_at_least=args.others_at_least,
                shots=(),
                queries=emb_model.embed_images(copies_in_turn(pictures, list(ALL_EDITS), 7)),
                queries_are=f"one edited copy of each photo (the {len(ALL_EDITS)} edit types of simsearch.edits in turn)",
            )
        else:
            found = load_labelled(args.data / DATA[name], emb_model.preprocess, progress=False, classes=classes)
            emb, labels = emb_model.embed_arrays(found.images), found.labels
            what = f"{len(np.unique(labels))} held-out classes of {DATA[name].split('/')[-1]}"
            prior = OpenSetPrior.measure(emb, labels, what, sizes=sizes, others_at_least=args.others_at_least)
        per = []
        for s in prior.sizes:
            t = prior.threshold_at_fpir(s, 0.01)
            per.append(f"{s}: {t.value:.3f}" if t else f"{s}: -")
        print(
            f"| {name} | {len(np.unique(labels))} ({len(emb)}) | {', '.join(map(str, prior.sizes))} | "
            f"{'; '.join(per)} | {time.perf_counter() - t0:.0f} |",
            flush=True,
        )
        if args.write or args.write_to is not None:
            meta["open_set_prior"] = prior.to_dict()
            if args.write_to is not None:
                shutil.copytree(folder, args.write_to, dirs_exist_ok=True)
            out = folder if args.write_to is None else args.write_to
            write_atomic(out / "model.json", (json.dumps(meta, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
