"""OpenCLIP image-text models as encoders: text queries through the CLI and the service. A tiny CLIP is
built here from a config (random weights saved by the test): nothing is downloaded. Skipped without
the extras (pip install 'simsearch[clip]'; .ci/run gives these tests their own environment)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import numpy as np
import torch

from tests.backbones.conftest import need
from tests.conftest import run_cli

open_clip = need("open_clip")

# a CLIP small enough to build in a moment: a 2-layer ViT on 32-pixel input, a 1-layer text transformer
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def test_openclip_text_and_image_search(tmp_path: Path) -> None:
    """An OpenCLIP model (config given as a file) imported with random weights: the text query's
    embedding is OpenCLIP's own encode_text, normalized; CLI and service answer text; a --head
    fine-tune keeps text search."""
    from simsearch.embed import Embedder
    from simsearch.shapes import write_captioned_shapes
    from tests.test_service import request, start_server

    (tmp_path / "tiny.json").write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(2)
    model = open_clip.CLIP(**TINY_CLIP).eval()
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    run_cli(
        "models", "import", "openclip:tiny", "--config", tmp_path / "tiny.json", "--weights", tmp_path / "tiny.pt",
        "--out", tmp_path / "oc", check=True,
    )  # fmt: skip
    emb = Embedder.load(str(tmp_path / "oc"), device="cpu")
    assert emb.supports_text
    words = ["two red circles", "a purple triangle"]
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=16)
    with torch.no_grad():
        theirs = torch.nn.functional.normalize(model.encode_text(tok(words)), dim=1).numpy()
    np.testing.assert_allclose(emb.embed_text(words), theirs, atol=1e-5)

    write_captioned_shapes(tmp_path / "g", 40, seed=3, size=32)
    run_cli("index", "build", tmp_path / "g", "--model", tmp_path / "oc", "--index", tmp_path / "idx", "-q", check=True)
    proc = run_cli("query", "--text", words[0], "--index", tmp_path / "idx", "-k", "3", "--json", check=True)
    res = json.loads(proc.stdout)
    assert res["query"] == f"text: {words[0]}" and len(res["results"]) == 3
    server, base = start_server(tmp_path / "idx")
    try:
        body = urllib.parse.urlencode({"text": words[1]}).encode()
        status, raw, _ = request(
            base + "/search?k=4", "POST", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 200 and len(json.loads(raw)["results"]) == 4
    finally:
        server.terminate()
        server.wait(timeout=20)

    run_cli(
        "train", tmp_path / "g", "--self-supervised", "--init", tmp_path / "oc", "--head", "16", "--train-blocks", "0",
        "--batch", "8", "--steps", "2", "--val-every", "2", "--out", tmp_path / "ft", check=True,
    )  # fmt: skip
    tuned = Embedder.load(str(tmp_path / "ft"), device="cpu")
    assert tuned.embed_text(words).shape == (2, 16) and tuned.dim == 16


def test_configs_marked_custom_text_rebuild_from_model_json() -> None:
    """OpenCLIP's EVA and CoCa configs carry `custom_text`, which open_clip.create_model strips before
    building: a checkpoint of one must rebuild from its model.json alone (built here on the meta device:
    no memory, no download)."""
    from simsearch.backbones import Backbone, build_trunk

    for name in ("EVA02-B-16", "coca_ViT-B-32"):
        cfg = open_clip.get_model_config(name)
        assert cfg.get("custom_text")
        with torch.device("meta"):
            trunk = build_trunk(Backbone("openclip", name, int(cfg["embed_dim"]), cfg))
        assert sum(p.numel() for p in trunk.parameters()) > 50_000_000 and hasattr(trunk, "encode_text")
