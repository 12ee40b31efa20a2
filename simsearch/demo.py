"""`simsearch demo`: the main job end to end on a gallery it draws itself (or on a folder it is given)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simsearch.engine import BuildReport, Identification, OperatingPoint, QueryResult, Searcher, build_index
from simsearch.errors import DataError
from simsearch.images import scan_folder
from simsearch.symbols import draw_symbol, write_symbol_set

__all__ = ["GALLERY_CLASSES", "UNKNOWN_CLASS", "DemoReport", "run_demo"]

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
        for title, idents in (("identify:", self.identifications), ("identify --fpir 0.1:", self.looser or [])):
            if not idents:
                continue
            d = idents[0].decision
            out += ["", f"{title} threshold {d.describe()}"]
            out += [self._line(ident) for ident in idents]
        if self.looser:
            out += [
                "",
                "A threshold says how often a drawing of a class the gallery lacks is accepted (FPIR). This",
                "gallery fitted its own on its 30 drawings; 30 cannot show what 1 unknown drawing in 100 scores,",
                "so at 1% the threshold keeps a margin above the best impostor it saw, and a loosely drawn star",
                "can come back unknown; at 10% it is accepted. Pick the rate you can live with, or measure it",
                "on labelled probes: simsearch calibrate --help.",
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


def run_demo(
    workdir: str | Path, data: str | Path | None = None, device: str = "auto", progress: bool = True
) -> DemoReport:
    """Make (or take) a gallery, index it, answer one query and identify known and unknown probes."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    index = work / "demo.idx"
    queries_dir = work / "queries"
    if data is None:
        gallery = work / "gallery"
        if gallery.exists():
            shutil.rmtree(gallery)
        write_symbol_set(gallery, GALLERY_CLASSES, per_class=5, seed=0)
        queries_dir.mkdir(exist_ok=True)
        rng = np.random.default_rng(1)
        probes = []
        for name in (GALLERY_CLASSES[3], GALLERY_CLASSES[1], UNKNOWN_CLASS):
            p = queries_dir / f"new_{name}.png"
            draw_symbol(name, rng).save(p)
            probes.append(p)
    else:
        gallery = Path(data)
        files = scan_folder(gallery).files
        if not files:
            raise DataError(f"{gallery}: no images found")
        labelled = [f for f in files if f.label is not None]
        probes = [labelled[0].path if labelled else files[0].path]
    build = build_index(gallery, index, device=device, overwrite=True, progress=progress)
    with Searcher(index, device=device) as searcher:
        query = searcher.query(str(probes[0]), k=5)[0]
        idents, looser = [], None
        if searcher.classes():
            idents = searcher.identify([str(p) for p in probes])
            if data is None:
                looser = searcher.identify([str(p) for p in probes], point=OperatingPoint(fpir=0.1))
    return DemoReport(work, gallery, index, build, query, idents, drawn=data is None, looser=looser)
