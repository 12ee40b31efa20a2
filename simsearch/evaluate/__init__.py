"""Measuring encoders. metrics: pure measures over embeddings (few-shot episodes, ROC, EER, thresholds);
baselines: raw pixels and perceptual hashes; signatures: writer-dependent verification against skilled
forgeries; copydetect: edited-copy query sets and recall@k; reports: the runs `simsearch evaluate`
makes of them. Importing the package loads nothing; each module states its own `__all__`."""

__all__ = ["baselines", "copydetect", "metrics", "reports", "signatures"]
