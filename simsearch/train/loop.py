"""The one training loop for every objective: learning-rate schedule, AMP, weight average, progress bar,
validation cadence, best checkpoint, history and exact resume. An objective supplies the batches, the
loss and the validation (labelled.py, selfsup.py)."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from simsearch.checkpoint import save_checkpoint
from simsearch.config.train import LoopConfig
from simsearch.device import resolve_device
from simsearch.encoder import Encoder, EncoderConfig, build_encoder
from simsearch.errors import SimSearchError
from simsearch.files import commit_pair, settled_json, write_atomic

__all__ = [
    "LoopConfig",
    "Objective",
    "TrainResult",
    "load_training_state",
    "lr_factor",
    "run_loop",
    "save_training_state",
    "training_encoder",
]

RESUME_WEIGHTS = "resume.safetensors"
RESUME_STATE = "resume.json"


@dataclass(frozen=True)
class TrainResult:
    """A finished run: where its checkpoint is, its fingerprint, and how validation went."""

    out_dir: Path
    fingerprint: str
    steps: int
    elapsed_s: float
    best_val_accuracy: float | None
    history: list[dict[str, float]]
    val_measure: str = "validation accuracy"  # what best_val_accuracy measures
    step_s: float = 0.0  # mean wall time of one optimizer step (batch, forward, backward, update), this session

    def to_dict(self) -> dict[str, Any]:
        """The summary `simsearch train --json` prints."""
        return {
            "out": str(self.out_dir),
            "fingerprint": self.fingerprint,
            "steps": self.steps,
            "elapsed_s": round(self.elapsed_s, 1),
            "step_s": round(self.step_s, 4),
            "best_val_accuracy": self.best_val_accuracy,
        }


class Objective(Protocol):
    """What one kind of training adds to the loop (a step function and its validation)."""

    kind: str  # marks the resume state, so one kind's state is not taken for another's
    measure: str  # what the validation score measures, for the report
    summary: dict[str, Any]  # the data and settings recorded in model.json
    validates: bool  # whether validate() has anything to measure
    validate_first: bool  # also measure the starting weights (recorded as step 0)

    def bind(self, encoder: Encoder) -> None:
        """Called with the encoder being trained before the first step (a loss that needs the encoder
        itself, as the image-text one needs its text tower); most objectives need nothing."""
        ...

    def extra_parameters(self, device: torch.device) -> list[dict[str, Any]]:
        """Optimizer parameter groups of the objective's own (a learned loss scale), if any."""
        ...

    def batch(self, step: int, device: torch.device) -> tuple[torch.Tensor, Any]:
        """(input (B, C, S, S) float in [0, 1] on `device`, whatever loss() needs beside the embeddings)."""
        ...

    def loss(self, emb: torch.Tensor, aux: Any) -> torch.Tensor: ...

    def validate(self, encoder: Encoder, device: torch.device) -> tuple[dict[str, float], float, float]:
        """(entries for the history record, the score the best checkpoint is chosen on, threshold at 1% FAR)."""
        ...

    def best_summary(self, best: float) -> dict[str, Any]:
        """What model.json records about the best validation."""
        ...

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON, tensors) the objective needs to continue exactly where it stopped."""
        ...

    def restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...

    def close(self) -> None: ...


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
    """A fresh encoder (or one starting from the `init` weights) on `device`, channels-last on CPU.
    Weights `init` lacks must be the head's or the text tower's, new ones (train --head, --captions)."""
    encoder = build_encoder(config, pretrained=init is None)
    if init is not None:
        result = encoder.load_state_dict(init, strict=False)
        new = [k for k in result.missing_keys if not k.startswith(("head.", "text."))]
        if new:
            raise SimSearchError(f"the starting weights lack {len(new)} of the encoder's (e.g. {new[0]})")
        if result.unexpected_keys:  # as strict loading was: weights the encoder has no place for
            extra = result.unexpected_keys
            raise SimSearchError(
                f"the starting weights hold {len(extra)} the encoder has no place for (e.g. {extra[0]})"
            )
    encoder = encoder.to(device)
    if device.type == "cpu":
        encoder = encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return encoder


def save_training_state(
    out: Path,
    encoder: Encoder,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    extra: dict[str, torch.Tensor] | None = None,
    averaged: AveragedModel | None = None,
) -> None:
    """Everything needed to continue a run: weights, optimizer moments, the weight average when
    there is one, the objective's tensors (`extra`: a loss scale, an RNG) and `state` (JSON); as
    safetensors + JSON, no pickle."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    if averaged is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in averaged.state_dict().items()})
    tensors.update({k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    opt_state = opt.state_dict()
    for pid, st in opt_state["state"].items():
        for name, val in st.items():
            tensors[f"opt.{pid}.{name}"] = (
                torch.as_tensor(val).detach().cpu().contiguous().reshape(-1)
                if name == "step"
                else val.detach().cpu().contiguous()
            )
    data = st_save(tensors)
    state = dict(state, param_groups=opt_state["param_groups"], weights_sha256=hashlib.sha256(data).hexdigest())
    # one step: a stop between the two writes leaves the last state or the new one, never weights of one save
    # with the JSON of another
    commit_pair(out, RESUME_WEIGHTS, data, RESUME_STATE, json.dumps(state, indent=2).encode())


def load_training_state(
    out: Path, encoder: Encoder, opt: torch.optim.Optimizer, averaged: AveragedModel | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore what save_training_state wrote into `encoder`, `opt` and `averaged`; returns the
    JSON state and the tensors (for the objective's own)."""
    try:
        state = json.loads((out / RESUME_STATE).read_text())
        data = (out / RESUME_WEIGHTS).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if state.get("weights_sha256", digest) != digest:
            settled = settled_json(out, RESUME_STATE, digest, lambda doc: doc.get("weights_sha256"))
            if settled is None:
                raise SimSearchError(f"{out}: {RESUME_WEIGHTS} is not the one {RESUME_STATE} was saved with")
            state = settled
        state.pop("weights_sha256", None)
        tensors = st_load(data)
        encoder.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if averaged is not None:
            averaged.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
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
    return state, tensors


def _bar(cfg: LoopConfig, elapsed_before: float, step: int, progress: bool) -> tqdm[Any]:
    """With a time budget the bar counts seconds (the budget is what ends the run), else steps;
    a resumed run starts where the interrupted one stopped."""
    by_time = cfg.time_budget_s is not None
    return tqdm(
        total=int(cfg.time_budget_s) if cfg.time_budget_s is not None else cfg.steps,
        initial=int(elapsed_before) if by_time else step,
        desc="training",
        unit="s" if by_time else "step",
        disable=not progress,
        dynamic_ncols=True,
    )


def run_loop(
    objective: Objective,
    encoder_config: EncoderConfig,
    cfg: LoopConfig,
    out_dir: str | Path,
    ema: float = 0.0,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    init: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train a shared-weight encoder with `objective` and write the best checkpoint into `out_dir`.

    Every `cfg.val_every` steps (and at the last) the objective validates, the checkpoint with the
    best score is kept, and the resume state is saved; with resume=True the run continues from
    that state. With `ema` (a decay in (0, 1)) validation and the checkpoint use an exponential
    moving average of the weights. `init` (a state dict of the same architecture) starts from
    trained weights: fine-tuning. `on_step(step)` runs after every step (raise from it to stop).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    encoder = training_encoder(encoder_config, device, init)
    if cfg.train_blocks is not None:
        from simsearch.train.freeze import freeze

        freeze(encoder, cfg.train_blocks)
    objective.bind(encoder)
    averaged = AveragedModel(encoder, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True) if ema else None
    kept: Encoder = averaged.module if averaged is not None else encoder  # type: ignore[assignment]
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": trainable}, *objective.extra_parameters(device)]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed_before, best, history = 0, 0.0, -1.0, []
    run_loss: float | None = None  # the running mean the bar and the history show
    if resume:
        state, tensors = load_training_state(out, encoder, opt, averaged)
        if state.get("kind", "labelled") != objective.kind:
            raise SimSearchError(
                f"{out}: the saved state is of a {state.get('kind', 'labelled')} run, not {objective.kind}"
            )
        try:
            objective.restore(state, tensors)
        except SimSearchError as err:
            raise SimSearchError(f"{out}: {err}") from None
        step, elapsed_before, best, history = state["step"], state["elapsed_s"], state["best"], state["history"]
        run_loss = state.get("run_loss")
    amp = device.type == "cuda"
    start = time.monotonic()
    step_time, steps_here = 0.0, 0  # the optimizer steps' own time, without validation
    fingerprint = ""

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - start

    def out_of_time() -> bool:
        return bool(cfg.time_budget_s and elapsed() >= cfg.time_budget_s)

    bar = _bar(cfg, elapsed_before, step, progress)
    try:
        if objective.validates and objective.validate_first and step == 0:
            entries, _, _ = objective.validate(kept, device)
            history.append({"step": 0, **entries})
        encoder.train()
        while step < cfg.steps and not out_of_time():
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, cfg.steps, elapsed(), cfg.warmup_steps, cfg.time_budget_s)
            t_step = time.monotonic()
            x, aux = objective.batch(step, device)
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                emb = encoder(x)
            loss = objective.loss(emb, aux)
            if not torch.isfinite(loss):
                raise SimSearchError(f"training diverged at step {step} (loss {loss.item()}); try a lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if averaged is not None:
                averaged.update_parameters(encoder)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step_time += time.monotonic() - t_step
            steps_here += 1
            step += 1
            run_loss = loss.item() if run_loss is None else 0.95 * run_loss + 0.05 * loss.item()
            now = elapsed()
            bar.update(min(int(now), bar.total) - bar.n if cfg.time_budget_s is not None else 1)
            if step % cfg.val_every == 0 or step >= cfg.steps or out_of_time():
                record: dict[str, float] = {"step": step, "loss": round(run_loss, 5), "elapsed_s": round(now, 1)}
                if objective.validates:
                    entries, score, threshold = objective.validate(kept, device)
                    record.update(entries)
                    if score > best:
                        best = score
                        summary = dict(objective.summary, steps=step, elapsed_s=round(now, 1))
                        fingerprint = save_checkpoint(
                            kept, out, dict(summary, **objective.best_summary(best)), threshold=round(threshold, 6)
                        )
                    encoder.train()
                history.append(record)
                bar.set_postfix(step=step, loss=f"{run_loss:.4f}", best=f"{best:.4f}")
                own, extra = objective.state()
                resume_state = {"kind": objective.kind, "step": step, "elapsed_s": now, "best": best}
                resume_state.update(history=history, run_loss=run_loss, **own)
                save_training_state(out, encoder, opt, resume_state, extra, averaged)
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
        objective.close()
    if not fingerprint:
        if best >= 0:  # the best checkpoint was written before a resume
            fingerprint = json.loads((out / "model.json").read_text())["fingerprint"]
        else:
            summary = dict(objective.summary, steps=step, elapsed_s=round(elapsed(), 1))
            fingerprint = save_checkpoint(kept, out, summary)
    write_atomic(out / "history.json", (json.dumps(history, indent=1) + "\n").encode())
    return TrainResult(
        out,
        fingerprint,
        step,
        elapsed(),
        best if best >= 0 else None,
        history,
        objective.measure,
        step_time / max(1, steps_here),
    )
