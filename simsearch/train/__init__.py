"""Training Siamese encoders: one loop (loop.py) for every objective, the labelled objectives (episodic,
triplet, contrastive; labelled.py), label-free NT-Xent (selfsup.py), image-text CLIP (captions.py), their augmentations (augment.py),
and a run assembled from options (setup.py). Never imports the engine or the index."""

from simsearch.train.captions import CaptionConfig, train_captions
from simsearch.train.labelled import Sampler, TrainConfig, train
from simsearch.train.loop import LoopConfig, TrainResult, lr_factor
from simsearch.train.selfsup import SelfSupConfig, train_self_supervised
from simsearch.train.setup import TrainRequest, encoder_config, run_training

__all__ = [
    "CaptionConfig",
    "LoopConfig",
    "Sampler",
    "SelfSupConfig",
    "TrainConfig",
    "TrainRequest",
    "TrainResult",
    "encoder_config",
    "lr_factor",
    "run_training",
    "train",
    "train_captions",
    "train_self_supervised",
]
