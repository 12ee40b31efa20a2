"""Measuring encoders: pure metrics (metrics.py), baselines (raw pixels, perceptual hashes), few-shot and
verification, signature verification against forgeries, copy detection under edits (reports.py runs
them for `simsearch evaluate`). Importing the package loads numpy only."""

from simsearch.evaluate.metrics import (
    FewShotResult,
    VerificationResult,
    best_accuracy_threshold,
    equal_error_rate,
    few_shot_accuracy,
    pair_scores,
    recommended_threshold,
    roc_auc,
    roc_curve,
    sample_pairs,
    threshold_at_far,
    verification,
)

__all__ = [
    "FewShotResult",
    "VerificationResult",
    "best_accuracy_threshold",
    "equal_error_rate",
    "few_shot_accuracy",
    "pair_scores",
    "recommended_threshold",
    "roc_auc",
    "roc_curve",
    "sample_pairs",
    "threshold_at_far",
    "verification",
]
