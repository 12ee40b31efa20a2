"""Default `simsearch duplicates` thresholds for the built-in encoders, fitted on their training data.

For each encoder: a seeded sample of its reference (training) images, every pair of distinct pictures
(different bytes) scored, and the threshold that a share 1e-5 of those pairs reaches (the false-match
rate). With --copies, the share of edited copies (one edit each, every edit type in turn) that score at
least that against their original. With --write, the threshold is recorded in the encoder's model.json
(the weights, and so the fingerprint, are unchanged).

    python bench/duplicate_thresholds.py --data ../shared/data [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simsearch.checkpoint import builtin_models
from simsearch.datasets import ZipMember, gather_images
from simsearch.edits import EDITS, apply_edit
from simsearch.embed import Embedder
from simsearch.images import decode_image
from simsearch.measures.metrics import threshold_at_far

FMR = 1e-5
SAMPLE = 5000
# encoder -> (reference set, class glob) of its training data: never the evaluation splits
REFERENCE = {
    "characters": ("omniglot/images_background.zip", None),
    "faces": ("lfw/lfw-deepfunneled.zip", "[A-J]*"),
    "photos": ("clothing/clothing-small-256.zip", "train/*"),
    "objects": ("clothing/clothing-small-256.zip", "train/*"),
    "signatures": ("signatures/sigcomp2011-processed.zip", "train/*"),
}


def _embed_found(pictures: list, emb: Embedder) -> tuple[np.ndarray, list[int]]:
    """Embeddings of the pictures the encoder can frame (faces: those with a face), each framed once,
    and their positions in `pictures`."""
    from concurrent.futures import ThreadPoolExecutor

    from simsearch.errors import ImageError
    from simsearch.images import to_array

    def framed(picture) -> np.ndarray | None:
        try:
            return to_array(picture, emb.preprocess)
        except ImageError:
            return None

    with ThreadPoolExecutor() as pool:
        arrays = list(pool.map(framed, pictures))
    kept = [k for k, a in enumerate(arrays) if a is not None]
    return emb.embed_arrays(np.stack([arrays[k] for k in kept])), kept


def measure(name: str, data: Path, seed: int = 0, fmr: float = FMR, sample: int = SAMPLE) -> dict:
    """The duplicate threshold of built-in encoder `name` on its reference set under `data`."""
    rel, classes = REFERENCE[name]
    return measure_on(name, data / rel, classes, rel, seed, fmr, sample)


def measure_on(
    name: str, source: Path, classes: str | None, rel: str, seed: int = 0, fmr: float = FMR, sample: int = SAMPLE
) -> dict:
    """The threshold at false-match rate `fmr` over pairs of distinct pictures of a sample of `source`, and
    the share of edited copies that reach it."""
    emb = Embedder.load(name, "cpu")
    items = gather_images(source, classes, need_class=False)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(items), size=min(sample, len(items)), replace=False))
    chosen = [item[2].read() if isinstance(item[2], ZipMember) else item[2] for item in (items[i] for i in picks)]
    digests = [hashlib.sha256(b if isinstance(b, bytes) else Path(b).read_bytes()).hexdigest() for b in chosen]
    pics = [decode_image(b, channels=3) for b in chosen]
    vecs, kept = _embed_found(pics, emb)  # faces embeds the face it finds: pictures without one are left out
    pics, digests = [pics[k] for k in kept], [digests[k] for k in kept]
    i, j = np.triu_indices(len(vecs), k=1)
    _, digest_ids = np.unique(np.array(digests), return_inverse=True)  # small ints, not 12.5M strings
    distinct = digest_ids[i] != digest_ids[j]
    scores = (vecs @ vecs.T)[i[distinct], j[distinct]]
    t = threshold_at_far(scores, fmr)
    edit_names = list(EDITS)
    copies = [
        apply_edit(p, edit_names[k % len(edit_names)], np.random.default_rng([seed, k]))
        for k, p in enumerate(pics[:600])
    ]
    found_vecs, found = _embed_found(copies, emb)
    cv = np.zeros((len(copies), vecs.shape[1]), np.float32)
    cv[found] = found_vecs  # a copy whose face is lost scores 0: not found
    copy_scores = np.einsum("ij,ij->i", cv, vecs[: len(cv)])
    per_edit = {
        e: round(
            float(np.mean(copy_scores[[k for k in range(len(cv)) if edit_names[k % len(edit_names)] == e]] >= t)), 3
        )
        for e in edit_names
    }
    return {
        "threshold": round(float(t), 6),
        "fmr": fmr,
        "pairs": int(distinct.sum()),
        "measured_on": f"{len(vecs):,} pictures of {rel}" + (f" ({classes})" if classes else ""),
        "copies_found": round(float(np.mean(copy_scores >= t)), 3),
        "copies_found_by_edit": per_edit,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--only", nargs="*", default=list(REFERENCE))
    ap.add_argument("--fmr", type=float, default=FMR, help="false-match rate a pair of distinct pictures")
    ap.add_argument("--sample", type=int, default=SAMPLE, help="pictures sampled from the reference set")
    ap.add_argument("--write", action="store_true", help="record each threshold in the encoder's model.json")
    args = ap.parse_args()
    folders = builtin_models()
    print(f"{'encoder':12s} {'threshold':>9s} {'pairs':>10s} {'copies found':>12s}  measured on")
    for name in args.only:
        r = measure(name, args.data, fmr=args.fmr, sample=args.sample)
        print(f"{name:12s} {r['threshold']:9.4f} {r['pairs']:10,d} {r['copies_found']:12.3f}  {r['measured_on']}")
        print(f"{'':12s} by edit: {r['copies_found_by_edit']}")
        if args.write:
            path = folders[name] / "model.json"
            meta = json.loads(path.read_text())
            meta["duplicate_threshold"] = {
                k: r[k] for k in ("threshold", "fmr", "pairs", "measured_on", "copies_found")
            }
            path.write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
