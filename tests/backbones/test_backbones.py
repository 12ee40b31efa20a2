"""Library backbones as encoders (timm, torchvision, OpenCLIP), end to end through the real `simsearch`
command. Every model is built here, small, from random weights or weights this test saves itself:
nothing is downloaded. Needs the extras (pip install 'simsearch[backbones,clip]' beside a torch that
torchvision imports with; .ci/run gives these tests their own environment); skipped without them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tests.backbones.conftest import need
from tests.conftest import run_cli

timm = need("timm")
torchvision = need("torchvision")


def _pixels(paths: list[Path], size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """What simsearch feeds a backbone: the picture resized to size x size, scaled and normalized."""
    from simsearch.images import load_array
    from simsearch.preprocess import Preprocess

    arrays = np.stack([load_array(str(p), Preprocess.plain(3, size)) for p in paths])
    x = torch.from_numpy(arrays).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _embed(model_dir: Path, paths: list[Path]) -> np.ndarray:
    from simsearch.embed import Embedder

    return Embedder.load(str(model_dir), device="cpu").embed_paths([str(p) for p in paths])[0]


def test_timm_weights_file_imported_indexed_and_queried(photos: Path, tmp_path: Path) -> None:
    """A timm network's own weights (saved here with its classifier) become a checkpoint whose
    embeddings are exactly the network's pooled features, normalized; index and query use it."""
    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False, num_classes=7).eval()
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    proc = run_cli(
        "models", "import", "timm:resnet18", "--weights", tmp_path / "r18.pth", "--size", "64", "--out",
        tmp_path / "r18", "--json", check=True,
    )  # fmt: skip
    info = json.loads(proc.stdout)
    assert info["spec"] == "timm:resnet18" and info["embedding_dim"] == 512 and info["size"] == 64 and not info["text"]
    meta = json.loads((tmp_path / "r18" / "model.json").read_text())
    assert meta["config"]["backbone"]["library"] == "timm" and meta["fingerprint"] == info["fingerprint"]

    paths = sorted(photos.glob("*.jpg"))[:6]
    ours = _embed(tmp_path / "r18", paths)
    net.reset_classifier(0)
    with torch.no_grad():
        cfg = net.pretrained_cfg
        theirs = torch.nn.functional.normalize(net(_pixels(paths, 64, cfg["mean"], cfg["std"])), dim=1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-4)

    run_cli("index", "build", photos, "--model", tmp_path / "r18", "--index", tmp_path / "idx", "-q", check=True)
    hit = json.loads(run_cli("query", paths[2], "--index", tmp_path / "idx", "--json", check=True).stdout)
    assert Path(hit["results"][0]["path"]).name == paths[2].name and hit["results"][0]["score"] > 0.999
    # the index remembers its encoder: another model is refused, as for built-in encoders
    proc = run_cli("query", paths[2], "--index", tmp_path / "idx", "--model", "photos")
    assert proc.returncode == 1 and "was built with encoder" in proc.stderr
    # an image-only backbone refuses text
    proc = run_cli("query", "--text", "a photo", "--index", tmp_path / "idx")
    assert proc.returncode == 1 and "embeds images only" in proc.stderr


def test_torchvision_weights_file(photos: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = torchvision.models.get_model("resnet18", weights=None).eval()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "tv.safetensors"))
    run_cli(
        "models", "import", "torchvision:resnet18", "--weights", tmp_path / "tv.safetensors", "--size", "64",
        "--out", tmp_path / "tv", check=True,
    )  # fmt: skip
    paths = sorted(photos.glob("*.jpg"))[:4]
    ours = _embed(tmp_path / "tv", paths)
    net.fc = torch.nn.Identity()
    with torch.no_grad():
        x = _pixels(paths, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        theirs = torch.nn.functional.normalize(net(x), dim=1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-4)


def test_import_refuses_what_does_not_fit(tmp_path: Path) -> None:
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), tmp_path / "other.pth")
    proc = run_cli("models", "import", "timm:resnet18", "--weights", tmp_path / "other.pth", "--out", tmp_path / "a")
    assert proc.returncode == 1 and "do not fit timm:resnet18" in proc.stderr
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    proc = run_cli("models", "import", "timm:resnet18", "--weights", tmp_path / "junk.pth", "--out", tmp_path / "a")
    assert proc.returncode == 1 and "not a readable weights file" in proc.stderr
    proc = run_cli("models", "import", "timm:no_such_net_xyz", "--random-init", "--out", tmp_path / "a")
    assert proc.returncode == 1 and "no_such_net_xyz" in proc.stderr
    proc = run_cli("models", "import", "timm:resnet18", "--out", tmp_path / "a")
    assert proc.returncode == 2 and "say where the weights come from" in proc.stderr
    assert not (tmp_path / "a" / "model.json").exists()
    # an existing folder is never overwritten
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("keep")
    proc = run_cli("models", "import", "timm:resnet18", "--random-init", "--out", tmp_path / "b")
    assert proc.returncode == 2 and (tmp_path / "b" / "mine.txt").read_text() == "keep"


def test_fine_tune_last_blocks_with_a_head(photos: Path, tmp_path: Path) -> None:
    """train --init on an imported backbone: --train-blocks 1 trains the last residual block and a new
    --head; every other weight is the import's, exactly."""
    run_cli("models", "import", "timm:resnet18", "--random-init", "--size", "48", "--out", tmp_path / "r18", check=True)
    proc = run_cli(
        "train", photos, "--self-supervised", "--init", tmp_path / "r18", "--train-blocks", "1", "--head", "32",
        "--batch", "16", "--steps", "3", "--val-every", "3", "--out", tmp_path / "ft", "--json", check=True,
    )  # fmt: skip
    assert json.loads(proc.stdout)["step_s"] > 0
    from simsearch.checkpoint import load_checkpoint

    before = load_checkpoint(str(tmp_path / "r18")).encoder.state_dict()
    tuned = load_checkpoint(str(tmp_path / "ft"))
    assert tuned.config.embedding_dim == 32 and tuned.config.backbone is not None
    after = tuned.encoder.state_dict()
    assert {k for k in after if k.startswith("head.")} == {"head.weight", "head.bias"}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("features.model.layer4.1.") for k in changed), sorted(changed)[:5]
    run_cli("index", "build", photos, "--model", tmp_path / "ft", "--index", tmp_path / "idx", "-q", check=True)
    assert json.loads(run_cli("index", "info", "--index", tmp_path / "idx", "--json", check=True).stdout)["dim"] == 32


def test_simsearch_loads_no_model_library_until_a_backbone_is_built() -> None:
    """Installed or not, timm, torchvision and OpenCLIP cost nothing until an imported encoder is loaded."""
    from tests.test_layering import loaded_after

    libraries = {"timm", "torchvision", "open_clip"}
    statement = "import simsearch.cli, simsearch.checkpoint, simsearch.embed, simsearch.train, simsearch.engine"
    assert not loaded_after(statement) & libraries
    assert not loaded_after("import simsearch.checkpoint as c; c.load_checkpoint('photos')") & libraries


def gallery_classes(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir()}


def test_identify_and_calibrate_with_an_imported_backbone(gallery: Path, tmp_path: Path) -> None:
    """The whole one-shot path with an imported network: a labelled gallery indexed, identify, a
    threshold calibrated on labelled probes and saved into the index."""
    from simsearch.symbols import write_symbol_set

    run_cli("models", "import", "timm:resnet18", "--random-init", "--size", "32", "--out", tmp_path / "r18", check=True)
    run_cli("index", "build", gallery, "--model", tmp_path / "r18", "--index", tmp_path / "idx", "-q", check=True)
    probe = sorted((gallery / "star").iterdir())[0]
    answer = json.loads(run_cli("identify", probe, "--index", tmp_path / "idx", "--json", check=True).stdout)
    # random weights give every drawing nearly the same embedding: the path is what is checked here, not the answer
    assert answer["status"] in ("identified", "uncertain", "unknown") and answer["best_class"] in gallery_classes(
        gallery
    )
    assert answer["threshold_source"] == "gallery"
    probes = tmp_path / "probes"
    write_symbol_set(probes, ["star", "circle", "wave", "square"], per_class=3, seed=5)
    run_cli("calibrate", probes, "--index", tmp_path / "idx", "--json", check=True)
    info = json.loads(run_cli("index", "info", "--index", tmp_path / "idx", "--json", check=True).stdout)
    assert info["threshold_source"] == "calibrated", info


def test_blocks_are_real_blocks() -> None:
    """--train-blocks counts blocks: a ViT's last is its last transformer block (with the final norm), a
    MobileNet's its last stage block (with the head convolution), a ResNet's stem is no block of its own."""
    from simsearch.encoder import Encoder
    from simsearch.train.freeze import trainable_blocks

    class Holder(Encoder):
        def __init__(self, model: torch.nn.Module) -> None:
            torch.nn.Module.__init__(self)
            self.features = torch.nn.Module()
            self.features.model = model

    vit = trainable_blocks(Holder(timm.create_model("vit_tiny_patch16_224", num_classes=0)))
    assert [type(m).__name__ for m in vit[-1]] == ["Block", "LayerNorm"] and len(
        vit
    ) == 12  # the patch embedding goes with block 0
    mobile = trainable_blocks(Holder(timm.create_model("mobilenetv3_small_100", num_classes=0)))
    assert [type(m).__name__ for m in mobile[-1]] == ["ConvBnAct", "Conv2d"]
    resnet = trainable_blocks(Holder(timm.create_model("resnet18", num_classes=0)))
    assert len(resnet) == 8 and [type(m).__name__ for m in resnet[0]] == ["Conv2d", "BatchNorm2d", "BasicBlock"]
