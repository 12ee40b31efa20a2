"""The one training loop: class-balanced batches, augmentation, validation, best checkpoint, resume."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from index.store import write_file_atomic
from simsearch.checkpoint import save_checkpoint
from simsearch.datasets import LabelledSet, split_by_group
from simsearch.device import resolve_device
from simsearch.embed import embed_arrays_with
from simsearch.encoder import Encoder, EncoderConfig, build_encoder
from simsearch.errors import DataError, SimSearchError
from simsearch.evaluate import few_shot_accuracy, recommended_threshold
from simsearch.losses import Loss, Mining, contrastive_loss, episodic_loss, triplet_loss
from simsearch.signatures import has_forgeries, signature_verification

__all__ = [
    "TrainConfig",
    "TrainResult",
    "advance_bar",
    "color_jitter",
    "elastic_field",
    "load_training_state",
    "lr_factor",
    "save_training_state",
    "train",
    "training_bar",
    "write_history",
]

RESUME_WEIGHTS = "resume.safetensors"
RESUME_STATE = "resume.json"
_SIGNATURE_DRAWS = 5  # reference draws averaged per signature validation: 7 writers are few


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (the data and the encoder architecture aside)."""

    loss: Loss = Loss.EPISODIC
    classes_per_batch: int = 60  # P
    group_batches: bool = False  # fill batches with whole groups (a writer's genuine and forged signatures)
    per_class: int = 6  # K
    shot: int = 1  # episodic: support images per class; the other K - shot are queries
    margin: float | None = None  # contrastive 0.5, triplet 0.2 by default
    mining: Mining = Mining.BATCH_HARD
    steps: int = 2000
    time_budget_s: float | None = None  # stop (and finish the LR schedule) by this wall time
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    rotations: bool = False  # 90-degree rotations of each class become new classes (Omniglot habit)
    jitter: float = 1.0  # strength of the random affine jitter; 0 turns it off
    elastic: float = 0.0  # strength of the random smooth (elastic) warp, as handwriting varies; 0 = off
    flips: bool = False  # random horizontal flips (photos, faces)
    color_jitter: float = 0.0  # strength of random brightness/contrast/saturation changes (photos); 0 = off
    ema: float = 0.0  # validate and keep an exponential moving average of the weights with this decay; 0 = off
    val_fraction: float = 0.15
    val_fold: int = 0  # which disjoint block of held-out groups validates (cross-validation); 0 = the usual
    val_every: int = 250
    val_way: int = 20
    val_shot: int = 1
    val_episodes: int = 400
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", Loss.parse(str(getattr(self.loss, "value", self.loss))))
        object.__setattr__(self, "mining", Mining.parse(str(getattr(self.mining, "value", self.mining))))
        if self.classes_per_batch < 2 or self.per_class < 2:
            raise ValueError("a batch needs at least 2 classes and 2 images per class")
        if self.loss is Loss.EPISODIC and not 1 <= self.shot < self.per_class:
            raise ValueError("episodic loss needs 1 <= shot < images per class")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError("time budget must be positive")
        if self.lr <= 0:
            raise ValueError("learning rate must be positive")
        if self.val_fold < 0:
            raise ValueError("the validation fold must be 0 or more")
        if not 0 <= self.ema < 1:
            raise ValueError(f"the weight average's decay must be in [0, 1), not {self.ema}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss"] = self.loss.value
        d["mining"] = self.mining.value
        return d


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    fingerprint: str
    steps: int
    elapsed_s: float
    best_val_accuracy: float | None
    history: list[dict[str, float]]
    val_measure: str = "validation accuracy"  # what best_val_accuracy measures


class _Sampler:
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


def _augment(x: torch.Tensor, turns: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Quarter turns per image, random flips, and a small random affine jitter (batched)."""
    for t in (1, 2, 3):
        sel = (turns == t).to(x.device)
        if sel.any():
            x[sel] = torch.rot90(x[sel], t, dims=(2, 3))
    n = x.shape[0]
    if cfg.flips:
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x[flip] = x[flip].flip(3)
    if cfg.jitter > 0 or cfg.elastic > 0:
        j = cfg.jitter
        angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10) * j
        scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1 * j
        shear = (torch.rand(n, generator=gen) * 2 - 1) * 0.15 * j
        shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.08 * j
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        ).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        if cfg.elastic > 0:
            grid = grid + elastic_field(n, x.shape[2], x.shape[3], cfg.elastic, gen).to(x.device, x.dtype)
        x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    if cfg.color_jitter > 0:
        x = color_jitter(x, cfg.color_jitter, gen)
    return x


def elastic_field(n: int, height: int, width: int, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Smooth random displacements (n, height, width, 2) in grid_sample's [-1, 1] coordinates: a 4x4
    lattice of random offsets (standard deviation 2.5% of the image side times `strength`), bicubically
    interpolated, so strokes bend and stretch locally as they do between two people's handwriting."""
    coarse = torch.randn(n, 2, 4, 4, generator=gen) * (0.05 * strength)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)


def color_jitter(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and (on RGB) saturation factors in 1 ± 0.4 * strength per image,
    on a (N, C, H, W) batch in [0, 1]."""
    n = x.shape[0]

    def factors() -> torch.Tensor:
        f = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.4 * strength
        return f.clamp_min(0.0).to(x.device, x.dtype)

    x = x * factors()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factors() + mean
    if x.shape[1] == 3:
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        x = (x - gray) * factors() + gray
    return x.clamp(0.0, 1.0)


def training_bar(
    time_budget_s: float | None, steps: int, elapsed_before: float, step: int, progress: bool
) -> tqdm[Any]:
    """The training progress bar: with a time budget it counts seconds (the budget is what ends the
    run), else steps; a resumed run starts where the interrupted one stopped."""
    by_time = time_budget_s is not None
    return tqdm(
        total=int(time_budget_s) if time_budget_s is not None else steps,
        initial=int(elapsed_before) if by_time else step,
        desc="training",
        unit="s" if by_time else "step",
        disable=not progress,
        dynamic_ncols=True,
    )


def advance_bar(bar: tqdm[Any], elapsed: float, time_budget_s: float | None) -> None:
    """After one step: a seconds bar moves to the clock (never past its end), a steps bar by one."""
    bar.update(min(int(elapsed), bar.total) - bar.n if time_budget_s is not None else 1)


def write_history(out: Path, history: list[dict[str, float]]) -> None:
    """history.json beside the checkpoint: loss and validation at every interval of the run."""
    write_file_atomic(out / "history.json", (json.dumps(history, indent=1) + "\n").encode())


def lr_factor(step: int, steps: int, elapsed: float, warmup_steps: int, time_budget_s: float | None) -> float:
    """Linear warm-up, then cosine decay to 1% over the steps or the time budget, whichever runs out first."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    progress = step / steps
    if time_budget_s:
        progress = max(progress, elapsed / time_budget_s)
    return warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def training_encoder(
    config: EncoderConfig, device: torch.device, init: dict[str, torch.Tensor] | None = None
) -> Encoder:
    """A fresh encoder (or one starting from the `init` weights) on `device`, channels-last on CPU."""
    encoder = build_encoder(config)
    if init is not None:
        encoder.load_state_dict(init)
    encoder = encoder.to(device)
    if device.type == "cpu":
        encoder = encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return encoder


def save_training_state(
    out: Path,
    encoder: Encoder,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    scale: torch.Tensor | None = None,
    gen: torch.Generator | None = None,
    averaged: AveragedModel | None = None,
) -> None:
    """Everything needed to continue a run: weights, optimizer moments, the loss's learned scale,
    the torch RNG and the weight average when there are any, and `state` (JSON); as safetensors +
    JSON, no pickle."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    if averaged is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in averaged.state_dict().items()})
    if scale is not None:
        tensors["loss.scale"] = scale.detach().cpu().reshape(1)
    if gen is not None:
        tensors["rng"] = gen.get_state()
    opt_state = opt.state_dict()
    for pid, st in opt_state["state"].items():
        for name, val in st.items():
            tensors[f"opt.{pid}.{name}"] = (
                torch.as_tensor(val).detach().cpu().contiguous().reshape(-1)
                if name == "step"
                else val.detach().cpu().contiguous()
            )
    tmp = out / (RESUME_WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / RESUME_WEIGHTS)
    state = dict(state, param_groups=opt_state["param_groups"])
    write_file_atomic(out / RESUME_STATE, json.dumps(state, indent=2).encode())


def load_training_state(
    out: Path,
    encoder: Encoder,
    opt: torch.optim.Optimizer,
    scale: torch.Tensor | None = None,
    gen: torch.Generator | None = None,
    averaged: AveragedModel | None = None,
) -> dict[str, Any]:
    """Restore what save_training_state wrote into `encoder`, `opt`, `scale`, `gen` and `averaged`;
    returns the state."""
    try:
        state = json.loads((out / RESUME_STATE).read_text())
        tensors = load_file(str(out / RESUME_WEIGHTS))
        encoder.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if averaged is not None:
            averaged.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        if scale is not None:
            with torch.no_grad():
                scale.copy_(tensors["loss.scale"].reshape(()))
        if gen is not None:
            gen.set_state(tensors["rng"])
        opt_state: dict[str, Any] = {"state": {}, "param_groups": state.pop("param_groups")}
        for key, val in tensors.items():
            if key.startswith("opt."):
                _, pid, name = key.split(".", 2)
                opt_state["state"].setdefault(int(pid), {})[name] = val.reshape(()) if name == "step" else val
        opt.load_state_dict(opt_state)
    except (OSError, json.JSONDecodeError) as err:
        raise SimSearchError(f"{out}: nothing to resume from ({err})") from None
    except (KeyError, RuntimeError, ValueError) as err:
        raise SimSearchError(f"{out}: the saved state does not belong to this kind of run ({err})") from None
    return state


def train(
    data: LabelledSet,
    encoder_config: EncoderConfig,
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    source: str = "",
    on_step: Callable[[int], None] | None = None,
    init: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train a shared-weight encoder on `data` and write the best checkpoint into `out_dir`.

    Holds out whole groups (alphabets) for validation, validates every `val_every` steps with
    `val_way`-way `val_shot`-shot episodes and keeps the best checkpoint; with resume=True it
    continues from the state saved in `out_dir` by an earlier (interrupted) run. `on_step(step)`
    is called after every step, once that step's state is saved (raise from it to stop).
    `init` (a state dict of the same architecture) starts from trained weights: fine-tuning.
    """
    if data.images.shape[1] != encoder_config.preprocess.channels:
        raise DataError("the data's channels do not match the encoder's input")
    train_ids, val_ids = (
        split_by_group(data, cfg.val_fraction, cfg.seed, cfg.val_fold)
        if cfg.val_fraction > 0
        else (np.arange(len(data.classes)), np.array([], dtype=np.int64))
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_set = data.subset(train_ids)
    val_set = data.subset(val_ids) if len(val_ids) else None
    val_way = min(cfg.val_way, len(val_ids))
    if val_set is not None and val_way < 2:
        val_set = None
    # Held-out writers with genuine signatures and forgeries are validated on the task itself.
    val_signatures = val_set is not None and has_forgeries(val_set)
    val_name = "1-reference signature verification, 1 - EER" if val_signatures else f"{val_way}-way {cfg.val_shot}-shot"
    measure = "validation 1 - EER (1-reference signature verification)" if val_signatures else "validation accuracy"
    sampler = _Sampler(
        train_set.labels,
        len(train_set.classes),
        cfg.rotations,
        gen,
        groups=train_set.groups if cfg.group_batches else None,
    )
    p = min(cfg.classes_per_batch, sampler.n_classes)
    if p < 2:
        raise DataError("training needs at least two classes with two or more images each")

    encoder = training_encoder(encoder_config, device, init)
    # with --ema, validation and the checkpoint use a moving average of the weights, not the last step's
    averaged = AveragedModel(encoder, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema else None
    kept: Encoder = averaged.module if averaged is not None else encoder  # type: ignore[assignment]
    scale = torch.nn.Parameter(torch.tensor(10.0, device=device))
    groups: list[dict[str, Any]] = [{"params": list(encoder.parameters())}, {"params": [scale], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed_before, best, history = 0, 0.0, -1.0, []
    run_loss: float | None = None  # the running mean the bar and the history show
    if resume:
        state = load_training_state(out, encoder, opt, scale, gen, averaged)
        step, elapsed_before, best, history = state["step"], state["elapsed_s"], state["best"], state["history"]
        run_loss = state.get("run_loss")
    images = torch.from_numpy(train_set.images)
    margin = cfg.margin if cfg.margin is not None else (0.5 if cfg.loss is Loss.CONTRASTIVE else 0.2)
    amp = device.type == "cuda"
    start = time.monotonic()
    fingerprint = ""

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - start

    def validate() -> tuple[float, float]:
        """(val_way-way val_shot-shot accuracy, threshold at 1% false accepts) on the held-out classes;
        for signatures (balanced accuracy at the equal-error threshold, that threshold) of
        one-reference verification against skilled forgeries, averaged over _SIGNATURE_DRAWS draws."""
        assert val_set is not None
        emb = embed_arrays_with(kept, val_set.images, device)
        if val_signatures:
            runs = [signature_verification(emb, val_set, 1, seed=cfg.seed + i) for i in range(_SIGNATURE_DRAWS)]
            return 1.0 - float(np.mean([r.eer for r in runs])), float(np.mean([r.eer_threshold for r in runs]))
        acc = few_shot_accuracy(emb, val_set.labels, val_way, cfg.val_shot, cfg.val_episodes, seed=cfg.seed).accuracy
        return acc, recommended_threshold(emb, val_set.labels, seed=cfg.seed)

    summary_base = {
        "data": source,
        "train": cfg.to_dict(),
        "train_classes": len(train_set.classes),
        "val_classes": len(val_ids),
        "held_out_classes": sorted(data.classes[c] for c in val_ids),  # evaluate --fit-classes held-out
    }
    bar = training_bar(cfg.time_budget_s, cfg.steps, elapsed_before, step, progress)
    encoder.train()
    while step < cfg.steps and not (cfg.time_budget_s and elapsed() >= cfg.time_budget_s):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg.steps, elapsed(), cfg.warmup_steps, cfg.time_budget_s)
        idx, labels, turns = sampler.sample(p, cfg.per_class)
        x = images[idx].to(device).float().div_(255.0)
        x = _augment(x, turns, cfg, gen)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            emb = encoder(x)
        if cfg.loss is Loss.EPISODIC:
            loss, _ = episodic_loss(emb, labels, shot=cfg.shot, scale=scale)
        elif cfg.loss is Loss.TRIPLET:
            loss = triplet_loss(emb, labels, margin=margin, mining=cfg.mining)
        else:
            loss = contrastive_loss(emb, labels, margin=margin)
        if not torch.isfinite(loss):
            raise SimSearchError(f"training diverged at step {step} (loss {loss.item()}); try a lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if averaged is not None:
            averaged.update_parameters(encoder)
        step += 1
        run_loss = loss.item() if run_loss is None else 0.95 * run_loss + 0.05 * loss.item()
        advance_bar(bar, elapsed(), cfg.time_budget_s)
        last = step >= cfg.steps or bool(cfg.time_budget_s and elapsed() >= cfg.time_budget_s)
        if step % cfg.val_every == 0 or last:
            record: dict[str, float] = {"step": step, "loss": round(run_loss, 5), "elapsed_s": round(elapsed(), 1)}
            if val_set is not None:
                acc, threshold = validate()
                record["val_accuracy"] = round(acc, 5)
                if acc > best:
                    best = acc
                    fingerprint = save_checkpoint(
                        kept,
                        out,
                        dict(
                            summary_base,
                            steps=step,
                            elapsed_s=round(elapsed(), 1),
                            best_val_accuracy=round(best, 5),
                            val=val_name,
                        ),
                        threshold=round(threshold, 6),
                    )
            history.append(record)
            bar.set_postfix(
                step=step,
                loss=f"{run_loss:.4f}",
                val=f"{record.get('val_accuracy', float('nan')):.4f}",
                best=f"{best:.4f}",
            )
            save_training_state(
                out,
                encoder,
                opt,
                {"step": step, "elapsed_s": elapsed(), "best": best, "history": history, "run_loss": run_loss},
                scale,
                gen,
                averaged,
            )
            encoder.train()
        if on_step is not None:
            on_step(step)
    bar.close()
    if val_set is None or not fingerprint:
        if val_set is None or best < 0:
            fingerprint = save_checkpoint(kept, out, dict(summary_base, steps=step, elapsed_s=round(elapsed(), 1)))
        else:
            fingerprint = json.loads((out / "model.json").read_text())["fingerprint"]
    write_history(out, history)
    return TrainResult(out, fingerprint, step, elapsed(), best if best >= 0 else None, history, measure)
