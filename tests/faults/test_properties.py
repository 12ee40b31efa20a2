"""Property-based fault tests (Hypothesis): whatever bytes arrive as an image, a manifest or a model.json,
the answer is a decoded image or one clear error, never a traceback, a hang or unbounded memory."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from index.errors import IndexCorruptError
from index.store import Manifest
from simsearch.errors import ImageError, ModelError
from simsearch.images import decode_image, load_array
from simsearch.preprocess import Preprocess

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _png(w: int, h: int, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 128).save(buf, "PNG")
    return buf.getvalue()


@FAST
@given(st.binary(max_size=4096))
def test_any_bytes_decode_or_fail_with_a_reason(data):
    try:
        img = decode_image(data, channels=3)
    except ImageError as err:
        assert err.reason and "\n" not in err.reason
    else:
        assert img.mode == "RGB" and img.size[0] > 0


@FAST
@given(
    st.integers(1, 64),
    st.integers(1, 64),
    st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "1"]),
    st.integers(0, 200),
    st.binary(max_size=64),
)
def test_a_real_image_damaged_anywhere_decodes_or_fails_with_a_reason(w, h, mode, cut, junk):
    data = _png(w, h, mode)
    damaged = data[: max(0, len(data) - cut)] + junk
    try:
        arr = load_array(damaged, Preprocess(channels=1, size=16))
    except ImageError as err:
        assert err.reason
    else:
        assert arr.shape == (1, 16, 16) and arr.dtype == np.uint8


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
MANIFEST_KEYS = [
    "format_version",
    "dim",
    "encoder",
    "generation",
    "count",
    "next_id",
    "metric",
    "kind",
    "params",
    "threshold",
    "calibration",
    "gallery_calibration",
    "checksums",
    "created",
    "updated",
]


@FAST
@given(st.dictionaries(st.sampled_from(MANIFEST_KEYS), json_values, max_size=len(MANIFEST_KEYS)) | json_values)
def test_any_manifest_json_parses_or_is_a_clear_error(value):
    try:
        m = Manifest.from_json(json.dumps(value))
    except IndexCorruptError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert m.dim >= 1 and isinstance(m.encoder, dict)


@FAST
@given(json_values)
def test_any_model_json_loads_or_is_a_clear_error(tmp_path_factory, value):
    from simsearch.checkpoint import load_checkpoint

    folder = tmp_path_factory.mktemp("ck")
    (folder / "model.json").write_text(json.dumps(value))
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ModelError) as err:
        load_checkpoint(str(folder))
    assert "\n" not in str(err.value)
