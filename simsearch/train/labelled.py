"""Labelled training: class-balanced P x K batches, augmentation, and the episodic, triplet or contrastive step;
validation by few-shot episodes (or signature verification) on held-out groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from simsearch.config.train import TrainConfig
from simsearch.datasets import LabelledSet, split_by_group
from simsearch.embed import Embedder
from simsearch.encoder import Encoder, EncoderConfig
from simsearch.errors import DataError
from simsearch.evaluate.signatures import has_forgeries, signature_verification
from simsearch.losses import Loss, contrastive_loss, episodic_loss, triplet_loss
from simsearch.measures.metrics import few_shot_accuracy, recommended_threshold
from simsearch.train.augment import Augment, augment
from simsearch.train.loop import TrainResult, run_loop

__all__ = ["Sampler", "TrainConfig", "augment_of", "train"]

_SIGNATURE_DRAWS = 5  # reference draws averaged per signature validation: 7 writers are few


def augment_of(cfg: TrainConfig) -> Augment:
    return Augment(flips=cfg.flips, jitter=cfg.jitter, elastic=cfg.elastic, color_jitter=cfg.color_jitter)


class Sampler:
    """Class-balanced P x K batches over (optionally rotation-augmented) classes."""

    def __init__(
        self,
        labels: np.ndarray,
        n_classes: int,
        rotations: bool,
        gen: torch.Generator,
        groups: list[str] | None = None,
    ) -> None:
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=n_classes)
        self.order = torch.from_numpy(order)
        self.starts = torch.from_numpy(np.cumsum(counts) - counts)
        self.counts = torch.from_numpy(counts)
        self.usable = torch.from_numpy(np.flatnonzero(counts >= 2))
        self.factor = 4 if rotations else 1
        self.gen = gen
        # with groups: batches are filled with whole groups, so classes meet their hardest negatives
        self.group_members: list[torch.Tensor] = []
        if groups is not None:
            by_group: dict[str, list[int]] = {}
            for pos, c in enumerate(self.usable.tolist()):
                by_group.setdefault(groups[c], []).append(pos)
            self.group_members = [torch.tensor(v) for _, v in sorted(by_group.items())]

    @property
    def n_classes(self) -> int:
        return len(self.usable) * self.factor

    def sample(self, p: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image indexes (P*K,), batch labels (P*K,), quarter turns (P*K,)), grouped by class."""
        if self.group_members:
            chosen, total = [], 0
            for g in torch.randperm(len(self.group_members), generator=self.gen).tolist():
                members = self.group_members[g]
                turn = torch.randint(self.factor, (len(members),), generator=self.gen)
                chosen.append(members * self.factor + turn)
                total += len(members)
                if total >= p:
                    break
            picks = torch.cat(chosen)[:p]
            p = len(picks)
        else:
            picks = torch.randperm(self.n_classes, generator=self.gen)[:p]
        base = self.usable[picks // self.factor]
        idx = []
        for c in base.tolist():
            n = int(self.counts[c])
            within = torch.randperm(n, generator=self.gen)[:k] if n >= k else torch.randint(n, (k,), generator=self.gen)
            idx.append(self.order[self.starts[c] + within])
        labels = torch.arange(p).repeat_interleave(k)
        turns = (picks % self.factor).repeat_interleave(k)
        return torch.cat(idx), labels, turns


class _Labelled:
    """The labelled objective for run_loop: sampled, augmented batches and a metric-learning loss."""

    kind = "labelled"
    validate_first = False

    def __init__(self, data: LabelledSet, encoder_config: EncoderConfig, cfg: TrainConfig, source: str) -> None:
        if data.images.shape[1] != encoder_config.preprocess.channels:
            raise DataError("the data's channels do not match the encoder's input")
        train_ids, val_ids = (
            split_by_group(data, cfg.val_fraction, cfg.seed, cfg.val_fold)
            if cfg.val_fraction > 0
            else (np.arange(len(data.classes)), np.array([], dtype=np.int64))
        )
        self.cfg = cfg
        self.gen = torch.Generator().manual_seed(cfg.seed)
        train_set = data.subset(train_ids)
        val_set = data.subset(val_ids) if len(val_ids) else None
        self.val_way = min(cfg.val_way, len(val_ids))
        if val_set is not None and self.val_way < 2:
            val_set = None
        self.val_set = val_set
        self.validates = val_set is not None
        # Held-out writers with genuine signatures and forgeries are validated on the task itself.
        self.signatures = val_set is not None and has_forgeries(val_set)
        self.val_name = (
            "1-reference signature verification, 1 - EER"
            if self.signatures
            else f"{self.val_way}-way {cfg.val_shot}-shot"
        )
        self.measure = (
            "validation 1 - EER (1-reference signature verification)" if self.signatures else "validation accuracy"
        )
        self.sampler = Sampler(
            train_set.labels,
            len(train_set.classes),
            cfg.rotations,
            self.gen,
            groups=train_set.groups if cfg.group_batches else None,
        )
        self.p = min(cfg.classes_per_batch, self.sampler.n_classes)
        if self.p < 2:
            raise DataError("training needs at least two classes with two or more images each")
        self.images = torch.from_numpy(train_set.images)
        self.margin = cfg.margin if cfg.margin is not None else (0.5 if cfg.loss is Loss.CONTRASTIVE else 0.2)
        self.summary = {
            "data": source,
            "train": cfg.to_dict(),
            "train_classes": len(train_set.classes),
            "val_classes": len(val_ids),
            "held_out_classes": sorted(data.classes[c] for c in val_ids),  # evaluate --fit-classes held-out
        }

    def bind(self, encoder: Encoder) -> None:
        pass  # the loss needs the embeddings only

    def extra_parameters(self, device: torch.device) -> list[dict[str, Any]]:
        """The episodic loss's learned temperature, made on the training device (run_loop calls this first)."""
        self.scale = torch.nn.Parameter(torch.tensor(10.0, device=device))
        return [{"params": [self.scale], "weight_decay": 0.0}]

    def batch(self, step: int, device: torch.device) -> tuple[torch.Tensor, Any]:
        idx, labels, turns = self.sampler.sample(self.p, self.cfg.per_class)
        x = self.images[idx].to(device).float().div_(255.0)
        return augment(x, turns, augment_of(self.cfg), self.gen), labels.to(device)

    def loss(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.loss is Loss.EPISODIC:
            return episodic_loss(emb, labels, shot=cfg.shot, scale=self.scale)[0]
        if cfg.loss is Loss.TRIPLET:
            return triplet_loss(emb, labels, margin=self.margin, mining=cfg.mining)
        return contrastive_loss(emb, labels, margin=self.margin)

    def validate(self, encoder: Encoder, device: torch.device) -> tuple[dict[str, float], float, float]:
        """val_way-way val_shot-shot accuracy and the threshold at 1% false accepts on the held-out
        classes; for signatures, 1 - EER of one-reference verification against skilled forgeries
        and the EER threshold, averaged over _SIGNATURE_DRAWS reference draws."""
        val_set, cfg = self.val_set, self.cfg
        assert val_set is not None
        emb = Embedder(encoder, device).embed_arrays(val_set.images)
        if self.signatures:
            runs = [signature_verification(emb, val_set, 1, seed=cfg.seed + i) for i in range(_SIGNATURE_DRAWS)]
            score, threshold = (
                1.0 - float(np.mean([r.eer for r in runs])),
                float(np.mean([r.eer_threshold for r in runs])),
            )
        else:
            score = few_shot_accuracy(
                emb, val_set.labels, self.val_way, cfg.val_shot, cfg.val_episodes, seed=cfg.seed
            ).accuracy
            threshold = recommended_threshold(emb, val_set.labels, seed=cfg.seed)
        return {"val_accuracy": round(score, 5)}, score, threshold

    def best_summary(self, best: float) -> dict[str, Any]:
        return {"best_val_accuracy": round(best, 5), "val": self.val_name}

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {"loss.scale": self.scale.detach().reshape(1), "rng": self.gen.get_state()}

    def restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.scale.copy_(tensors["loss.scale"].reshape(()))
        self.gen.set_state(tensors["rng"])

    def close(self) -> None:
        pass


def train(
    data: LabelledSet,
    encoder_config: EncoderConfig,
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    source: str = "",
    on_step: Any = None,
    init: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train a shared-weight encoder on `data` and write the best checkpoint into `out_dir`.

    Holds out whole groups (alphabets) for validation, validates every `val_every` steps with
    `val_way`-way `val_shot`-shot episodes and keeps the best checkpoint; with resume=True it
    continues from the state saved in `out_dir` by an earlier (interrupted) run. `on_step(step)`
    is called after every step, once that step's state is saved (raise from it to stop).
    `init` (a state dict of the same architecture) starts from trained weights: fine-tuning.
    """
    objective = _Labelled(data, encoder_config, cfg, source)
    return run_loop(objective, encoder_config, cfg, out_dir, cfg.ema, resume, progress, on_step, init)
