"""A training run from a flat set of options (the command line's): which objective, which encoder
(new, fine-tuned with --init, or the interrupted run's with --resume), the data loaded for it, and
the rules that tie those together, raised as ConfigError naming the fields at fault."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simsearch.encoder import Arch, EncoderConfig, Pool
from simsearch.errors import ConfigError
from simsearch.preprocess import Preprocess
from simsearch.train.labelled import TrainConfig, train
from simsearch.train.loop import LoopConfig, TrainResult
from simsearch.train.selfsup import SelfSupConfig, train_self_supervised

__all__ = ["ARCHITECTURE_FIELDS", "INPUT_FIELDS", "TrainRequest", "run_training"]

# the fields the weights fix (--init refuses them) and the input fields a fine-tune may change
ARCHITECTURE_FIELDS = ("arch", "channels", "widths", "embedding_dim", "pool")
INPUT_FIELDS = ("size", "invert", "crop", "autocontrast", "fit_ink", "face")


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def encoder_config(
    arch: str = "conv4",
    channels: int = 1,
    size: int = 28,
    widths: tuple[int, ...] = (64, 96, 128, 256),
    embedding_dim: int | None = None,
    pool: str = "avg",
    invert: bool | None = None,
    crop: float = 1.0,
    autocontrast: bool = False,
    fit_ink: bool = False,
    face: bool = False,
) -> EncoderConfig:
    """A new encoder's configuration. `invert` defaults to on for grayscale (dark strokes on light
    paper become the signal), off for RGB; without `embedding_dim` the pooled features are the
    embedding (no head)."""
    mean, std = ((0.0,), (1.0,)) if channels == 1 else ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    enc = EncoderConfig(
        arch=Arch.parse(arch),
        preprocess=Preprocess(
            channels=channels,
            size=size,
            invert=(channels == 1) if invert is None else invert,
            mean=mean,
            std=std,
            crop=crop,
            autocontrast=autocontrast,
            fit_ink=fit_ink,
            face=face,
        ),
        widths=tuple(widths),
        embedding_dim=embedding_dim or 1,
        pool=Pool.parse(pool),
    )
    return enc if embedding_dim else dataclasses.replace(enc, embedding_dim=enc.feature_dim)


@dataclass(frozen=True)
class TrainRequest:
    """Everything one training run needs, checked: data, output, encoder, objective settings."""

    data: Path
    out: Path
    encoder: EncoderConfig
    config: TrainConfig | SelfSupConfig
    classes: str | None = None  # glob over class names
    init_model: str | None = None  # fine-tune from this built-in name or checkpoint folder
    resume: bool = False
    given: frozenset[str] = frozenset()  # the options the user set (the others are defaults)

    @property
    def self_supervised(self) -> bool:
        return isinstance(self.config, SelfSupConfig)

    @classmethod
    def from_options(
        cls, data: Path, out: Path, options: Mapping[str, Any], given: Collection[str] = ()
    ) -> TrainRequest:
        """Build a request from flat options named as the configs' fields (plus the encoder's,
        `self_supervised`, `classes`, `init_model`, `resume`); options the chosen kind of run
        would ignore are refused when `given` says the user set them."""
        opts = dict(options)
        self_supervised = bool(opts.pop("self_supervised", False))
        kind: type[LoopConfig] = SelfSupConfig if self_supervised else TrainConfig
        other: type[LoopConfig] = TrainConfig if self_supervised else SelfSupConfig
        own = _fields(kind)
        stray = [f.name for f in dataclasses.fields(other) if f.name in given and f.name not in own]
        if stray:
            what = "labelled training (without --self-supervised)" if self_supervised else "--self-supervised training"
            raise ConfigError("{fields}: only for " + what, stray)
        enc_opts = {k: opts[k] for k in ARCHITECTURE_FIELDS + INPUT_FIELDS if k in opts}
        if "channels" in enc_opts:
            enc_opts["channels"] = int(enc_opts["channels"])
        config = kind(**{k: v for k, v in opts.items() if k in _fields(kind)})
        return cls(
            data=Path(data),
            out=Path(out),
            encoder=encoder_config(**enc_opts),
            config=config,  # type: ignore[arg-type]
            classes=opts.get("classes"),
            init_model=opts.get("init_model"),
            resume=bool(opts.get("resume", False)),
            given=frozenset(given),
        )


def _starting_point(req: TrainRequest) -> tuple[EncoderConfig, dict[str, Any] | None, str]:
    """(the encoder to train, the weights to start from or None, the data description for model.json)."""
    from simsearch.checkpoint import load_checkpoint

    enc = req.encoder
    given = [n for n in ARCHITECTURE_FIELDS + INPUT_FIELDS if n in req.given]
    source = str(req.data) if req.classes is None else f"{req.data} (classes {req.classes})"
    if req.init_model is not None:
        refused = [n for n in given if n in ARCHITECTURE_FIELDS]
        if refused:
            raise ConfigError(
                "{init} keeps the starting model's architecture; drop {fields}", refused, init="init_model"
            )
        if req.resume:
            raise ConfigError(
                "{init} starts a new run; {resume} continues one: give one of them", init="init_model", resume="resume"
            )
        loaded = load_checkpoint(req.init_model)
        # the weights fix the architecture; the input options given here replace the starting model's
        pre = dataclasses.replace(
            loaded.config.preprocess, **{n: getattr(enc.preprocess, n) for n in given if n in INPUT_FIELDS}
        )
        enc = dataclasses.replace(loaded.config, preprocess=pre)
        if enc.feature_dim != loaded.config.feature_dim:
            keep = loaded.config.preprocess.size
            raise ConfigError(
                f"{req.init_model} flattens its last {keep}-pixel map, so it cannot take {{fields}} "
                f"{enc.preprocess.size}; keep its size {keep}",
                ["size"],
            )
        return enc, loaded.encoder.state_dict(), f"{source}, fine-tuned from {req.init_model}"
    if req.resume and (req.out / "model.json").exists():
        # the interrupted run's checkpoint knows its architecture: no need to repeat the options
        saved = load_checkpoint(str(req.out))
        if given and saved.config != enc:
            raise ConfigError(
                "{resume} continues the run in "
                + f"{req.out} with its own architecture and preprocessing; drop "
                + "{fields}",
                given,
                resume="resume",
            )
        return saved.config, None, str(saved.meta.get("training", {}).get("data", source))
    return enc, None, source


def run_training(req: TrainRequest, progress: bool = True) -> TrainResult:
    """Load the data the request's encoder needs and train it (labelled or self-supervised)."""
    from simsearch.datasets import load_labelled, load_pictures

    enc, init, source = _starting_point(req)
    pre = enc.preprocess  # the input the encoder will see, from the options, --init or the resumed run
    if isinstance(req.config, SelfSupConfig):
        pictures, _ = load_pictures(req.data, max_side=max(96, 2 * pre.size), classes=req.classes, progress=progress)
        return train_self_supervised(
            pictures, enc, req.config, req.out, progress=progress, source=source, init=init, resume=req.resume
        )
    labelled = load_labelled(req.data, pre, progress=progress, classes=req.classes)
    return train(labelled, enc, req.config, req.out, resume=req.resume, progress=progress, source=source, init=init)
