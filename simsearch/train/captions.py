"""Image-text training, CLIP-style: pictures with captions pull their own caption's embedding close
and push the batch's other captions away (symmetric InfoNCE, learned temperature), so the encoder's
text tower (simsearch.text) embeds words into the images' space and `query --text` works.

Data: a folder of images, each with its caption beside it in a text file of the same name
(photo.jpg + photo.txt, the layout img2dataset writes). Validation: held-out pictures, each distinct
held-out caption a text query, recall@5 (a right picture among the first five).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simsearch.config.train import CaptionConfig
from simsearch.embed import Embedder
from simsearch.encoder import Encoder, EncoderConfig
from simsearch.errors import DataError, SimSearchError
from simsearch.measures.metrics import recommended_threshold
from simsearch.text import clip_loss, words
from simsearch.train.loop import TrainResult, run_loop

__all__ = ["CaptionConfig", "load_captioned", "text_recall", "train_captions"]

KIND = "captions"
MAX_CAPTION_BYTES = 64 << 10


def load_captioned(folder: str | Path, names: Sequence[str]) -> tuple[list[int], list[str]]:
    """(positions in `names` that have a caption, their captions): each image's caption is the text file
    of the same name beside it (a.jpg -> a.txt), read as UTF-8, whitespace collapsed."""
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: captioned pictures are a folder of images with a .txt caption beside each")
    keep, captions = [], []
    for i, name in enumerate(names):
        side = Path(name).with_suffix(".txt")
        try:
            if side.stat().st_size > MAX_CAPTION_BYTES:
                continue
            text = " ".join(side.read_text(encoding="utf-8", errors="replace").split())
        except OSError:
            continue
        if words(text):
            keep.append(i)
            captions.append(text)
    if not keep:
        raise DataError(f"{folder}: no image has a caption beside it (photo.jpg needs photo.txt)")
    return keep, captions


def _key(caption: str) -> str:
    """Captions that say the same words are the same caption."""
    return " ".join(words(caption))


def text_recall(image_emb: np.ndarray, text_emb: np.ndarray, truth: Sequence[set[int]], k: int = 5) -> float:
    """Share of text queries with a right picture among their `k` nearest images (`truth[i]`: the right
    pictures' rows for text i)."""
    scores = text_emb @ image_emb.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([bool(truth[i] & set(top[i].tolist())) for i in range(len(truth))]))


class _Captions:
    """The image-text objective for run_loop."""

    kind = KIND
    measure = "validation text recall@5"
    validate_first = False

    def __init__(self, arrays: np.ndarray, captions: list[str], cfg: CaptionConfig, source: str) -> None:
        self.cfg = cfg
        self.n_pairs = len(captions)
        self.rng = np.random.default_rng(cfg.seed)
        order = self.rng.permutation(len(captions))
        n_val = int(len(captions) * cfg.val_fraction) if cfg.val_fraction > 0 else 0
        val, train = order[:n_val], order[n_val:]
        if len(train) < cfg.batch:
            raise DataError(f"{len(train)} training pictures is fewer than the batch of {cfg.batch}")
        self.train_x, self.train_c = arrays[train], [captions[i] for i in train]
        self.val_x, self.val_c = arrays[val], [captions[i] for i in val]
        keys = [_key(c) for c in self.train_c]
        ids = {k: i for i, k in enumerate(sorted(set(keys)))}
        self.train_ids = np.array([ids[k] for k in keys])
        vkeys = [_key(c) for c in self.val_c]
        self.val_texts = sorted(set(vkeys))  # each distinct held-out caption, a text query
        number = {t: i for i, t in enumerate(self.val_texts)}
        self.val_labels = np.array([number[k] for k in vkeys], dtype=np.int64)  # each held-out picture's query
        self.val_truth = [set(np.flatnonzero(self.val_labels == i).tolist()) for i in range(len(self.val_texts))]
        self.validates = len(self.val_texts) >= 2
        self.summary = {
            "data": source,
            "train": cfg.to_dict(),
            "train_images": len(train),
            "val_images": n_val,
            "captions": len(ids),
        }
        self.scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        self.epoch_order = self.rng.permutation(len(train))
        self.pos = 0
        self.encoder: Encoder | None = None

    def bind(self, encoder: Encoder) -> None:
        """The encoder being trained: the loss embeds the batch's captions with its text tower."""
        self.encoder = encoder

    def extra_parameters(self, device: torch.device) -> list[dict[str, Any]]:
        self.scale.data = self.scale.data.to(device)
        return [{"params": [self.scale], "weight_decay": 0.0}]

    def batch(self, step: int, device: torch.device) -> tuple[torch.Tensor, Any]:
        b = self.cfg.batch
        if self.pos + b > len(self.epoch_order):
            self.epoch_order, self.pos = self.rng.permutation(len(self.train_c)), 0
        idx = self.epoch_order[self.pos : self.pos + b]
        self.pos += b
        x = torch.from_numpy(self.train_x[idx]).to(device).float().div_(255.0)
        if self.cfg.flips:
            flip = torch.from_numpy(self.rng.random(len(idx)) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        ids = torch.from_numpy(self.train_ids[idx]).to(device)
        return x, ([self.train_c[i] for i in idx], ids)

    def loss(self, emb: torch.Tensor, aux: Any) -> torch.Tensor:
        assert self.encoder is not None
        texts, ids = aux
        text = self.encoder.embed_text(texts)
        return clip_loss(emb.float(), text, ids[:, None] == ids[None, :], self.scale)

    def validate(self, encoder: Encoder, device: torch.device) -> tuple[dict[str, float], float, float]:
        embedder = Embedder(encoder, device)
        images = embedder.embed_arrays(self.val_x)
        texts = embedder.embed_text(self.val_texts)
        r5 = text_recall(images, texts, self.val_truth, 5)
        r1 = text_recall(images, texts, self.val_truth, 1)
        entries = {"val_text_recall@1": round(r1, 5), "val_text_recall@5": round(r5, 5)}
        return entries, r5, recommended_threshold(images, self.val_labels, seed=self.cfg.seed)

    def best_summary(self, best: float) -> dict[str, Any]:
        return {"best_val_text_recall_at_5": round(best, 5)}

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        settings = {k: v for k, v in self.cfg.to_dict().items() if k != "device"}
        return {
            "train": settings,
            "pairs": self.n_pairs,
            "rng": self.rng.bit_generator.state,
            "epoch_order": self.epoch_order.tolist(),
            "pos": self.pos,
        }, {"scale": self.scale.detach().cpu().reshape(1)}

    def restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        settings = {k: v for k, v in self.cfg.to_dict().items() if k != "device"}
        if state.get("train") != settings or state.get("pairs") != self.n_pairs:
            raise SimSearchError(
                "the saved run used other settings or another number of captioned pictures; "
                "resume it with the same data and options, or start a new run"
            )
        self.rng.bit_generator.state = state["rng"]
        self.epoch_order, self.pos = np.array(state["epoch_order"], dtype=np.int64), state["pos"]
        self.scale.data = tensors["scale"].reshape(()).to(self.scale.device)

    def close(self) -> None:
        pass


def train_captions(
    arrays: np.ndarray,
    captions: list[str],
    encoder_config: EncoderConfig,
    cfg: CaptionConfig,
    out_dir: str | Path,
    progress: bool = True,
    source: str = "",
    init: dict[str, torch.Tensor] | None = None,
    resume: bool = False,
    on_step: Any = None,
) -> TrainResult:
    """Train an encoder with a text tower (`encoder_config.text`) on (N, C, S, S) uint8 pictures framed
    for it and their captions; write the checkpoint with the best held-out text recall@5 into `out_dir`."""
    if encoder_config.text is None:
        raise SimSearchError("image-text training needs an encoder with a text tower")
    objective = _Captions(arrays, captions, cfg, source)
    return run_loop(objective, encoder_config, cfg, out_dir, 0.0, resume, progress, on_step, init)
