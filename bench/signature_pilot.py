"""Signature recipe pilot (experiment, reverted in the next commit): python bench/signature_pilot.py NAME FOLD SIZE PATCH STEPS [key=value TrainConfig overrides]"""
import sys, time, torch
torch.set_num_threads(1)
from simsearch.datasets import load_labelled
from simsearch.encoder import EncoderConfig, Preprocess
from simsearch.train import TrainConfig, train
name, fold, size, patch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
extra = {}
for kv in sys.argv[6:]:
    k, v = kv.split("=")
    extra[k] = type(getattr(TrainConfig(), k))(v) if not isinstance(getattr(TrainConfig(), k), bool) else v == "1"
widths = tuple(int(w) for w in extra.pop("widths", "64,96,128,256").split(",")) if isinstance(extra.get("widths"), str) else (64, 96, 128, 256)
data = load_labelled("../shared/data/signatures/sigcomp2011-processed.zip", 1, size, progress=False, classes="train/*")
enc = EncoderConfig(preprocess=Preprocess(size=size, invert=False), widths=widths, embedding_dim=256)
base = dict(loss="episodic", group_batches=True, classes_per_batch=32, per_class=4, shot=1, jitter=0.3,
            steps=steps, val_every=50, seed=0, val_fold=fold, patch=patch)
base.update(extra)
cfg = TrainConfig(**base)
t = time.time()
r = train(data, enc, cfg, f"runs/{name}", progress=False)
for h in r.history: print(h, flush=True)
print("best", r.best_val_accuracy, "time", round(time.time() - t))
