"""A training run from a flat set of options (the command line's): which objective, which encoder
(new, fine-tuned with --init, or the interrupted run's with --resume), the data loaded for it, and
the rules that tie those together, raised as ConfigError naming the fields at fault."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simsearch.config.train import EncoderOptions
from simsearch.encoder import Arch, EncoderConfig, Pool
from simsearch.errors import ConfigError, first_line
from simsearch.preprocess import Preprocess
from simsearch.train.captions import CaptionConfig, load_captioned, train_captions
from simsearch.train.labelled import TrainConfig, train
from simsearch.train.loop import LoopConfig, TrainResult
from simsearch.train.selfsup import SelfSupConfig, train_self_supervised

__all__ = ["ARCHITECTURE_FIELDS", "INPUT_FIELDS", "TrainRequest", "run_training"]

# the fields the weights fix (--init refuses them) and the input fields a fine-tune may change
ARCHITECTURE_FIELDS = ("arch", "channels", "widths", "embedding_dim", "pool")
INPUT_FIELDS = ("size", "invert", "crop", "autocontrast", "fit_ink", "face")


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def encoder_config(**options: Any) -> EncoderConfig:
    """A new encoder's configuration from EncoderOptions' fields (their defaults where not given). `invert`
    defaults to on for grayscale (dark strokes on light paper become the signal), off for RGB; without
    `embedding_dim` the pooled features are the embedding (no head)."""
    o = EncoderOptions(**options)
    channels = int(o.channels)
    mean, std = ((0.0,), (1.0,)) if channels == 1 else ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    enc = EncoderConfig(
        arch=Arch.parse(str(getattr(o.arch, "value", o.arch))),
        preprocess=Preprocess(
            channels=channels,
            size=o.size,
            invert=(channels == 1) if o.invert is None else o.invert,
            mean=mean,
            std=std,
            crop=o.crop,
            autocontrast=o.autocontrast,
            framing=Preprocess.framing_of(o.fit_ink, o.face),
        ),
        widths=tuple(o.widths),
        embedding_dim=o.embedding_dim or 1,
        pool=Pool.parse(str(getattr(o.pool, "value", o.pool))),
    )
    return enc if o.embedding_dim else dataclasses.replace(enc, embedding_dim=enc.feature_dim)


@dataclass(frozen=True)
class TrainRequest:
    """Everything one training run needs, checked: data, output, encoder, objective settings."""

    data: Path
    out: Path
    encoder: EncoderConfig
    config: TrainConfig | SelfSupConfig | CaptionConfig
    classes: str | None = None  # glob over class names
    init_model: str | None = None  # fine-tune from this built-in name or checkpoint folder
    head: int | None = None  # fine-tuning: a new linear projection head of this size
    resume: bool = False
    overwrite: bool = False  # replace the trained encoder already in `out` (else an occupied `out` is refused)
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
        captions = bool(opts.pop("captions", False))
        if self_supervised and captions:
            raise ConfigError("{a} and {b} are two kinds of run: give one", a="self_supervised", b="captions")
        kinds: dict[str, type[LoopConfig]] = {
            "labelled training (without --self-supervised or --captions)": TrainConfig,
            "--self-supervised training": SelfSupConfig,
            "--captions training": CaptionConfig,
        }
        kind: type[LoopConfig] = SelfSupConfig if self_supervised else CaptionConfig if captions else TrainConfig
        own = _fields(kind)
        for what, other in kinds.items():
            stray = [f.name for f in dataclasses.fields(other) if f.name in given and f.name not in own]
            if stray:
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
            head=opts.get("head"),
            resume=bool(opts.get("resume", False)),
            overwrite=bool(opts.get("overwrite", False)),
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
        weights = loaded.encoder.state_dict()
        if req.head is not None:  # a new projection head: the old one's weights are dropped (parts beside it stay)
            own = req.head + (enc.feature_dim if enc.head == "trunk+projection" else 0)  # a new projection beside
            enc = dataclasses.replace(enc, embedding_dim=own + enc.embedding_dim - enc.head_dim)
            weights = {k: v for k, v in weights.items() if not k.startswith("head.")}
        if enc.backbone is not None and enc.preprocess.size != loaded.config.preprocess.size:
            _check_backbone_size(enc, req.init_model, loaded.config.preprocess.size)
        elif enc.feature_dim != loaded.config.feature_dim:
            keep = loaded.config.preprocess.size
            raise ConfigError(
                f"{req.init_model} flattens its last {keep}-pixel map, so it cannot take {{fields}} "
                f"{enc.preprocess.size}; keep its size {keep}",
                ["size"],
            )
        return enc, weights, f"{source}, fine-tuned from {req.init_model}"
    if req.head is not None:
        raise ConfigError(
            "{head} puts a new projection head on a starting model: give {init}", head="head", init="init_model"
        )
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


def _check_backbone_size(enc: EncoderConfig, name: str, own: int) -> None:
    """A library backbone fine-tuned at another input size: refused when the network cannot take it."""
    import torch

    from simsearch.encoder import build_encoder

    side = enc.preprocess.size
    try:
        with torch.no_grad():
            build_encoder(enc, pretrained=False).eval()(torch.zeros(1, 3, side, side))
    except Exception as err:
        raise ConfigError(
            f"{name} does not take {side}-pixel input ({first_line(err)}); leave out {{fields}} to keep its {own}",
            ["size"],
        ) from None


def _captioned(
    req: TrainRequest, enc: EncoderConfig, init: dict[str, Any] | None, source: str, progress: bool
) -> TrainResult:
    """--captions: pictures with a caption beside each; a text tower is added to an encoder without one."""
    from simsearch.datasets import load_pictures
    from simsearch.images import to_array
    from simsearch.text import TextConfig, build_vocabulary

    assert isinstance(req.config, CaptionConfig)
    if enc.backbone is not None:
        raise ConfigError(
            "{captions} trains simsearch's own text tower; an imported backbone keeps its own "
            "(fine-tune its images with the labelled or self-supervised objectives)",
            captions="captions",
        )
    side = max(96, 2 * enc.preprocess.size)
    pictures, names = load_pictures(req.data, max_side=side, classes=req.classes, progress=progress)
    keep, captions = load_captioned(req.data, names)
    arrays = np.stack([to_array(pictures[i], enc.preprocess) for i in keep])
    if enc.text is None:
        cfg = req.config
        enc = dataclasses.replace(
            enc,
            text=TextConfig(vocabulary=build_vocabulary(captions), width=cfg.text_width, layers=cfg.text_layers),
        )
    return train_captions(
        arrays, captions, enc, req.config, req.out, progress=progress, source=source, init=init, resume=req.resume
    )


# what a training run writes into its output folder
RUN_FILES = ("model.json", "model.safetensors", "resume.json", "resume.safetensors", "history.json")


def _check_out(req: TrainRequest) -> None:
    """An output folder that already holds something is refused unless the run continues it (`resume`) or the
    user asked to replace it (`overwrite`): a finished encoder replaced by accident silences every index built
    with it (their fingerprint no longer matches)."""
    if req.resume and req.overwrite:
        raise ConfigError(
            "{resume} continues the run in the output folder; {overwrite} replaces it: give one",
            resume="resume",
            overwrite="overwrite",
        )
    out = req.out
    where = str(out).replace("{", "{{").replace("}", "}}")  # a template: braces in the path are text
    if out.exists() and not out.is_dir():
        raise ConfigError(where + ": exists and is not a folder; choose another {out}", out="out")
    if req.resume or not out.is_dir():
        return
    entries = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    ours = [n for n in entries if n in RUN_FILES]
    if entries and not ours:
        raise ConfigError(where + ": folder is not empty and holds no training run; choose another {out}", out="out")
    if ours and not req.overwrite:
        what = "a trained encoder" if "model.json" in ours else "an unfinished run"
        raise ConfigError(
            where + f": holds {what}; give {{resume}} to continue it, {{overwrite}} to replace it, or another {{out}}",
            out="out",
            resume="resume",
            overwrite="overwrite",
        )


def run_training(req: TrainRequest, progress: bool = True) -> TrainResult:
    """Load the data the request's encoder needs and train it (labelled, self-supervised or image-text)."""
    from simsearch.datasets import load_labelled, load_pictures

    _check_out(req)
    enc, init, source = _starting_point(req)
    if isinstance(req.config, CaptionConfig):
        return _captioned(req, enc, init, source, progress)
    pre = enc.preprocess  # the input the encoder will see, from the options, --init or the resumed run
    if isinstance(req.config, SelfSupConfig):
        pictures, _ = load_pictures(req.data, max_side=max(96, 2 * pre.size), classes=req.classes, progress=progress)
        return train_self_supervised(
            pictures, enc, req.config, req.out, progress=progress, source=source, init=init, resume=req.resume
        )
    labelled = load_labelled(req.data, pre, progress=progress, classes=req.classes)
    result = train(labelled, enc, req.config, req.out, resume=req.resume, progress=progress, source=source, init=init)
    _record_prior(req, labelled)
    return result


def _record_prior(req: TrainRequest, labelled: Any) -> None:
    """The trained encoder's open-set prior, measured on the classes its validation held out (when there
    are enough of them), recorded in its model.json for galleries too small to measure themselves."""
    from simsearch.encoder_prior import MIN_PRIOR_CLASSES, held_out_part, record_prior
    from simsearch.model_files import read_model_json

    held = read_model_json(req.out).get("training", {}).get("held_out_classes") or []
    part = held_out_part(labelled, [str(c) for c in held])
    if len(part.classes) >= MIN_PRIOR_CLASSES:
        record_prior(req.out, part, f"{len(part.classes)} held-out classes of {req.data.name}")
