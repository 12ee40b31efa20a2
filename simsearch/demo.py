"""`simsearch demo`: the main job end to end on a gallery it draws itself (or on a folder it is given)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simsearch.engine import BuildReport, Identification, OperatingPoint, QueryResult, Searcher, build_index
from simsearch.errors import DataError
from simsearch.images import scan_folder
from simsearch.symbols import draw_symbol, write_symbol_set

__all__ = ["GALLERY_CLASSES", "UNKNOWN_CLASS", "DemoReport", "run_demo"]

MARKER = ".simsearch-demo.json"  # in the demo's folder: the files it wrote, the only ones it may replace

GALLERY_CLASSES = ["circle", "triangle", "square", "star", "cross", "arrow"]
UNKNOWN_CLASS = "spiral"  # drawn as a query but never put in the gallery


@dataclass(frozen=True)
class DemoReport:
    workdir: Path
    gallery: Path
    index: Path
    build: BuildReport
    query: QueryResult
    identifications: list[Identification]
    drawn: bool = True  # the gallery and probes were drawn here, so the right answers are known
    looser: list[Identification] | None = None  # the same probes at FPIR 10%
    one_shot: list[Identification] | None = None  # the same probes against a gallery of one drawing a class
    one_shot_index: Path | None = None

    def lines(self) -> list[str]:
        """What `simsearch demo` prints: the build, the query's top matches, each identification
        (with "right" or "WRONG" for the drawn probes), and the commands to try next."""
        b, q = self.build, self.query
        out = [
            f"gallery:  {self.gallery} ({b.total} images)",
            f"index:    {self.index}  ({b.indexed} indexed, {len(b.skipped)} skipped, {b.elapsed_s:.1f}s)",
            "",
            f"query {q.query}: top {len(q.results)}",
            *(f"  {h.rank}  {h.score:+.4f}  {h.label or '-':10s} {h.path}" for h in q.results),
        ]
        runs = (
            ("identify:", self.identifications),
            ("identify --fpir 0.1:", self.looser or []),
            (f"identify on a one-shot gallery ({self.one_shot_index}, one drawing a class):", self.one_shot or []),
        )
        for title, idents in runs:
            if not idents:
                continue
            d = idents[0].decision
            out += ["", f"{title} threshold {d.describe()}"]
            out += [self._line(ident) for ident in idents]
        if self.looser:
            out += [
                "",
                "A threshold says how often a drawing of a class the gallery lacks is accepted (FPIR). This",
                "gallery measured its own unknown drawings as far as 30 of them can show; the rarer tail comes",
                "from the encoder's measurement on characters it never trained on. Drawn symbols look more alike",
                "to it than handwriting does, so the threshold is high and a loosely drawn symbol can come back",
                "unknown. Pick the rate you can live with (--fpir), or measure it",
                "on labelled probes: simsearch calibrate --help.",
            ]
        if self.one_shot:
            out += [
                "",
                "A gallery of one drawing a class cannot measure itself at all (no drawing has a second of its",
                "class to be matched with), so its threshold leans on the encoder's own measurement at that",
                "gallery size, made on classes its training never saw (source gallery+prior).",
            ]
        out += [
            "",
            "Try it yourself:",
            f"  simsearch query {q.query} --index {self.index} -k 3",
            f"  simsearch identify {self.workdir / 'queries'} --index {self.index}",
        ]
        return out

    def _line(self, ident: Identification) -> str:
        answer = ident.label if ident.known else "unknown"
        stem = Path(ident.query).stem
        verdict = ""
        if self.drawn and stem.startswith("new_"):  # drawn probes: say what the right answer was
            expected = stem[4:] if stem[4:] in GALLERY_CLASSES else "unknown"
            verdict = "  right" if answer == expected else f"  WRONG (expected {expected})"
        return f"  {ident.query}: {answer}  (best {ident.label} at {ident.score:+.4f}){verdict}"


def _claim(work: Path) -> set[str]:
    """The files an earlier demo wrote in `work` (relative paths); refuses a folder the demo did not make.

    A demo folder is one that is empty, or that holds the demo's marker and nothing but what the marker lists
    (and the demo's index). Anything else a user put there is never replaced or indexed by the demo."""
    if work.exists() and not work.is_dir():
        raise DataError(f"{work}: exists and is not a folder; choose another --out")
    marker = work / MARKER
    if not work.exists() or not any(work.iterdir()):
        return set()
    if not marker.is_file():
        raise DataError(
            f"{work}: folder is not empty and was not made by `simsearch demo`; choose another --out (nothing was changed)"
        )
    try:
        wrote = set(json.loads(marker.read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{marker}: unreadable demo marker ({err}); choose another --out") from None
    for sub in ("gallery", "queries", "oneshot"):
        for root, _dirs, names in os.walk(work / sub):
            for name in names:
                rel = os.path.relpath(os.path.join(root, name), work)
                if rel not in wrote:
                    raise DataError(
                        f"{work / rel}: not written by `simsearch demo`; move it out of {work} or choose another "
                        "--out (nothing was changed)"
                    )
    return wrote


def run_demo(
    workdir: str | Path, data: str | Path | None = None, device: str = "auto", progress: bool = True
) -> DemoReport:
    """Make (or take) a gallery, index it, answer one query and identify known and unknown probes.

    The demo writes only into a folder it made (empty, or holding its marker `.simsearch-demo.json`); a
    second run replaces only the files the first one wrote."""
    from simsearch.files import write_atomic

    work = Path(workdir)
    before = _claim(work)
    work.mkdir(parents=True, exist_ok=True)
    index = work / "demo.idx"
    queries_dir = work / "queries"
    written: list[Path] = []
    if data is None:
        gallery = work / "gallery"
        written += write_symbol_set(gallery, GALLERY_CLASSES, per_class=5, seed=0)
        queries_dir.mkdir(exist_ok=True)
        rng = np.random.default_rng(1)
        probes = []
        for name in (GALLERY_CLASSES[3], GALLERY_CLASSES[1], UNKNOWN_CLASS):
            p = queries_dir / f"new_{name}.png"
            draw_symbol(name, rng).save(p)
            probes.append(p)
        written += probes
        written += write_symbol_set(work / "oneshot", GALLERY_CLASSES, per_class=1, seed=2)
    else:
        gallery = Path(data)
        files = scan_folder(gallery).files
        if not files:
            raise DataError(f"{gallery}: no images found")
        labelled = [f for f in files if f.label is not None]
        probes = [labelled[0].path if labelled else files[0].path]
    files_json = {"files": sorted(before | {os.path.relpath(p, work) for p in written})}
    write_atomic(work / MARKER, json.dumps(files_json, indent=1).encode())
    build = build_index(gallery, index, device=device, overwrite=True, progress=progress)
    with Searcher(index, device=device) as searcher:
        query = searcher.query(str(probes[0]), k=5)[0]
        idents, looser = [], None
        if searcher.classes():
            idents = searcher.identify([str(p) for p in probes])
            if data is None:
                looser = searcher.identify([str(p) for p in probes], point=OperatingPoint(fpir=0.1))
    one_shot, one_index = None, None
    if data is None:
        one_index = work / "oneshot.idx"
        build_index(work / "oneshot", one_index, device=device, overwrite=True, progress=False)
        with Searcher(one_index, device=device) as searcher:
            one_shot = searcher.identify([str(p) for p in probes])
    return DemoReport(
        work,
        gallery,
        index,
        build,
        query,
        idents,
        drawn=data is None,
        looser=looser,
        one_shot=one_shot,
        one_shot_index=one_index,
    )
