"""A training run's settings, each declared once with its default, help text and section: the run itself
(data, output, kind, starting point), the new encoder and its input framing, the loop every objective
shares, and each objective's own (labelled, self-supervised, image-text). `simsearch train` builds its
options from these fields; the configs check what can be checked alone and raise ConfigError naming the
fields at fault. Free of torch, faiss and click."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simsearch.config.choices import Arch, Loss, Mining, Pool, Views, parse_choice
from simsearch.config.options import option
from simsearch.errors import ConfigError

__all__ = ["SECTIONS", "CaptionConfig", "EncoderOptions", "LoopConfig", "SelfSupConfig", "TrainConfig", "TrainRun"]

# the order of --help's headings
SECTIONS = (
    DATA := "Data and output",
    ENCODER := "Encoder",
    FRAMING := "Input framing (kept in the model's preprocessing)",
    LABELLED := "Labelled objective",
    AUGMENT := "Augmentation (labelled)",
    SELFSUP := "Self-supervised (no labels)",
    CAPTIONS := "Image-text (captions: text queries)",
    FINETUNE := "Fine-tuning a backbone (with --init)",
    SCHEDULE := "Schedule",
    VALIDATION := "Validation",
)


@dataclass(frozen=True)
class TrainRun:
    """What run this is: where it writes, which classes, which kind, where it starts."""

    out: Path = option(help="Folder for model.safetensors + model.json (and resume state).", section=DATA, kind="path")
    classes: str | None = option(
        None,
        "Train only on classes whose name matches, e.g. '[A-J]*' (LFW people A to J) or 'train/*'.",
        section=DATA,
        metavar="GLOB",
    )
    resume: bool = option(
        False,
        "Continue an interrupted run (labelled or --self-supervised) from the state saved in --out at its last "
        "validation; the architecture comes from there, the other options must be the run's own.",
        section=DATA,
    )
    overwrite: bool = option(
        False,
        "Replace the trained encoder (or unfinished run) already in --out; without it an occupied --out is "
        "refused, since indexes built with the old encoder stop answering once it is replaced.",
        section=DATA,
    )
    init_model: str | None = option(
        None,
        "Fine-tune: start from the weights of a built-in encoder (e.g. photos) or a checkpoint folder. Its "
        "architecture is kept, so --arch, --channels, --widths, --embedding-dim and --pool must not be given; so "
        "is its preprocessing, except what --size, --invert/--no-invert, --crop, --autocontrast/--no-autocontrast, "
        "--fit-ink/--no-fit-ink or --face/--no-face say "
        "(networks that average their last map take any input size; --pool flatten ones keep theirs).",
        section=DATA,
        flag="--init",
        metavar="MODEL",
    )
    self_supervised: bool = option(
        False,
        "No labels: DATA is any folder (or zip) of images; two random edits of each image (crop, flip, colour, "
        "grayscale, blur, JPEG, rotation, text, border) are pulled together, other images pushed apart (NT-Xent). "
        "Validation searches edited copies of held-out images (recall@1).",
        section=SELFSUP,
    )
    captions: bool = option(
        False,
        "Image-text training, CLIP-style: DATA is a folder of pictures, each with its caption in a text file of "
        "the same name (photo.jpg + photo.txt). A text tower learns to put each caption beside its pictures, so "
        "the encoder answers query --text. Validation: held-out captions as text queries (recall@5).",
        section=CAPTIONS,
    )
    head: int | None = option(
        None,
        "With --init: put a new linear projection head of DIM on the starting model's features (for an OpenCLIP "
        "encoder the head maps text too, so text queries still work).",
        section=FINETUNE,
        bounds=(2, 4096),
        metavar="DIM",
    )


@dataclass(frozen=True)
class EncoderOptions:
    """A new encoder: its network and how its input is framed (kept in the model's preprocessing)."""

    arch: Arch = option(Arch.CONV4, "Encoder architecture.", section=ENCODER, choices=Arch, values=("conv4", "resnet"))
    channels: int = option(1, "1 = grayscale input, 3 = RGB.", section=ENCODER, kind="channels")
    size: int = option(28, "Input side in pixels.", section=ENCODER, bounds=(8, 512))
    widths: tuple[int, ...] = option(
        (64, 96, 128, 256), "Channels per stage, comma-separated.", section=ENCODER, kind="ints"
    )
    embedding_dim: int | None = option(
        None,
        "Embedding size (default: the length of the pooled features, which a linear head then maps to it otherwise).",
        section=ENCODER,
        bounds=(2, 4096),
    )
    pool: Pool = option(
        Pool.AVG,
        "How the last stage's map becomes a vector: averaged over its positions, or flattened so that where "
        "each part sits counts (last width x positions left, e.g. 256 x 2 x 2 from 32 pixels and 4 stages).",
        section=ENCODER,
        choices=Pool,
    )
    invert: bool | None = option(
        None,
        "Invert intensities (dark strokes on light paper become the signal). Default: on for grayscale, off for RGB.",
        section=FRAMING,
        negatable=True,
        show_default=False,
    )
    crop: float = option(
        1.0,
        "Keep this centred share of each side before resizing (0.5 on LFW's 250x250 portraits keeps the face).",
        section=FRAMING,
        bounds=(0.1, 1.0),
    )
    autocontrast: bool = option(
        False,
        "Stretch each image's contrast to the full range inside the encoder, so thin or faint pen lines "
        "(grey once shrunk) look like any other stroke; kept in the model's preprocessing.",
        section=FRAMING,
        negatable=True,
    )
    fit_ink: bool = option(
        False,
        "Drawings (one channel): frame each image by the square around its strokes before resizing, so a "
        "character drawn small, large or off-centre fills the input alike; the ink is dark unless --no-invert. "
        "Kept in the model's preprocessing.",
        section=FRAMING,
        negatable=True,
    )
    face: bool = option(
        False,
        "Photos of people: find the largest face in each image (OpenCV's Haar cascades), level it by its eyes "
        "and cut out a square 1.1 times the detector's box before resizing, so any framing (a portrait, a tight "
        "crop, a group photo) gives the encoder the same view; images without a face are skipped. Replaces "
        "--crop; kept in the model's preprocessing.",
        section=FRAMING,
        negatable=True,
    )


def _at_least(cfg: Any, name: str, low: float) -> None:
    if getattr(cfg, name) < low:
        raise ConfigError("{fields} must be at least " + f"{low:g}, not {getattr(cfg, name)}", [name])


@dataclass(frozen=True)
class LoopConfig:
    """What every objective's run shares: length, schedule, validation cadence, seed, device."""

    steps: int = option(
        2000, "Optimizer steps (an upper bound when --time-budget is given).", section=SCHEDULE, bounds=(1, None)
    )
    time_budget_s: float | None = option(
        None,
        "Stop after this long, e.g. 80m; the learning-rate schedule follows the clock.",
        section=SCHEDULE,
        flag="--time-budget",
        kind="duration",
    )
    lr: float = option(1e-3, "Peak learning rate (AdamW, cosine schedule).", section=SCHEDULE)
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    val_fraction: float = option(
        0.15, "Share of groups (alphabets) held out for validation; 0 = none.", section=VALIDATION, bounds=(0, 0.9)
    )
    val_every: int = option(
        250, "Validate (and keep the best checkpoint) every N steps.", section=VALIDATION, bounds=(1, None)
    )
    seed: int = option(0, "Seed for sampling, augmentation and initialization.", section=SCHEDULE)
    device: str = "auto"
    # fine-tuning: train only the last N blocks of the image network and the head (0: the head alone);
    # None trains everything (simsearch.train.freeze)
    train_blocks: int | None = option(
        None,
        "Train only the last N blocks of the image network (a ResNet's residual blocks, a ViT's transformer "
        "blocks) and the head; the rest stays frozen, batch norm included. 0: the head alone. Default: "
        "everything. Far faster on a CPU, and safer on little data.",
        section=FINETUNE,
        bounds=(0, None),
    )

    def __post_init__(self) -> None:
        if self.train_blocks is not None:
            _at_least(self, "train_blocks", 0)
        _at_least(self, "steps", 1)
        _at_least(self, "val_every", 1)
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError("{fields} must be positive", ["time_budget_s"])
        if self.lr <= 0:
            raise ConfigError("{fields} (the learning rate) must be positive", ["lr"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """Everything that shapes a labelled run (the data and the encoder architecture aside)."""

    loss: Loss = option(Loss.EPISODIC, "Training objective.", section=LABELLED, choices=Loss)
    classes_per_batch: int = option(60, "P: classes per batch.", section=LABELLED, bounds=(2, None))
    group_batches: bool = option(
        False,
        "Fill each batch with whole groups (an alphabet's characters; a writer's genuine signatures and "
        "forgeries) so that classes meet their hardest negatives.",
        section=DATA,
    )
    per_class: int = option(6, "K: images per class per batch.", section=LABELLED, bounds=(2, None))
    shot: int = option(
        1, "Episodic loss: support images per class (the rest are queries).", section=LABELLED, bounds=(1, None)
    )
    margin: float | None = option(
        None, "Margin for contrastive (default 0.5) or triplet (default 0.2) loss.", section=LABELLED
    )
    mining: Mining = option(Mining.BATCH_HARD, "Triplet mining.", section=LABELLED, choices=Mining)
    rotations: bool = option(
        False, "Add 90/180/270-degree rotations of each class as new classes (usual on Omniglot).", section=AUGMENT
    )
    jitter: float = option(1.0, "Strength of random affine jitter (0 = off).", section=AUGMENT, bounds=(0, 3))
    elastic: float = option(
        0.0,
        "Strength of a random smooth local warp that bends strokes as handwriting varies "
        "(characters, signatures; 0 = off).",
        section=AUGMENT,
        bounds=(0, 3),
    )
    flips: bool = option(False, "Random horizontal flips.", section=AUGMENT)
    color_jitter: float = option(
        0.0,
        "Strength of random brightness/contrast/saturation changes (photos, faces; 0 = off).",
        section=AUGMENT,
        bounds=(0, 2),
    )
    ema: float = option(
        0.0,
        "Validate and keep an exponential moving average of the weights with this decay (e.g. 0.98: about "
        "the last 50 steps) instead of the last step's weights. 0 = off.",
        section=SCHEDULE,
        bounds=(0, 1),
        open_high=True,
    )
    val_fold: int = option(
        0,
        "Which block of --val-fraction of the (seeded, shuffled) groups to hold out: folds 0, 1, ... are "
        "disjoint, so running one command with each fold cross-validates a recipe on few classes (45 signature "
        "writers make folds 0 to 5 at 0.15). The held-out classes are recorded in model.json.",
        section=VALIDATION,
        bounds=(0, None),
    )
    val_way: int = 20
    val_shot: int = 1
    val_episodes: int = 400

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "loss", Loss.parse(str(getattr(self.loss, "value", self.loss))))
        object.__setattr__(self, "mining", Mining.parse(str(getattr(self.mining, "value", self.mining))))
        _at_least(self, "classes_per_batch", 2)
        _at_least(self, "per_class", 2)
        if self.loss is Loss.EPISODIC and not 1 <= self.shot < self.per_class:
            raise ConfigError("the episodic loss needs 1 <= {a} < {b}", a="shot", b="per_class")
        _at_least(self, "val_fold", 0)
        if not 0 <= self.ema < 1:
            raise ConfigError("{fields} (the weight average's decay) must be in [0, 1), " + f"not {self.ema}", ["ema"])

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["loss"] = self.loss.value
        d["mining"] = self.mining.value
        return d


def _val_fraction_below_one(cfg: LoopConfig) -> None:
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError("{fields} must be in [0, 1)", ["val_fraction"])


@dataclass(frozen=True)
class SelfSupConfig(LoopConfig):
    """What shapes a self-supervised run (beside the loop's length, schedule and validation cadence)."""

    batch: int = option(
        128,
        "Self-supervised: images per step (each gives two views); --captions: (picture, caption) pairs per step.",
        section=SELFSUP,
        bounds=(2, None),
    )
    temperature: float = option(
        0.1, "Self-supervised: NT-Xent softmax temperature.", section=SELFSUP, bounds=(0.01, 10)
    )
    grayscale: float = option(
        0.5,
        "Self-supervised: chance that a view loses its colour (lower lets the encoder lean on colour and miss "
        "grayscale copies).",
        section=SELFSUP,
        flag="--grayscale-views",
        bounds=(0, 1),
    )
    views: str = option(
        "classic",
        "Self-supervised: the edits of a training view. classic: crops, flips, turns, borders up to 25%, colour, "
        "text, blur, shrinking, JPEG. wide: those plus what people do to photos beyond them: the photo small on a "
        "canvas, a corner crop, a page or app around it, fading, stickers, a changed aspect ratio, pixelation, a "
        "perspective warp.",
        section=SELFSUP,
        choices=Views,
    )
    val_images: int = 500  # at most this many held-out images; val_fraction of them are held out

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self, "batch", 2)
        if self.temperature <= 0:
            raise ConfigError("{fields} must be positive", ["temperature"])
        if not 0.0 <= self.grayscale <= 1.0:
            raise ConfigError("{fields} is a probability in [0, 1]", ["grayscale"])
        object.__setattr__(
            self, "views", parse_choice(Views, str(getattr(self.views, "value", self.views)), "views").value
        )
        _val_fraction_below_one(self)

    def to_dict(self) -> dict[str, Any]:
        return dict(super().to_dict(), loss="nt-xent")


@dataclass(frozen=True)
class CaptionConfig(LoopConfig):
    """What shapes an image-text run (beside the loop's length, schedule and validation cadence)."""

    batch: int = 128  # (picture, caption) pairs per step; offered as SelfSupConfig.batch's option
    flips: bool = False  # random horizontal flips of the pictures (only where captions never say left or right)
    text_width: int = option(128, "--captions: text tower width.", section=CAPTIONS, bounds=(8, 1024))
    text_layers: int = option(2, "--captions: transformer layers.", section=CAPTIONS, bounds=(1, 12))

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self, "batch", 2)
        _val_fraction_below_one(self)

    def to_dict(self) -> dict[str, Any]:
        return dict(super().to_dict(), loss="clip")
