"""Label-free Siamese training: two random edits of one photo go through the shared-weight
encoder and are pulled together, the other photos of the batch pushed apart (NT-Xent)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from simsearch.checkpoint import save_checkpoint
from simsearch.copydetect import copy_detection_table, embed_pictures, make_copy_queries, ranks_of_truth
from simsearch.device import resolve_device
from simsearch.edits import EDITS, random_view
from simsearch.encoder import EncoderConfig
from simsearch.errors import DataError, SimSearchError
from simsearch.evaluate import recommended_threshold
from simsearch.images import to_array
from simsearch.losses import ntxent_loss
from simsearch.train import (
    TrainResult,
    advance_bar,
    load_training_state,
    lr_factor,
    save_training_state,
    training_bar,
    training_encoder,
    write_history,
)

__all__ = ["SelfSupConfig", "train_self_supervised"]

KIND = "self-supervised"  # marks its resume state, so a labelled run's state is not taken for one


@dataclass(frozen=True)
class SelfSupConfig:
    """What shapes a self-supervised run."""

    batch: int = 128  # images per step; each gives two views
    temperature: float = 0.1
    grayscale: float = 0.5  # chance that a view loses its colour
    steps: int = 2000
    time_budget_s: float | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    val_fraction: float = 0.15  # images held out: their edited copies are searched among them
    val_every: int = 250
    val_images: int = 500  # at most this many held-out images
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.batch < 2:
            raise ValueError("a self-supervised batch needs at least 2 images")
        if self.steps < 1 or self.lr <= 0 or self.temperature <= 0:
            raise ValueError("steps, learning rate and temperature must be positive")
        if not 0.0 <= self.grayscale <= 1.0:
            raise ValueError("grayscale is a probability in [0, 1]")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), loss="nt-xent")


def train_self_supervised(
    pictures: list[Image.Image],
    encoder_config: EncoderConfig,
    cfg: SelfSupConfig,
    out_dir: str | Path,
    progress: bool = True,
    source: str = "",
    init: dict[str, torch.Tensor] | None = None,
    resume: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train an encoder on unlabelled pictures and write the best checkpoint into `out_dir`.

    Validation: a held-out share of the pictures is the gallery, one edited copy of each (every
    edit type in turn, seeded) the queries; the checkpoint with the best recall@1 is kept.
    `init` (a state dict of the same architecture) starts from trained weights: fine-tuning.
    With resume=True it continues, exactly, a run interrupted after a validation step (the same
    pictures and settings); `on_step(step)` is called after every step (raise from it to stop).
    """
    pre = encoder_config.preprocess
    mode = "L" if pre.channels == 1 else "RGB"
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(pictures))
    n_val = min(cfg.val_images, int(len(pictures) * cfg.val_fraction)) if cfg.val_fraction > 0 else 0
    val_pics = [pictures[i] for i in order[:n_val]]
    train_pics = [pictures[i] for i in order[n_val:]]
    if len(train_pics) < cfg.batch:
        raise DataError(f"{len(train_pics)} training images is fewer than the batch of {cfg.batch}")
    queries = make_copy_queries(val_pics, len(val_pics), tuple(EDITS), seed=cfg.seed) if n_val >= 2 else None
    if queries is not None:  # one edit per original, cycling through the types
        keep = [j for j, t in enumerate(queries.truth) if queries.edits[j] == list(EDITS)[t % len(EDITS)]]
        queries = type(queries)(
            [queries.images[j] for j in keep], queries.truth[keep], [queries.edits[j] for j in keep]
        )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    encoder = training_encoder(encoder_config, device, init)
    opt = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp = device.type == "cuda"

    def views(idx: np.ndarray, step: int) -> torch.Tensor:
        """Two random views of each picture, as one (2B, C, S, S) uint8 batch, seeded by step."""

        def one(j: int) -> np.ndarray:
            r = np.random.default_rng([cfg.seed, step, j])
            pic = train_pics[int(idx[j % len(idx)])]
            return to_array(random_view(pic, r, cfg.grayscale).convert(mode), pre.size, pre.crop, pre.ink)

        return torch.from_numpy(np.stack(list(pool.map(one, range(2 * len(idx))))))

    def validate() -> tuple[dict[str, float], float]:
        """({"val_recall@1": overall, "val_recall@1/<edit>": per edit type}, threshold at 1% FAR)."""
        assert queries is not None
        gallery = embed_pictures(encoder, val_pics, device)
        q = embed_pictures(encoder, queries.images, device)
        ranks = ranks_of_truth(gallery, q, queries.truth, "cosine", seed=cfg.seed)
        recalls = {
            "val_recall@1" + ("" if row["edit"] == "overall" else f"/{row['edit']}"): round(float(row["recall@1"]), 5)  # type: ignore[arg-type]
            for row in copy_detection_table(ranks, queries.edits)
        }
        both = np.concatenate([gallery, q])
        labels = np.concatenate([np.arange(len(gallery)), queries.truth])
        return recalls, recommended_threshold(both, labels, seed=cfg.seed)

    history: list[dict[str, float]] = []
    best, fingerprint, step, elapsed_before = -1.0, "", 0, 0.0
    summary = {"data": source, "train": cfg.to_dict(), "train_images": len(train_pics), "val_images": n_val}
    epoch_order = rng.permutation(len(train_pics))
    pos = 0
    next_idx: np.ndarray | None = None  # the batch of the next step, when resuming
    run_loss: float | None = None  # the running mean the bar and the history show
    if resume:
        state = load_training_state(out, encoder, opt)
        if state.get("kind") != KIND or state.get("train") != _settings(cfg) or state.get("pictures") != len(pictures):
            raise SimSearchError(
                f"{out}: the saved run used other settings or another number of pictures; "
                "resume it with the same data and options, or start a new run"
            )
        step, elapsed_before, best, history = state["step"], state["elapsed_s"], state["best"], state["history"]
        run_loss = state.get("run_loss")
        rng.bit_generator.state = state["rng"]
        epoch_order, pos = np.array(state["epoch_order"], dtype=np.int64), state["pos"]
        next_idx = np.array(state["next_batch"], dtype=np.int64)
    start = time.monotonic()

    def clock() -> float:
        return elapsed_before + time.monotonic() - start

    bar = training_bar(cfg.time_budget_s, cfg.steps, elapsed_before, step, progress)
    pool = ThreadPoolExecutor()
    loader = ThreadPoolExecutor(max_workers=1)  # prepares the next batch while this one trains

    def next_indexes() -> np.ndarray:
        nonlocal epoch_order, pos
        if pos + cfg.batch > len(epoch_order):
            epoch_order, pos = rng.permutation(len(train_pics)), 0
        pos += cfg.batch
        return epoch_order[pos - cfg.batch : pos]

    try:
        batch_idx = next_indexes() if next_idx is None else next_idx
        pending: Future[torch.Tensor] = loader.submit(views, batch_idx, step)
        if queries is not None and step == 0:
            recalls, _ = validate()
            history.append({"step": 0, **recalls})
        encoder.train()
        while step < cfg.steps and not (cfg.time_budget_s and clock() >= cfg.time_budget_s):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, cfg.steps, clock(), cfg.warmup_steps, cfg.time_budget_s)
            x_u8 = pending.result()
            if step + 1 < cfg.steps:
                batch_idx = next_indexes()
                pending = loader.submit(views, batch_idx, step + 1)
            x = x_u8.to(device).float().div_(255.0)
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                emb = encoder(x)
            loss = ntxent_loss(emb, cfg.temperature)
            if not torch.isfinite(loss):
                raise SimSearchError(f"training diverged at step {step} (loss {loss.item()}); try a lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            run_loss = loss.item() if run_loss is None else 0.95 * run_loss + 0.05 * loss.item()
            elapsed = clock()
            advance_bar(bar, elapsed, cfg.time_budget_s)
            last = step >= cfg.steps or bool(cfg.time_budget_s and elapsed >= cfg.time_budget_s)
            if step % cfg.val_every == 0 or last:
                record: dict[str, float] = {"step": step, "loss": round(run_loss, 5), "elapsed_s": round(elapsed, 1)}
                if queries is not None:
                    recalls, threshold = validate()
                    record.update(recalls)
                    acc = recalls["val_recall@1"]
                    if acc > best:
                        best = acc
                        fingerprint = save_checkpoint(
                            encoder,
                            out,
                            dict(summary, steps=step, elapsed_s=round(elapsed, 1), best_val_recall_at_1=round(acc, 5)),
                            threshold=round(threshold, 6),
                        )
                    encoder.train()
                history.append(record)
                bar.set_postfix(
                    step=step, loss=f"{run_loss:.4f}", val=f"{record.get('val_recall@1', float('nan')):.4f}"
                )
                resume_state = {
                    "kind": KIND,
                    "train": _settings(cfg),
                    "pictures": len(pictures),
                    "step": step,
                    "elapsed_s": elapsed,
                    "best": best,
                    "history": history,
                    "run_loss": run_loss,
                    "rng": rng.bit_generator.state,
                    "epoch_order": epoch_order.tolist(),
                    "pos": pos,
                    "next_batch": batch_idx.tolist(),
                }
                save_training_state(out, encoder, opt, resume_state)
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
        pool.shutdown(cancel_futures=True)
        loader.shutdown(cancel_futures=True)
    if not fingerprint:
        if best >= 0:  # the best checkpoint was written before a resume
            fingerprint = json.loads((out / "model.json").read_text())["fingerprint"]
        else:
            fingerprint = save_checkpoint(encoder, out, dict(summary, steps=step, elapsed_s=round(clock(), 1)))
    write_history(out, history)
    return TrainResult(out, fingerprint, step, clock(), best if best >= 0 else None, history, "validation recall@1")


def _settings(cfg: SelfSupConfig) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (the device may change)."""
    return {k: v for k, v in cfg.to_dict().items() if k != "device"}
