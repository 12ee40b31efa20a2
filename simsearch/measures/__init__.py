"""Measures over scores and embeddings, pure numpy: few-shot episodes, ROC, EER and thresholds (metrics), and
the open-set FPIR/FNIR curve over best-of-gallery scores (openset). The engine reads its thresholds from
these; simsearch.evaluate builds its runs on them. Importing the package loads nothing."""

__all__ = ["metrics", "openset"]
