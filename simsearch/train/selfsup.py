"""Label-free Siamese training: two random edits of one photo go through the shared-weight
encoder and are pulled together, the other photos of the batch pushed apart (NT-Xent); validation
searches edited copies of held-out photos (recall@1)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from simsearch.config.train import SelfSupConfig
from simsearch.edits import EDITS, random_view, wide_view
from simsearch.embed import Embedder
from simsearch.encoder import Encoder, EncoderConfig
from simsearch.errors import DataError, SimSearchError
from simsearch.evaluate.copydetect import CopyQueries, copy_detection_table, make_copy_queries, ranks_of_truth
from simsearch.images import to_array
from simsearch.losses import ntxent_loss
from simsearch.measures.metrics import recommended_threshold
from simsearch.train.loop import TrainResult, run_loop

__all__ = ["SelfSupConfig", "train_self_supervised"]

KIND = "self-supervised"  # marks its resume state, so a labelled run's state is not taken for one


def _settings(cfg: SelfSupConfig) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (the device may change)."""
    return {k: v for k, v in cfg.to_dict().items() if k != "device"}


class _SelfSupervised:
    """The NT-Xent objective for run_loop: two seeded random views per picture, decoded one step ahead."""

    kind = KIND
    measure = "validation recall@1"
    validate_first = True

    def __init__(
        self, pictures: list[Image.Image], encoder_config: EncoderConfig, cfg: SelfSupConfig, source: str
    ) -> None:
        self.cfg, self.pre, self.n_pictures = cfg, encoder_config.preprocess, len(pictures)
        self.rng = np.random.default_rng(cfg.seed)
        order = self.rng.permutation(len(pictures))
        n_val = min(cfg.val_images, int(len(pictures) * cfg.val_fraction)) if cfg.val_fraction > 0 else 0
        self.val_pics = [pictures[i] for i in order[:n_val]]
        self.train_pics = [pictures[i] for i in order[n_val:]]
        if len(self.train_pics) < cfg.batch:
            raise DataError(f"{len(self.train_pics)} training images is fewer than the batch of {cfg.batch}")
        self.queries: CopyQueries | None = None
        if n_val >= 2:  # one edit per original, cycling through the types
            q = make_copy_queries(self.val_pics, n_val, tuple(EDITS), seed=cfg.seed)
            keep = [j for j, t in enumerate(q.truth) if q.edits[j] == list(EDITS)[t % len(EDITS)]]
            self.queries = CopyQueries([q.images[j] for j in keep], q.truth[keep], [q.edits[j] for j in keep])
        self.validates = self.queries is not None
        self.summary = {
            "data": source,
            "train": cfg.to_dict(),
            "train_images": len(self.train_pics),
            "val_images": n_val,
        }
        self.epoch_order = self.rng.permutation(len(self.train_pics))
        self.pos = 0
        self.pool = ThreadPoolExecutor()
        self.loader = ThreadPoolExecutor(max_workers=1)  # prepares the next batch while this one trains
        self.pending: tuple[int, np.ndarray, Future[torch.Tensor]] | None = None

    def bind(self, encoder: Encoder) -> None:
        pass  # the loss needs the embeddings only

    def extra_parameters(self, device: torch.device) -> list[dict[str, Any]]:
        return []

    def _views(self, idx: np.ndarray, step: int) -> torch.Tensor:
        """Two random views of each picture, as one (2B, C, S, S) uint8 batch, seeded by step."""

        def one(j: int) -> np.ndarray:
            r = np.random.default_rng([self.cfg.seed, step, j])
            view = wide_view if self.cfg.views == "wide" else random_view
            return to_array(view(self.train_pics[int(idx[j % len(idx)])], r, self.cfg.grayscale), self.pre)

        return torch.from_numpy(np.stack(list(self.pool.map(one, range(2 * len(idx))))))

    def _next_indexes(self) -> np.ndarray:
        b = self.cfg.batch
        if self.pos + b > len(self.epoch_order):
            self.epoch_order, self.pos = self.rng.permutation(len(self.train_pics)), 0
        self.pos += b
        return self.epoch_order[self.pos - b : self.pos]

    def _submit(self, step: int, idx: np.ndarray | None = None) -> None:
        idx = self._next_indexes() if idx is None else idx
        self.pending = (step, idx, self.loader.submit(self._views, idx, step))

    def batch(self, step: int, device: torch.device) -> tuple[torch.Tensor, Any]:
        if self.pending is None or self.pending[0] != step:
            self._submit(step)
        assert self.pending is not None
        x_u8 = self.pending[2].result()
        if step + 1 < self.cfg.steps:
            self._submit(step + 1)
        return x_u8.to(device).float().div_(255.0), None

    def loss(self, emb: torch.Tensor, aux: Any) -> torch.Tensor:
        return ntxent_loss(emb, self.cfg.temperature)

    def validate(self, encoder: Encoder, device: torch.device) -> tuple[dict[str, float], float, float]:
        """({"val_recall@1": overall, "val_recall@1/<edit>": per edit type}, recall@1, threshold at 1% FAR)."""
        queries = self.queries
        assert queries is not None
        embedder = Embedder(encoder, device)
        gallery = embedder.embed_images(self.val_pics)
        q = embedder.embed_images(queries.images)
        ranks = ranks_of_truth(gallery, q, queries.truth, "cosine", seed=self.cfg.seed)
        recalls = {
            "val_recall@1" + ("" if row["edit"] == "overall" else f"/{row['edit']}"): round(float(row["recall@1"]), 5)  # type: ignore[arg-type]
            for row in copy_detection_table(ranks, queries.edits)
        }
        both = np.concatenate([gallery, q])
        labels = np.concatenate([np.arange(len(gallery)), queries.truth])
        return recalls, recalls["val_recall@1"], recommended_threshold(both, labels, seed=self.cfg.seed)

    def best_summary(self, best: float) -> dict[str, Any]:
        return {"best_val_recall_at_1": round(best, 5)}

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        next_batch = self.pending[1].tolist() if self.pending is not None else []
        return {
            "train": _settings(self.cfg),
            "pictures": self.n_pictures,
            "rng": self.rng.bit_generator.state,
            "epoch_order": self.epoch_order.tolist(),
            "pos": self.pos,
            "next_batch": next_batch,
        }, {}

    def restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        if state.get("train") != _settings(self.cfg) or state.get("pictures") != self.n_pictures:
            raise SimSearchError(
                "the saved run used other settings or another number of pictures; "
                "resume it with the same data and options, or start a new run"
            )
        self.rng.bit_generator.state = state["rng"]
        self.epoch_order, self.pos = np.array(state["epoch_order"], dtype=np.int64), state["pos"]
        if state["next_batch"]:
            self._submit(state["step"], np.array(state["next_batch"], dtype=np.int64))

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        self.loader.shutdown(cancel_futures=True)


def train_self_supervised(
    pictures: list[Image.Image],
    encoder_config: EncoderConfig,
    cfg: SelfSupConfig,
    out_dir: str | Path,
    progress: bool = True,
    source: str = "",
    init: dict[str, torch.Tensor] | None = None,
    resume: bool = False,
    on_step: Any = None,
) -> TrainResult:
    """Train an encoder on unlabelled pictures and write the best checkpoint into `out_dir`.

    Validation: a held-out share of the pictures is the gallery, one edited copy of each (every
    edit type in turn, seeded) the queries; the checkpoint with the best recall@1 is kept.
    `init` (a state dict of the same architecture) starts from trained weights: fine-tuning.
    With resume=True it continues, exactly, a run interrupted after a validation step (the same
    pictures and settings); `on_step(step)` is called after every step (raise from it to stop).
    """
    objective = _SelfSupervised(pictures, encoder_config, cfg, source)
    return run_loop(objective, encoder_config, cfg, out_dir, 0.0, resume, progress, on_step, init)
