"""How close unrelated photos sit for an encoder: a seeded sample of the images of a folder, every pair of distinct
pictures scored, and the quantiles of those scores set against the encoder's default duplicate threshold (its
model.json `duplicate_threshold`, fitted on its training data by bench/duplicate_thresholds.py). A copy detector
wants the 99th percentile well below that threshold. Prints one row per encoder.

    python bench/unrelated_pairs.py runs/augly_gallery --models photos,runs/photos_prev --sample 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simsearch.checkpoint import load_checkpoint
from simsearch.embed import Embedder
from simsearch.images import scan_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--models", default="photos")
    ap.add_argument("--sample", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    files = sorted(f.path for f in scan_folder(args.folder).files)
    rng = np.random.default_rng(args.seed)
    picks = [files[i] for i in np.sort(rng.choice(len(files), size=min(args.sample, len(files)), replace=False))]
    print(f"{len(picks)} pictures of {args.folder} (seed {args.seed}), every pair of distinct pictures")
    print(
        "| encoder | pairs | median | 99th percentile | 99.9th | largest | duplicate threshold | margin at the 99th |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        loaded = load_checkpoint(name)
        emb = Embedder(loaded.encoder, "cpu").embed_paths(picks)[0]
        iu = np.triu_indices(len(emb), 1)
        scores = (emb @ emb.T)[iu]
        q50, q99, q999 = np.quantile(scores, [0.5, 0.99, 0.999])
        dup = loaded.meta.get("duplicate_threshold")
        dup_value = dup.get("threshold") if isinstance(dup, dict) else dup
        margin = f"{dup_value - q99:.3f}" if dup_value is not None else "-"
        print(
            f"| {name} | {len(scores):,} | {q50:.3f} | {q99:.3f} | {q999:.3f} | {scores.max():.3f} | {dup_value} | {margin} |"
        )


if __name__ == "__main__":
    main()
