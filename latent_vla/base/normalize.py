"""Normalization between robot units and the model's inputs (numpy only; the ONNX runtime reuses it).

* joint state: standardized with the dataset's per-joint mean and std;
* actions: mapped to ``[-1, 1]`` with the dataset's per-joint min and max (architecture.md, section 4),
  so planner bounds are the support of the data;
* images: uint8 ``(H, W, 3)`` resized to the model's ``(h, w)`` and scaled to float32 ``[0, 1]``,
  channels first. Training caches frames through :meth:`Normalizer.resize_image`, so training and
  deployment resize with the same code.

The normalizer is saved as ``stats.json`` next to the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latent_vla.base.robot_spec import RobotSpec

_MIN_RANGE = 1e-3  # robot units; a joint that never moved still maps to a finite range
_MIN_STD = 1e-3


def _vec(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"normalizer {name} has non-finite values: {arr}")
    return arr


def resize_uint8(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize uint8 images ``(..., H, W, C)`` to ``(..., height, width, C)``.

    Integer down-scaling factors use the block mean (area averaging, no aliasing); anything else uses
    bilinear interpolation with half-pixel centres (like ``torch.nn.functional.interpolate(...,
    align_corners=False)``). Returns uint8.
    """
    image = np.asarray(image)
    src_h, src_w = image.shape[-3], image.shape[-2]
    if (src_h, src_w) == (height, width):
        return image.astype(np.uint8, copy=False)
    if src_h % height == 0 and src_w % width == 0:
        fh, fw = src_h // height, src_w // width
        blocks = image.reshape(*image.shape[:-3], height, fh, width, fw, image.shape[-1]).astype(np.float32)
        out = blocks.mean(axis=(-4, -2))
    else:
        ys = np.clip((np.arange(height) + 0.5) * src_h / height - 0.5, 0, src_h - 1)
        xs = np.clip((np.arange(width) + 0.5) * src_w / width - 0.5, 0, src_w - 1)
        y0 = np.floor(ys).astype(int)
        x0 = np.floor(xs).astype(int)
        y1 = np.minimum(y0 + 1, src_h - 1)
        x1 = np.minimum(x0 + 1, src_w - 1)
        wy = (ys - y0)[:, None, None].astype(np.float32)
        wx = (xs - x0)[None, :, None].astype(np.float32)
        img = image.astype(np.float32)
        top = img[..., y0, :, :][..., :, x0, :] * (1 - wx) + img[..., y0, :, :][..., :, x1, :] * wx
        bot = img[..., y1, :, :][..., :, x0, :] * (1 - wx) + img[..., y1, :, :][..., :, x1, :] * wx
        out = top * (1 - wy) + bot * wy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class Normalizer:
    """Per-feature statistics of a dataset and the maps they define.

    Attributes:
        state_mean: ``(S,)`` mean joint state, robot units.
        state_std: ``(S,)`` std of the joint state, robot units (floored at 1e-3).
        action_min: ``(A,)`` smallest action seen per joint, robot units.
        action_max: ``(A,)`` largest action seen per joint, robot units.
        image_size: ``(h, w)`` pixels the model sees.
        camera_names: camera names in the model's order (dataset keys without ``observation.images.``).
    """

    state_mean: np.ndarray
    state_std: np.ndarray
    action_min: np.ndarray
    action_max: np.ndarray
    image_size: tuple[int, int] = (64, 64)
    camera_names: tuple[str, ...] = ("front",)

    def __post_init__(self) -> None:
        self.state_mean = _vec(self.state_mean, "state_mean")
        self.state_std = np.maximum(_vec(self.state_std, "state_std"), _MIN_STD)
        self.action_min = _vec(self.action_min, "action_min")
        self.action_max = _vec(self.action_max, "action_max")
        if self.state_mean.shape != self.state_std.shape:
            raise ValueError(f"state_mean {self.state_mean.shape} and state_std {self.state_std.shape} differ")
        if self.action_min.shape != self.action_max.shape:
            raise ValueError(f"action_min {self.action_min.shape} and action_max {self.action_max.shape} differ")
        if np.any(self.action_max < self.action_min):
            raise ValueError("action_max is below action_min for some joint")
        # Widen degenerate ranges symmetrically so the map stays invertible.
        narrow = (self.action_max - self.action_min) < _MIN_RANGE
        if narrow.any():
            mid = 0.5 * (self.action_min + self.action_max)
            self.action_min = np.where(narrow, mid - 0.5 * _MIN_RANGE, self.action_min)
            self.action_max = np.where(narrow, mid + 0.5 * _MIN_RANGE, self.action_max)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.camera_names = tuple(self.camera_names)

    @property
    def state_dim(self) -> int:
        """S, the joint-state size."""
        return int(self.state_mean.shape[0])

    @property
    def action_dim(self) -> int:
        """A, the action size."""
        return int(self.action_min.shape[0])

    def _check_last(self, x: np.ndarray, n: int, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != n:
            raise ValueError(f"{what}: expected last dimension {n}, got shape {x.shape}")
        return x

    # -- state ------------------------------------------------------------------------------
    def state_to_model(self, state: np.ndarray) -> np.ndarray:
        """Robot units ``(..., S)`` -> standardized float32 ``(..., S)``."""
        state = self._check_last(state, self.state_dim, "state")
        return ((state - self.state_mean) / self.state_std).astype(np.float32)

    def state_from_model(self, state: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`state_to_model`: standardized ``(..., S)`` -> robot units float32."""
        state = self._check_last(state, self.state_dim, "state")
        return (state * self.state_std + self.state_mean).astype(np.float32)

    # -- action -----------------------------------------------------------------------------
    def action_to_model(self, action: np.ndarray) -> np.ndarray:
        """Robot units ``(..., A)`` -> float32 ``(..., A)``, ``[-1, 1]`` over the dataset's range.

        Values outside the data range map outside ``[-1, 1]``; they are not clipped here.
        """
        action = self._check_last(action, self.action_dim, "action")
        scaled = 2.0 * (action - self.action_min) / (self.action_max - self.action_min) - 1.0
        return scaled.astype(np.float32)

    def action_from_model(self, action: np.ndarray) -> np.ndarray:
        """``[-1, 1]`` ``(..., A)`` -> robot units float32 ``(..., A)``, clipped to the data range."""
        action = np.clip(self._check_last(action, self.action_dim, "action"), -1.0, 1.0)
        out = self.action_min + 0.5 * (action + 1.0) * (self.action_max - self.action_min)
        return out.astype(np.float32)

    # -- images -----------------------------------------------------------------------------
    def resize_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 ``(..., H, W, 3)`` -> uint8 ``(..., h, w, 3)`` at the model's image size."""
        image = np.asarray(image)
        if image.ndim < 3 or image.shape[-1] != 3:
            raise ValueError(f"expected uint8 images shaped (..., H, W, 3), got {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"expected uint8 images, got {image.dtype}")
        return resize_uint8(image, *self.image_size)

    def image_to_model(self, image: np.ndarray) -> np.ndarray:
        """uint8 ``(..., H, W, 3)`` -> float32 ``(..., 3, h, w)`` in ``[0, 1]``, resized."""
        small = self.resize_image(image)
        return (np.moveaxis(small, -1, -3).astype(np.float32) / 255.0).astype(np.float32)

    # -- serialization ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``stats.json``)."""
        return {
            "state_mean": self.state_mean.tolist(),
            "state_std": self.state_std.tolist(),
            "action_min": self.action_min.tolist(),
            "action_max": self.action_max.tolist(),
            "image_size": list(self.image_size),
            "camera_names": list(self.camera_names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError: naming the missing field.
        """
        required = ("state_mean", "state_std", "action_min", "action_max")
        missing = [k for k in required if k not in data]
        if missing:
            raise KeyError(f"normalizer stats lack {missing}")
        return cls(
            state_mean=np.asarray(data["state_mean"]),
            state_std=np.asarray(data["state_std"]),
            action_min=np.asarray(data["action_min"]),
            action_max=np.asarray(data["action_max"]),
            image_size=tuple(data.get("image_size", (64, 64))),
            camera_names=tuple(data.get("camera_names", ("front",))),
        )

    @classmethod
    def from_arrays(
        cls,
        states: np.ndarray,
        actions: np.ndarray,
        image_size: Sequence[int] = (64, 64),
        camera_names: Sequence[str] = ("front",),
    ) -> Normalizer:
        """Statistics of ``states`` ``(N, S)`` and ``actions`` ``(N, A)`` in robot units."""
        states = np.asarray(states, dtype=np.float64)
        actions = np.asarray(actions, dtype=np.float64)
        if states.ndim != 2 or actions.ndim != 2 or len(states) == 0 or len(actions) == 0:
            raise ValueError(f"need non-empty (N, S) states and (N, A) actions, got {states.shape}, {actions.shape}")
        return cls(
            state_mean=states.mean(0),
            state_std=states.std(0),
            action_min=actions.min(0),
            action_max=actions.max(0),
            image_size=tuple(image_size),
            camera_names=tuple(camera_names),
        )


LIMIT_MARGIN = 0.1  # fraction of a joint's range that statistics may reach beyond its limits


def limit_problems(norm: Normalizer, spec: RobotSpec, margin: float = LIMIT_MARGIN) -> list[str]:
    """Where dataset statistics do not fit the arm they claim to describe (empty when they do).

    Data recorded on an arm lies within its joint limits, so action bounds (``action_min/max``) and
    the state mean must lie within ``[lower - m, upper + m]`` per joint, ``m = margin * (upper - lower)``
    (robot units), and the state std within half that widened range. Statistics beyond that (say
    ``+-1e6``) were not measured on this arm and would scale every action out of it.

    Args:
        norm: the statistics (``A = S = J`` expected).
        spec: the robot spec, whose limits must themselves be finite with ``lower < upper``.
        margin: allowed excess as a fraction of each joint's range.

    Returns:
        One message per problem, each naming the field, the joint and both values.
    """
    try:
        lo, hi = spec.lower, spec.upper
    except (TypeError, ValueError):
        return [f"robot spec {spec.name!r} has non-numeric joint limits"]
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
        return [f"robot spec {spec.name!r} has non-finite or inverted joint limits {lo.tolist()}..{hi.tolist()}"]
    j = spec.num_joints
    if (norm.state_dim, norm.action_dim) != (j, j):
        return [f"statistics have {norm.state_dim} state and {norm.action_dim} action values, the arm {j} joints"]
    slack = margin * (hi - lo)
    checks = (
        ("action_min", norm.action_min, lo - slack, hi + slack),
        ("action_max", norm.action_max, lo - slack, hi + slack),
        ("state_mean", norm.state_mean, lo - slack, hi + slack),
        ("state_std", norm.state_std, np.zeros(j), 0.5 * (hi - lo) + slack),
    )
    problems = []
    for field_name, values, low, high in checks:
        for name, v, a, b in zip(spec.joint_names, values, low, high, strict=True):
            if not a <= v <= b:
                problems.append(f"{field_name} of {name} is {v:g}, outside {a:g}..{b:g}")
    return problems
