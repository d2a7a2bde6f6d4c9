"""The global colour MLP: grid features + encoded view direction → RGB.

ReRF (after DVGO) decodes every frame of a sequence with one small MLP fitted on
the keyframe and then frozen, so the MLP travels once per stream while the grids
change. Its weights are plain named arrays (``decoder.npz`` / the ``.rerf`` tensor
table) and its shape is a small JSON config kept in ``sequence.json`` under
``"mlp"``; ``from_arrays`` checks one against the other so a player never builds a
network from weights it does not understand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rerf_codec.checks import is_int
from rerf_codec.errors import RerfFormatError

MLP_KIND = "rerf-color-mlp"


@dataclass(frozen=True)
class MLPConfig:
    """Shape of the colour MLP (stored as ``sequence.json["mlp"]``)."""

    feature_channels: int = 12
    """Channels of the feature grid fed to the first layer."""
    viewbase_pe: int = 4
    """Frequencies of the view-direction positional encoding (DVGO ``viewbase_pe``)."""
    width: int = 128
    """Hidden layer width."""
    depth: int = 3
    """Linear layers in total (depth-1 hidden ReLU layers, then the RGB layer)."""

    @property
    def in_dim(self) -> int:
        return self.feature_channels + 3 + 6 * self.viewbase_pe

    def to_json(self) -> dict[str, Any]:
        return {"kind": MLP_KIND, **asdict(self)}

    @staticmethod
    def from_json(d: Any, source: str = "sequence.json") -> MLPConfig:
        if not isinstance(d, dict) or d.get("kind") != MLP_KIND:
            raise RerfFormatError(f"{source}: field 'mlp' must be an object with kind '{MLP_KIND}', got {d!r}")
        limits = {"feature_channels": (1, 256), "viewbase_pe": (0, 16), "width": (1, 4096), "depth": (1, 16)}
        values = {}
        for key, (lo, hi) in limits.items():
            v = d.get(key)
            if not is_int(v) or not lo <= int(v) <= hi:
                raise RerfFormatError(f"{source}: field 'mlp.{key}' must be an integer in {lo}..{hi}, got {v!r}")
            values[key] = int(v)
        return MLPConfig(**values)


def encode_directions(dirs: torch.Tensor, frequencies: int) -> torch.Tensor:
    """``[d, sin(2^k d), cos(2^k d)]`` for k < frequencies (DVGO's view-direction encoding)."""
    if frequencies == 0:
        return dirs
    freqs = 2.0 ** torch.arange(frequencies, dtype=dirs.dtype, device=dirs.device)
    x = (dirs[..., None] * freqs).flatten(-2)
    return torch.cat([dirs, torch.sin(x), torch.cos(x)], dim=-1)


class ColorMLP(nn.Module):
    """features (K, C) + directions (K, 3) → RGB in (0, 1) through a sigmoid."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        dim = config.in_dim
        for _ in range(config.depth - 1):
            layers += [nn.Linear(dim, config.width), nn.ReLU(inplace=True)]
            dim = config.width
        layers.append(nn.Linear(dim, 3))
        self.net = nn.Sequential(*layers)
        # Start near grey so early gradients reach every layer (DVGO zeroes the last bias).
        nn.init.constant_(self.net[-1].bias, 0.0)

    def forward(self, features: torch.Tensor, dir_encoding: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(torch.cat([features, dir_encoding], dim=-1)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named float32 arrays for ``decoder.npz`` / the stream's tensor table."""
        return {f"mlp.{k}": v.detach().cpu().numpy().astype(np.float32) for k, v in self.state_dict().items()}

    @staticmethod
    def from_arrays(config: MLPConfig, arrays: dict[str, np.ndarray], source: str = "decoder") -> ColorMLP:
        """Rebuild from ``to_arrays`` output; names and shapes must match ``config`` exactly."""
        mlp = ColorMLP(config)
        want = mlp.state_dict()
        names = {k for k in arrays if k.startswith("mlp.")}
        expected = {f"mlp.{k}" for k in want}
        if names != expected:
            missing = sorted(expected - names)
            extra = sorted(names - expected)
            raise RerfFormatError(f"{source}: MLP arrays do not match the config (missing {missing}, unexpected {extra})")
        state = {}
        for k, ref in want.items():
            arr = np.asarray(arrays[f"mlp.{k}"])
            if tuple(arr.shape) != tuple(ref.shape) or arr.dtype.kind != "f":
                raise RerfFormatError(
                    f"{source}: field 'mlp.{k}' has shape {arr.shape} {arr.dtype}, expected {tuple(ref.shape)} float"
                )
            if not np.isfinite(arr).all():
                raise RerfFormatError(f"{source}: field 'mlp.{k}' contains non-finite values")
            state[k] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        mlp.load_state_dict(state)
        return mlp


def seeded_mlp(config: MLPConfig, seed: int) -> ColorMLP:
    """A freshly initialised MLP whose weights depend only on ``seed`` (not on global RNG state)."""
    gen = torch.Generator().manual_seed(int(seed))
    mlp = ColorMLP(config)
    with torch.no_grad():
        for module in mlp.net:
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound, generator=gen)
                module.bias.uniform_(-bound, bound, generator=gen)
        mlp.net[-1].bias.zero_()
    return mlp
