"""The encoder record an index keeps in its manifest, and the checks that a model is that encoder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.store import Manifest
from simsearch.errors import EncoderMismatchError, SimSearchError

# The modules that load torch (checkpoint, device, encoder) are imported where an encoder is
# needed, so reading or editing an index without embedding (info, check, remove) starts at once.
if TYPE_CHECKING:
    from simsearch.checkpoint import LoadedModel
    from simsearch.embed import Embedder
    from simsearch.encoder import EncoderConfig

__all__ = ["check_model_against", "encoder_record", "model_for_index", "recorded_config"]


def encoder_record(model: LoadedModel) -> dict[str, Any]:
    """What an index's manifest records about the encoder that made it."""
    return {
        "source": model.source,
        "fingerprint": model.fingerprint,
        "config": model.config.to_dict(),
    }


def check_model_against(manifest: Manifest, model: LoadedModel, index: Path) -> None:
    want = manifest.encoder.get("fingerprint")
    if want != model.fingerprint:
        raise EncoderMismatchError(
            f"{index} was built with encoder {manifest.encoder.get('source')!r} "
            f"(fingerprint {str(want)[:12]}), not {model.source!r} (fingerprint {model.fingerprint[:12]}); "
            "query it with its own encoder, or rebuild with --overwrite"
        )
    if recorded_config(manifest) not in (None, model.config):
        raise EncoderMismatchError(
            f"{index} was built with the same weights as {model.source!r} but other preprocessing "
            "(input size, crop, ink framing, inversion or contrast); query it with its own encoder, or rebuild with --overwrite"
        )


def recorded_config(manifest: Manifest) -> EncoderConfig | None:
    """The encoder configuration the manifest recorded, or None when it has none (or an unreadable one)."""
    from simsearch.encoder import EncoderConfig

    try:
        return EncoderConfig.from_dict(manifest.encoder["config"])
    except (KeyError, TypeError, ValueError):
        return None


def model_for_index(manifest: Manifest, index: Path, model: str | None, device: str) -> Embedder:
    """An Embedder with the encoder an index was built with (or after checking that `model` is that encoder)."""
    from simsearch.embed import Embedder

    source = model or manifest.encoder.get("source")
    try:
        embedder = Embedder.load(source, device)
    except SimSearchError as err:
        if model:
            raise
        raise EncoderMismatchError(
            f"{index} was built with encoder {source!r}, which cannot be loaded here ({err})"
        ) from None
    check_model_against(manifest, embedder.loaded, index)
    return embedder
