"""Measuring encoders (the measures themselves are in simsearch.measures). openset: open-set galleries drawn and asked;
baselines: raw pixels and perceptual hashes; signatures: writer-dependent verification against skilled
forgeries; copydetect: edited-copy query sets and recall@k; reports: the runs `simsearch evaluate`
makes of them. Importing the package loads nothing; each module states its own `__all__`."""

__all__ = ["baselines", "copydetect", "openset", "reports", "signatures"]
