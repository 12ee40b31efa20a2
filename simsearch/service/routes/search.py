"""POST /search and POST /identify: an uploaded image (or a text) answered as `query --json` and
`identify --json` answer it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from simsearch.config.search import IdentifyOptions, QueryOptions
from simsearch.engine import OperatingPoint
from simsearch.service.declared import query_params
from simsearch.service.state import Service, service

__all__ = ["router"]

router = APIRouter()
_MAX_RANK = 10_000  # offset + k: how deep a result list may be paged
_MAX_TEXT = 1000  # characters of a text query


def _folder(svc: Service, under: str | None) -> str | None:
    """The gallery folder a search is limited to (None: all of it)."""
    if under is None or not under.strip("/. "):
        return None
    root = svc.searcher.gallery_root
    if root is None:
        raise HTTPException(422, "this index has no gallery folder to filter by")
    return os.path.join(root, under)


@router.post("/search", summary="Nearest gallery images to an uploaded image, or to a text, best first")
async def search(
    svc: Annotated[Service, Depends(service)],
    asked: Annotated[QueryOptions, Depends(query_params(QueryOptions, ["k", "offset", "labels", "under"]))],
    file: Annotated[UploadFile | None, File(description="the query image (or give text)")] = None,
    text: Annotated[
        str | None,
        Form(
            max_length=_MAX_TEXT,
            description="words to search by instead of an image, e.g. 'a red dress' (CLIP-family encoders)",
        ),
    ] = None,
) -> dict[str, Any]:
    k, offset, label = asked.k, asked.offset, list(asked.labels)
    under = None if asked.under is None else str(asked.under)
    if offset + k > _MAX_RANK:
        raise HTTPException(422, f"offset + k may be at most {_MAX_RANK:,}")
    if under is not None and (os.path.isabs(under) or ".." in Path(under).parts):
        raise HTTPException(422, "under must be a folder of the gallery, relative to it (like 'cats/2021')")

    def respond(vec: np.ndarray, name: str, images: bool = True) -> dict[str, Any]:  # under the lock
        folder = _folder(svc, under)
        # a class the gallery does not have: ValueError, answered 422 by the app's handler
        res = svc.searcher.search_vectors(
            vec, [name], k, offset=offset, labels=label or None, under=folder, images=images
        )[0]
        return dict(res.to_dict(), results=[svc.hit(h) for h in res.results])

    if (file is None) == (text is None):
        raise HTTPException(422, "give a query image (file) or a text, not both or neither")
    if text is not None:
        return await svc.answer_text(text, lambda vec, name: respond(vec, name, images=False))
    assert file is not None
    return await svc.answer(file, respond)


@router.post("/identify", summary="Which gallery class an uploaded image shows, or unknown")
async def identify(
    svc: Annotated[Service, Depends(service)],
    file: Annotated[UploadFile, File(description="the query image")],
    asked: Annotated[
        IdentifyOptions, Depends(query_params(IdentifyOptions, ["threshold", "fpir", "fnir", "closed_set"]))
    ],
) -> dict[str, Any]:
    point = OperatingPoint(threshold=asked.threshold, fpir=asked.fpir, fnir=asked.fnir, closed_set=asked.closed_set)
    svc.searcher.decision(point=point)  # a point the index cannot answer at: refused before the upload is read

    def respond(vec: np.ndarray, name: str) -> dict[str, Any]:
        answer = svc.searcher.identify_vectors(vec, [name], point=point)[0].to_dict()
        if answer.get("match") is not None:
            answer["match"] = svc.shown(answer["match"])
        return answer

    return await svc.answer(file, respond)
