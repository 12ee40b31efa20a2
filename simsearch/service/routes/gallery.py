"""The gallery by catalog id only (no request names a path): GET /images/ID, /thumbnails/ID, /classes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi import Path as FastApiPath
from fastapi.responses import FileResponse, Response

from simsearch.service.state import Service, service

__all__ = ["router"]

router = APIRouter()
_MAX_ID = 2**63 - 1
ImageId = Annotated[int, FastApiPath(ge=0, le=_MAX_ID, description="the image's catalog id")]


@router.get("/images/{image_id}", summary="A gallery image, by catalog id")
def image(image_id: ImageId, svc: Annotated[Service, Depends(service)]) -> FileResponse:
    return FileResponse(svc.record_path(image_id))


@router.get("/thumbnails/{image_id}", summary="A JPEG thumbnail of a gallery image, by catalog id")
async def thumbnail(image_id: ImageId, svc: Annotated[Service, Depends(service)]) -> Response:
    made = await svc.guarded(lambda left: svc.thumbnail(image_id, left), counted=False)
    return Response(made, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})


@router.get("/classes", summary="The gallery's classes and how many images each has, largest first")
def classes(svc: Annotated[Service, Depends(service)]) -> dict[str, Any]:
    with svc.lock:
        svc.searcher.refresh()
        sizes = svc.searcher.class_sizes()
    named = sorted(((c, n) for c, n in sizes.items() if c is not None), key=lambda cn: (-cn[1], cn[0]))
    return {"classes": [{"label": c, "images": n} for c, n in named], "unlabelled": sizes.get(None, 0)}
