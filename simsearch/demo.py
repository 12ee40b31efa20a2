"""`simsearch demo`: the main job end to end on a gallery it draws itself (or on a folder it is given)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simsearch.engine import BuildReport, Identification, QueryResult, Searcher, build_index
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
        idents = searcher.identify([str(p) for p in probes]) if searcher.classes() else []
    return DemoReport(workdir=work, gallery=gallery, index=index, build=build, query=query, identifications=idents)
