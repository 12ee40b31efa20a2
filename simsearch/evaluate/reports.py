"""The measurements `simsearch evaluate` runs: few-shot and verification, signature verification, copy
detection. Each loads every encoder it compares once, measures them on the same data in one run, and
returns a report with to_dict() (the --json output) and lines() (the text output)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simsearch.config.evaluate import (
    CopyDetectionOptions,
    EvaluateTarget,
    FewShotOptions,
    OpenSetOptions,
    ReframeOptions,
    SignatureOptions,
    VerificationOptions,
)
from simsearch.datasets import LabelledSet, load_labelled, load_pictures
from simsearch.errors import ConfigError, SimSearchError
from simsearch.evaluate.baselines import (
    HASHES,
    RAW_DECODE,
    RAW_PIXELS,
    RAW_SIZE,
    hash_codes,
    raw_pixel_embeddings,
    raw_pixel_pictures,
)
from simsearch.evaluate.copydetect import copy_detection_table, make_copy_queries, ranks_of_truth
from simsearch.evaluate.signatures import signature_verification
from simsearch.measures.metrics import (
    FewShotResult,
    VerificationResult,
    best_accuracy_threshold,
    few_shot_accuracy,
    pair_scores,
    verification,
)
from simsearch.measures.openset import probe_scores
from simsearch.measures.prior import OpenSetPrior
from simsearch.measures.structure import StructurePart
from simsearch.preprocess import Preprocess

if TYPE_CHECKING:
    from PIL import Image

    from simsearch.embed import Embedder

__all__ = [
    "HELD_OUT",
    "Candidate",
    "CopyDetectionReport",
    "FewShotReport",
    "OpenSetReport",
    "SignatureReport",
    "candidates",
    "copy_detection_report",
    "evaluate",
    "few_shot_report",
    "open_set_report",
    "signature_report",
]

HELD_OUT = "held-out"  # fit_classes: the classes the model's training held out (recorded in its model.json)


@dataclass
class Candidate:
    """One encoder (or baseline) under measurement, loaded once for the whole run."""

    name: str
    embedder: Embedder | None = None  # None for a baseline (raw pixels, a hash)
    _cache: dict[Any, tuple[LabelledSet, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def preprocess(self) -> Preprocess | None:
        return self.embedder.preprocess if self.embedder is not None else None

    def labelled(
        self,
        data: str | os.PathLike[str],
        classes: str | Sequence[str] | None,
        like: Preprocess | None,
        progress: bool,
        reframe: tuple[str, int] | None = None,
    ) -> tuple[LabelledSet, np.ndarray]:
        """(images of DATA's matching classes, their (N, D) embeddings). Raw pixels decode at the
        channels and framing of `like` (the measured model's input), at 64 pixels, compared at 32.
        `reframe` = (kind, seed): every image re-framed first (edits.reframe)."""
        key = (str(data), classes if isinstance(classes, (str, type(None))) else tuple(classes), reframe)
        if key not in self._cache:
            if self.embedder is None:
                pre = (
                    Preprocess.plain(like.channels, RAW_DECODE, like.crop, like.ink, like.face, like.face_align)
                    if like
                    else Preprocess.plain(1, RAW_DECODE)
                )
                found = load_labelled(data, pre, progress=progress, classes=classes, reframe=reframe)
                self._cache[key] = (found, raw_pixel_embeddings(found.images, RAW_SIZE))
            else:
                found = load_labelled(
                    data, self.embedder.preprocess, progress=progress, classes=classes, reframe=reframe
                )
                self._cache[key] = (found, self.embedder.embed_arrays(found.images))
        return self._cache[key]

    def pictures(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, str]:
        """(codes, how to compare them) for PIL images: unit embeddings ("cosine") or hash bits ("hamming")."""
        if self.embedder is not None:
            return self.embedder.embed_images(images), "cosine"
        if self.name == RAW_PIXELS:
            return raw_pixel_pictures(images), "cosine"
        return hash_codes(images, self.name), "hamming"

    def held_out_classes(self) -> list[str]:
        """The classes this model's training held out for validation (recorded in its model.json)."""
        if self.embedder is None or self.embedder.model is None:
            raise ConfigError(
                f"{HELD_OUT!r} needs a trained model, not raw pixels: give {{fields}} a glob", ["fit_classes"]
            )
        held = self.embedder.model.meta.get("training", {}).get("held_out_classes")
        if not held:
            raise ConfigError(
                f"model {self.name} does not record the classes its training held out (trained before simsearch "
                "recorded them, or with --val-fraction 0): give {fields} a glob",
                ["fit_classes"],
            )
        return [str(c) for c in held]


def candidates(
    model: str | None, compare: Sequence[str], device: str = "auto", baselines: Sequence[str] = (RAW_PIXELS,)
) -> list[Candidate]:
    """The measured model and the ones compared with it, each loaded once; names in `baselines`
    are baselines, anything else a built-in encoder or checkpoint folder."""
    from simsearch.embed import Embedder

    out = []
    for m in (model, *compare):
        if m in baselines:
            out.append(Candidate(str(m)))
        else:
            embedder = Embedder.load(m, device)
            out.append(Candidate(embedder.loaded.source, embedder))
    return out


def _fit_classes(value: str | None, measured: Candidate) -> str | list[str] | None:
    return measured.held_out_classes() if value == HELD_OUT else value


@dataclass(frozen=True)
class _FewShotRow:
    name: str
    images: int
    classes: int
    results: list[FewShotResult]
    verification: VerificationResult | None


@dataclass(frozen=True)
class FewShotReport:
    """N-way K-shot accuracy and verification per candidate (`evaluate` without a task flag)."""

    data: str
    seed: int
    table: bool
    compared: bool
    fit_classes: str | None
    rows: list[_FewShotRow]
    reframe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        objs = []
        for r in self.rows:
            obj: dict[str, Any] = (
                dict(r.results[0].to_dict()) if not self.table else {"results": [x.to_dict() for x in r.results]}
            )
            obj.update({"model": r.name, "images": r.images, "classes": r.classes, "reframe": self.reframe})
            if r.verification:
                obj["verification"] = r.verification.to_dict()
            objs.append(obj)
        return objs[0] if not self.compared else {"models": objs}

    def lines(self) -> list[str]:
        out = []
        for r in self.rows:
            framed = f", re-framed: {self.reframe}" if self.reframe else ""
            out.append(f"{r.name} on {self.data}: {r.images:,} images, {r.classes:,} classes, seed {self.seed}{framed}")
            for x in r.results:
                out.append(
                    f"{x.way:3d}-way {x.shot}-shot: {100 * x.accuracy:6.2f}% ± {100 * x.ci95:.2f}  ({x.episodes} episodes)"
                )
            ver = r.verification
            if ver:
                out.append(
                    f"verification: ROC AUC {ver.auc:.4f}, EER {ver.eer:.4f} (threshold {ver.eer_threshold:.4f}), "
                    f"{ver.pairs:,} pairs"
                )
                if self.fit_classes is not None:
                    out.append(
                        f"verification accuracy {ver.accuracy:.4f} at threshold {ver.threshold:.4f} "
                        f"(the best on {self.fit_classes!r})"
                    )
        return out


def few_shot_report(
    data: str | os.PathLike[str],
    models: list[Candidate],
    way: int = 20,
    shot: int = 1,
    episodes: int = 2000,
    seed: int = 0,
    table: bool = False,
    pairs: int = 3000,
    classes: str | None = None,
    fit_classes: str | None = None,
    progress: bool = True,
    reframe: str | None = None,
) -> FewShotReport:
    """Few-shot accuracy (one setting, or 5/20-way 1/5-shot with `table`) with a 95% interval, and
    verification ROC AUC / EER over `pairs` pairs; with `fit_classes`, verification accuracy at the
    threshold that is best on those classes. models[0] is the measured one, the rest compared.
    With `reframe` (edits.REFRAMINGS or 'mixed') the measured classes' images are re-framed first
    (seeded by `seed`); the threshold's classes are not."""
    fit = _fit_classes(fit_classes, models[0])
    like = models[0].preprocess
    settings = [(w, s) for w in (5, 20) for s in (1, 5)] if table else [(way, shot)]
    rows = []
    for cand in models:
        labelled, emb = cand.labelled(data, classes, like, progress, (reframe, seed) if reframe else None)
        try:
            results = [few_shot_accuracy(emb, labelled.labels, w, s, episodes, seed=seed) for w, s in settings]
        except ValueError as err:
            raise SimSearchError(str(err)) from None
        threshold = None
        if pairs and fit is not None:
            fitted, fit_emb = cand.labelled(data, fit, like, progress)
            threshold = best_accuracy_threshold(*pair_scores(fit_emb, fitted.labels, pairs, seed=seed))
        ver = verification(emb, labelled.labels, n_pairs=pairs, seed=seed, threshold=threshold) if pairs else None
        rows.append(_FewShotRow(cand.name, len(emb), len(labelled.classes), results, ver))
    return FewShotReport(str(data), seed, table, len(models) > 1, fit_classes, rows, reframe)


@dataclass(frozen=True)
class SignatureReport:
    """Writer-dependent signature verification against skilled forgeries, per candidate and reference count."""

    data: str
    classes: str
    fit_classes: str
    fit_name: str
    seed: int
    results: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "fit_name"}

    def lines(self) -> list[str]:
        out = [
            f"signature verification on {self.data}: measured on {self.classes!r}, threshold from {self.fit_name} "
            f"(its EER), seed {self.seed}",
            f"{'model':28s} refs  writers  genuine  forgeries   EER     AUC    accuracy  FAR    FRR    threshold",
        ]
        for o in self.results:
            out.append(
                f"{str(o['model'])[:28]:28s} {o['refs']:4d}  {o['writers']:7d}  {o['genuine']:7d}  {o['forgeries']:9d}  "
                f"{o['eer']:.4f}  {o['auc']:.4f}  {o['accuracy']:.4f}    {o['false_accept']:.3f}  "
                f"{o['false_reject']:.3f}  {o['threshold']:.4f}"
            )
        return out


def signature_report(
    data: str | os.PathLike[str],
    models: list[Candidate],
    classes: str = "test/*",
    fit_classes: str = "train/*",
    refs: Sequence[int] = (1, 5),
    seed: int = 0,
    progress: bool = True,
) -> SignatureReport:
    """Per writer of `classes`, `refs` genuine references (their mean) against the writer's other
    genuine signatures and its forgeries, at the EER threshold of the `fit_classes` writers."""
    ref_counts = sorted(set(refs))
    if not ref_counts or min(ref_counts) < 1:
        raise ConfigError("reference counts ({fields}) must be at least 1", ["refs"])
    fit = _fit_classes(fit_classes, models[0])
    like = models[0].preprocess
    out: list[dict[str, Any]] = []
    for cand in models:
        fit_set, fit_emb = cand.labelled(data, fit, like, progress)
        test, test_emb = cand.labelled(data, classes, like, progress)
        for r in ref_counts:
            fitted = signature_verification(fit_emb, fit_set, r, seed=seed)
            res = signature_verification(test_emb, test, r, threshold=fitted.eer_threshold, seed=seed)
            out.append({"model": cand.name, **res.to_dict(), "fit_eer": fitted.eer})
    fit_name = repr(fit) if isinstance(fit, str) else f"the {len(fit or [])} classes the model's training held out"
    return SignatureReport(str(data), classes, fit_classes, fit_name, seed, out)


@dataclass(frozen=True)
class CopyDetectionReport:
    """Reverse image search under edits: recall@1, recall@10 and mAP per edit type, per candidate."""

    data: str
    gallery: int
    originals_queried: int
    queries: int
    seed: int
    results: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"copy detection on {self.data}: gallery {self.gallery:,} images, {self.queries:,} edited copies of "
            f"{self.originals_queried:,} of them, seed {self.seed}",
            "recall@1 / recall@10 / mAP",
            f"{'edit':10s}" + "".join(f" {str(r['model'])[:22]:>22s}" for r in self.results),
        ]
        for i, row in enumerate(self.results[0]["rows"]):
            cells = []
            for r in self.results:
                x = r["rows"][i]
                cells.append(f" {x['recall@1']:.3f} / {x['recall@10']:.3f} / {x['mAP']:.3f}".rjust(23))
            out.append(f"{row['edit']:10s}" + "".join(cells))
        return out


def copy_detection_report(
    data: str | os.PathLike[str],
    models: list[Candidate],
    edits: Sequence[str],
    n_originals: int = 300,
    classes: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> CopyDetectionReport:
    """Every image of DATA is the gallery; `edits` of `n_originals` of them (seeded) are searched
    for their original. Baselines: raw pixels, pHash, dHash (models named so)."""
    from simsearch.edits import ALL_EDITS

    unknown = [e for e in edits if e not in ALL_EDITS]
    if unknown or not edits:
        raise ConfigError(
            f"unknown edit {unknown[0] if unknown else ''!r} in {{fields}}; known: all, augly, {', '.join(ALL_EDITS)}",
            ["edits"],
        )
    gallery, _ = load_pictures(data, classes=classes, progress=progress)
    queries = make_copy_queries(gallery, n_originals, list(edits), seed=seed)
    results: list[dict[str, Any]] = []
    for cand in models:
        g, metric = cand.pictures(gallery)
        q, _ = cand.pictures(queries.images)
        part = StructurePart.of(cand.embedder.loaded.config) if cand.embedder is not None else None
        ranks = ranks_of_truth(g, q, queries.truth, metric, seed=seed, structure=part)
        results.append({"model": cand.name, "metric": metric, "rows": copy_detection_table(ranks, queries.edits)})
    return CopyDetectionReport(
        str(data), len(gallery), len(set(queries.truth.tolist())), len(queries.images), seed, results
    )


@dataclass(frozen=True)
class OpenSetReport:
    """Open-set 1:N identification per candidate and gallery size: nearest-class accuracy, FNIR at FPIR
    1% and 10% (thresholds chosen with hindsight), and per threshold policy the FPIR stated and observed."""

    data: str
    protocol: str
    shot: int
    seed: int
    results: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"open-set identification on {self.data}: {self.protocol}, {self.shot} image(s) a class, seed {self.seed}"
        ]
        for r in self.results:
            out += [
                "",
                f"{r['model']}: gallery {r['gallery_classes']} classes, {r['runs']} runs, {r['known_probes']:,} known "
                f"and {r['unknown_probes']:,} unknown probes"
                + (f" (from {r['unknown_probes_from']})" if "unknown_probes_from" in r else ""),
                f"  nearest class right {100 * r['nearest_class_accuracy']:.1f}%;  FNIR at FPIR 1% "
                f"{_pct(r['fnir_at_fpir_0.01'])}, at FPIR 10% {_pct(r['fnir_at_fpir_0.1'])} (thresholds chosen with hindsight)",
                f"  {'threshold':38s} {'mean t':>7s} {'stated':>7s} {'observed':>9s} {'ratio':>6s} {'FNIR':>6s} {'decision acc.':>13s}",
            ]
            for t in r["thresholds"]:
                stated = "-" if t["stated_fpir"] is None else f"{t['stated_fpir']:.3f}"
                ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}"
                out.append(
                    f"  {t['threshold']:38s} {t['mean_threshold']:7.3f} {stated:>7s} {t['observed_fpir']:9.4f} "
                    f"{ratio:>6s} {t['fnir']:6.3f} {t['decision_accuracy']:13.3f}"
                )
        return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def open_set_report(
    data: str | os.PathLike[str],
    models: list[Candidate],
    sizes: Sequence[int] = (20, 100, 1000),
    shot: int = 1,
    runs: int = 100,
    seed: int = 0,
    classes: str | None = None,
    protocol: str = "random",
    progress: bool = True,
    roc_png: str | os.PathLike[str] | None = None,
) -> OpenSetReport:
    """Galleries of each size in `sizes` drawn from DATA (`runs` of each, seeded), each calibrated on
    itself as an index is at build, then probed with images of its classes and of other classes.

    protocol: "random" (random classes, `shot` images each); "within-alphabet" (Lake et al.'s Omniglot
    runs: 20 characters of one alphabet by one drawer, probes by another, unknown probes from other
    alphabets; `sizes` is ignored); "copies" (each photo is its own class; probes are edited copies of
    gallery photos and of other photos: reverse image search)."""
    import re

    from simsearch.evaluate.openset import copy_runs, measure_runs, random_runs, within_alphabet_runs

    like = models[0].preprocess
    results: list[dict[str, Any]] = []
    for cand in models:
        if cand.embedder is None:
            raise ConfigError(
                "open-set runs measure encoders with thresholds: {fields} takes encoders only", ["compare"]
            )
        meta_t = cand.embedder.loaded.meta.get("threshold")
        prior = OpenSetPrior.from_meta(cand.embedder.loaded.meta)
        try:
            edited = None
            if protocol == "copies":
                emb, chosen = _copy_embeddings(cand, data, classes, max(sizes), seed, progress)
                n = len(chosen)
                plans = [(size, copy_runs(n, size, runs, seed)) for size in sizes]
                labels = np.concatenate([np.arange(n), np.arange(n)])
                if prior is not None and prior.query_impostor:
                    edited = _SelfProbeCopies(cand, chosen, emb[:n])
            else:
                labelled, emb = cand.labelled(data, classes, like, progress)
                labels = labelled.labels
                if protocol == "within-alphabet":
                    drawers = []
                    for p in labelled.paths:
                        m = re.search(r"_(\d+)\.png$", p)
                        if m is None:
                            raise SimSearchError(f"{p}: not an Omniglot drawing name (XXXX_YY.png, YY the drawer)")
                        drawers.append(int(m.group(1)))
                    plans = [
                        (
                            20,
                            within_alphabet_runs(
                                labels, labelled.groups, np.array(drawers), runs, seed, unknown_from=u
                            ),
                        )
                        for u in ("other", "same")
                    ]
                else:
                    plans = [(size, random_runs(labels, size, shot, runs, seed)) for size in sizes]
            for k, (_, plan) in enumerate(plans):
                got = measure_runs(emb, labels, plan, encoder_threshold=meta_t, prior=prior, edited=edited)
                row = {"model": cand.name, **got}
                if protocol == "within-alphabet":
                    row["unknown_probes_from"] = ("other alphabets", "the same alphabet")[k]
                results.append(row)
        except ValueError as err:
            raise SimSearchError(str(err)) from None
    if roc_png is not None:
        from simsearch.pictures import det_picture

        curves = [
            (
                f"{r['model']} {r['gallery_classes']}"
                + (f" ({r['unknown_probes_from']})" if "unknown_probes_from" in r else ""),
                r["det"]["fpir"],
                r["det"]["fnir"],
            )
            for r in results
        ]
        det_picture(curves, roc_png, f"open-set identification on {os.path.basename(str(data))}")
    names = {
        "random": "random galleries",
        "within-alphabet": "Lake's within-alphabet 20-way one-shot runs (gallery: one drawer; probes: another)",
        "copies": "reverse image search (each photo its own class; probes are edited copies)",
    }
    return OpenSetReport(str(data), names[protocol], shot, seed, results)


def _copy_embeddings(
    cand: Candidate, data: str | os.PathLike[str], classes: str | None, size: int, seed: int, progress: bool
) -> tuple[np.ndarray, list[Image.Image]]:
    """(embeddings of n photos then of one edited copy of each, the n photos): 2 x `size` photos of DATA,
    seeded, each copy made with one edit type in turn (our edits, simsearch.edits.EDITS)."""
    from simsearch.edits import EDITS, copies_in_turn

    pictures, _ = load_pictures(data, classes=classes, progress=progress)
    rng = np.random.default_rng(seed)
    n = min(len(pictures), 2 * size)
    chosen = [pictures[i] for i in np.sort(rng.choice(len(pictures), size=n, replace=False))]
    emb, _ = cand.pictures(chosen + copies_in_turn(chosen, list(EDITS), seed))
    return emb, chosen


class _SelfProbeCopies:
    """A copies-protocol gallery probing itself as a build does (engine.calibrate.edited_self_probes): for
    the gallery's photos (rows into `pictures`), k edited copies of each (edits.self_probe_copy), each
    copy's best score against the gallery's other photos (measures.openset.probe_scores, as the build scores
    them). Copies are embedded once and kept (a photo is in many galleries)."""

    def __init__(self, cand: Candidate, pictures: list[Image.Image], originals: np.ndarray) -> None:
        self.cand, self.pictures, self.originals = cand, pictures, originals
        self.kept: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, gallery: np.ndarray) -> np.ndarray:
        from simsearch.edits import self_probe_copies_each, self_probe_copy
        from simsearch.engine.calibrate import EDITED_PROBES

        k = self_probe_copies_each(len(gallery), EDITED_PROBES)
        want = [(int(j), e) for j in gallery for e in range(k)]
        new = [key for key in want if key not in self.kept]
        if new:
            emb, _ = self.cand.pictures([self_probe_copy(self.pictures[j], j, e) for j, e in new])
            self.kept.update(zip(new, emb, strict=True))
        copies = np.stack([self.kept[key] for key in want])
        own = np.repeat(np.arange(len(gallery)), k)  # each photo its own class: a copy against the others
        return probe_scores(copies, own, self.originals[gallery], np.arange(len(gallery))).unknown


def evaluate(
    data: str | os.PathLike[str],
    target: EvaluateTarget | None = None,
    *,
    few_shot: FewShotOptions | None = None,
    verification: VerificationOptions | None = None,
    signature: SignatureOptions | None = None,
    copies: CopyDetectionOptions | None = None,
    reframing: ReframeOptions | None = None,
    open_set: OpenSetOptions | None = None,
    device: str = "auto",
    progress: bool = True,
) -> FewShotReport | SignatureReport | CopyDetectionReport | OpenSetReport:
    """`simsearch evaluate`: `target.model` and every `target.compare` (each loaded once) measured on DATA in
    one run, each protocol's settings one request of simsearch.config.evaluate (defaults where not given):
    copy detection (`copies.copy_detection`; "raw-pixels", "phash", "dhash", "pdq" are baselines), signature
    verification (`signature.signatures`; classes default to test/*, the threshold's to train/*), open-set
    identification (`open_set.open_set` or `.lake`), else few-shot accuracy and verification ("raw-pixels" is
    the baseline), optionally on re-framed images."""
    target, few, pairs = target or EvaluateTarget(), few_shot or FewShotOptions(), verification or VerificationOptions()
    sig, cop, ref = signature or SignatureOptions(), copies or CopyDetectionOptions(), reframing or ReframeOptions()
    ops = open_set or OpenSetOptions()
    if ops.roc_png is not None and not (ops.open_set or ops.lake):
        raise ConfigError("{fields} draws open-set DET curves: give it with --open-set or --lake", ["roc_png"])
    if ref.reframe is not None and (ops.open_set or ops.lake or cop.copy_detection or sig.signatures):
        raise ConfigError("{fields} re-frames the images of few-shot and verification runs only", ["reframe"])
    baselines = (RAW_PIXELS, *HASHES) if cop.copy_detection else (RAW_PIXELS,)
    models = candidates(target.model, target.compare, device, baselines)
    seed, classes = target.seed, target.classes
    if ops.open_set or ops.lake:
        protocol = "within-alphabet" if ops.lake else ("copies" if cop.copy_detection else "random")
        return open_set_report(
            data, models, ops.sizes, few.shot, ops.runs, seed, classes, protocol, progress, ops.roc_png
        )
    if cop.copy_detection:
        from simsearch.edits import expand_edits

        try:
            edits = expand_edits(cop.edits)
        except ValueError as err:
            raise ConfigError(f"{err} (in {{fields}})", ["edits"]) from None
        return copy_detection_report(data, models, edits, cop.n_originals, classes, seed, progress)
    if sig.signatures:
        fit = pairs.fit_classes or "train/*"
        return signature_report(data, models, classes or "test/*", fit, sig.refs, seed, progress)
    return few_shot_report(
        data, models, few.way, few.shot, few.episodes, seed, few.table, pairs.pairs, classes, pairs.fit_classes,
        progress, ref.reframe,
    )  # fmt: skip
