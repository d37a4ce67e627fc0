"""Points through a registration: a US point onto the MR, and an MR target onto the US.

A registration's field ``u`` (RAS mm on the US grid) maps the US point ``x`` to
the MR point ``phi(x) = x + u(x)`` (the resampling direction, docs/design.md).
:meth:`FieldMapper.to_mr` applies it, with ITK's interpolation of the field
(SimpleITK's ``DisplacementFieldTransform``, as Slicer and ITK read the ``.h5``).
:meth:`FieldMapper.to_us` inverts it: for an MR target ``y`` it finds the US
point ``x`` with ``phi(x) = y`` by Newton's method, the field's least-squares
affine part as the Jacobian's stand-in, and reports the residual
``|phi(x) - y|`` in mm. SimpleITK's own inverses (``InvertDisplacementField``,
``IterativeInverseDisplacementField``) invert the field on its own grid, the
US's, and an MR target lies off that grid whenever the initial alignment moved
the MR: on phantom pairs they left every target where it was, 45 mm (median)
from its US point, against 1e-7 mm for the per-point inverse; on the same
fields less their mean they reach 0.001-0.008 mm, in 0.7-1.8 s a field
(``python Testing/Benchmarks/benchmark_point_inversion.py``).

A point outside the field's grid has no displacement there (ITK returns zero):
it is refused by name with its distance to the grid, never mapped silently.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..core.volume import Volume

CONVERGED_MM = 1e-4  # the inversion stops when phi(x) is this close to the target
MAX_ITERATIONS = 100


class FieldMapper:
    """Maps points through one displacement field (a RAS mm :class:`~LabelRegLib.core.volume.Volume` ``[K, J, I, 3]``,
    fixed ``x`` -> moving ``x + u(x)``)."""

    def __init__(self, displacement: Volume, source: str = "the registration"):
        from ..core.transform_io import displacement_to_sitk_transform

        self.displacement = displacement
        self.source = source
        self.transform = displacement_to_sitk_transform(displacement)
        self.ras_to_ijk = np.linalg.inv(displacement.ijk_to_ras)
        self.shape_ijk = np.array(displacement.shape[::-1], dtype=float)
        self.affine = _affine_part(displacement)  # 4x4, fixed RAS -> moving RAS

    def outside_mm(self, ras: np.ndarray) -> np.ndarray:
        """How far each point lies outside the field's grid (between its outermost samples), mm; 0 inside."""
        ijk = np.asarray(ras, dtype=float) @ self.ras_to_ijk[:3, :3].T + self.ras_to_ijk[:3, 3]
        nearest = np.clip(ijk, 0.0, self.shape_ijk - 1.0)
        nearest_ras = nearest @ self.displacement.ijk_to_ras[:3, :3].T + self.displacement.ijk_to_ras[:3, 3]
        inside = np.all(nearest == ijk, axis=-1)
        return np.where(inside, 0.0, np.linalg.norm(nearest_ras - ras, axis=-1))

    def phi(self, ras: np.ndarray) -> np.ndarray:
        """``x + u(x)`` of each point (RAS mm), the field interpolated by ITK."""
        lps = np.asarray(ras, dtype=float).reshape(-1, 3) * [-1.0, -1.0, 1.0]
        moved = np.array([self.transform.TransformPoint(tuple(p)) for p in lps]).reshape(-1, 3)
        return moved * [-1.0, -1.0, 1.0]

    def to_mr(self, ras_us: np.ndarray, labels: list[str]) -> np.ndarray:
        """US points (RAS mm) onto the MR; a point outside the field's grid is refused by name."""
        self._refuse_outside(ras_us, labels, "is outside the registration's field on the US")
        return self.phi(ras_us)

    def to_us(self, ras_mr: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """MR targets (RAS mm) onto the US: ``(US points, residual_mm)``, the residual being how far mapping each
        found point back lands from its target. A target whose US point falls outside the field is refused."""
        targets = np.asarray(ras_mr, dtype=float).reshape(-1, 3)
        jacobian_inverse = np.linalg.inv(self.affine[:3, :3])
        x = (targets - self.affine[:3, 3]) @ jacobian_inverse.T  # the affine part's inverse: the first guess
        for _ in range(MAX_ITERATIONS):
            error = self.phi(x) - targets
            if np.all(np.linalg.norm(error, axis=-1) < CONVERGED_MM):
                break
            x = x - error @ jacobian_inverse.T
        self._refuse_outside(x, labels, "falls outside the registration's field on the US")
        return x, np.linalg.norm(self.phi(x) - targets, axis=-1)

    def _refuse_outside(self, ras: np.ndarray, labels: list[str], problem: str) -> None:
        outside = self.outside_mm(ras)
        far = [f"'{label}' ({distance:.1f} mm beyond it)" for label, distance in zip(labels, outside) if distance > 0]
        if far:
            raise InputError(self.source, f"point {', '.join(far)} {problem}: no displacement is known there")


def _affine_part(displacement: Volume, samples: int = 4096) -> np.ndarray:
    """The least-squares affine map of the grid points onto ``x + u(x)`` (4x4, RAS mm), from an even subsample."""
    count = int(np.prod(displacement.shape[:3]))
    index = np.linspace(0, count - 1, min(samples, count)).astype(int)
    kji = np.stack(np.unravel_index(index, displacement.shape[:3]), axis=-1)
    points = kji[:, ::-1] @ displacement.ijk_to_ras[:3, :3].T + displacement.ijk_to_ras[:3, 3]
    moved = points + displacement.array.reshape(-1, 3)[index]
    solution = np.linalg.lstsq(np.c_[points, np.ones(len(points))], moved, rcond=None)[0]
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = solution[:3].T, solution[3]
    return affine


def map_point_file(displacement: Volume, points_path, output_path, to: str = "us"):
    """Read a point file (:mod:`.point_files`), map its points onto the US (``to="us"``: MR targets) or onto the MR
    (``"mr"``: US positions) through ``displacement``, and write them in the same form to ``output_path``.
    Returns ``(points read, mapped RAS [N, 3], residual_mm [N] or None)``."""
    from ..core.point_files import read_points, write_points

    points = read_points(points_path)
    mapper = FieldMapper(displacement, source=str(points_path))
    if to == "us":
        mapped, residual_mm = mapper.to_us(points.ras, points.labels)
    else:
        mapped, residual_mm = mapper.to_mr(points.ras, points.labels), None
    write_points(points.with_positions(mapped), output_path, residual_mm)
    return points, mapped, residual_mm
