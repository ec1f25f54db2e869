"""Maps QM9 property predictions to the three [0, 1] objectives: alpha up, gap in a band, U0 down."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from morbench.errors import ConfigError

OBJECTIVE_NAMES = ("alpha", "gap", "u0")
DEFAULT_GAP_TARGET_EV = 5.0
DEFAULT_GAP_WIDTH_EV = 1.0

__all__ = [
    "DEFAULT_GAP_TARGET_EV",
    "DEFAULT_GAP_WIDTH_EV",
    "OBJECTIVE_NAMES",
    "EmpiricalCDF",
    "RewardTransform",
]


@dataclasses.dataclass(frozen=True)
class EmpiricalCDF:
    """A piecewise-linear empirical CDF through ``(values[i], probabilities[i])`` knots (0 below, 1 above)."""

    values: np.ndarray
    probabilities: np.ndarray

    @classmethod
    def fit(cls, sample: np.ndarray, knots: int = 1001) -> EmpiricalCDF:
        """Knots at the ``knots`` evenly spaced quantiles of ``sample``; tied quantiles are merged."""
        probabilities = np.linspace(0.0, 1.0, knots)
        values = np.quantile(np.asarray(sample, dtype=np.float64), probabilities)
        unique, inverse = np.unique(values, return_inverse=True)
        merged = np.bincount(inverse, weights=probabilities) / np.bincount(inverse)
        return cls(unique, merged)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.interp(x, self.values, self.probabilities, left=0.0, right=1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values.tolist(), "probabilities": self.probabilities.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmpiricalCDF:
        return cls(np.asarray(data["values"], dtype=np.float64), np.asarray(data["probabilities"], dtype=np.float64))


@dataclasses.dataclass(frozen=True)
class RewardTransform:
    """``(n, 3)`` raw properties (alpha bohr^3, gap eV, U0 hartree) -> ``(n, 3)`` rewards in [0, 1].

    * ``alpha = F_alpha(alpha)``: percentile of the polarizability among QM9 training molecules (maximise).
    * ``gap = exp(-(gap - target)^2 / (2 width^2))``: 1 at the target gap, 0.61 one width away (band).
    * ``u0 = 1 - F_U0(U0)``: the fraction of QM9 training molecules with a higher U0 (minimise U0).
    """

    alpha_cdf: EmpiricalCDF
    u0_cdf: EmpiricalCDF
    gap_target_ev: float = DEFAULT_GAP_TARGET_EV
    gap_width_ev: float = DEFAULT_GAP_WIDTH_EV

    def __post_init__(self) -> None:
        if not np.isfinite(self.gap_target_ev) or not (np.isfinite(self.gap_width_ev) and self.gap_width_ev > 0):
            raise ConfigError(
                f"gap_target_ev must be finite and gap_width_ev > 0; got {self.gap_target_ev}, {self.gap_width_ev}"
            )

    def __call__(self, properties: np.ndarray) -> np.ndarray:
        properties = np.asarray(properties, dtype=np.float64).reshape(-1, 3)
        alpha = self.alpha_cdf(properties[:, 0])
        gap = np.exp(-0.5 * ((properties[:, 1] - self.gap_target_ev) / self.gap_width_ev) ** 2)
        u0 = 1.0 - self.u0_cdf(properties[:, 2])
        return np.stack([alpha, gap, u0], axis=1)

    def with_gap_band(self, target_ev: float, width_ev: float) -> RewardTransform:
        return dataclasses.replace(self, gap_target_ev=float(target_ev), gap_width_ev=float(width_ev))

    def to_dict(self) -> dict[str, Any]:
        return {"alpha_bohr3_cdf": self.alpha_cdf.to_dict(), "u0_hartree_cdf": self.u0_cdf.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], gap_target_ev: float, gap_width_ev: float) -> RewardTransform:
        return cls(
            EmpiricalCDF.from_dict(data["alpha_bohr3_cdf"]),
            EmpiricalCDF.from_dict(data["u0_hartree_cdf"]),
            float(gap_target_ev),
            float(gap_width_ev),
        )
