"""Grids, resampling, affine augmentation, voxel <-> RAS displacement conversion, Jacobians.

Tensor layout (torch's N, C, D, H, W): images ``[B, C, K, J, I]``; a voxel
displacement field (DDF) ``[B, 3, K, J, I]`` whose three channels are the
displacement along the **i, j, k** axes, in voxels of the grid it lives on (so
``ijk_to_ras[:3, :3] @ ddf`` is the RAS displacement in mm). A displacement
``u`` at voxel ``p`` says the image value for ``p`` is read at ``p + u(p)``
in the image being resampled (resampling direction, docs/design.md, "Conventions").

Linear interpolation here is written with ``gather`` instead of
``torch.nn.functional.grid_sample``: grid_sample needs coordinates normalised
to [-1, 1], and the round trip through that normalisation is not exact in
float32, whereas sampling directly at voxel coordinates returns the input
exactly for an identity field and clamps at the border like the original
label-reg code (``boundary_replicate``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import ALIGNMENT_MODES  # the allowed values are defined with the settings
from .volume import Volume


# ---------------------------------------------------------------- grids
def voxel_grid(shape_kji, device=None, dtype=torch.float32) -> torch.Tensor:
    """Voxel coordinates of a grid as a ``[3, K, J, I]`` tensor with channels (i, j, k)."""
    k, j, i = torch.meshgrid(*[torch.arange(n, device=device, dtype=dtype) for n in shape_kji], indexing="ij")
    return torch.stack([i, j, k])


def grid_points_ras(shape_kji, ijk_to_ras, device=None, dtype=torch.float32) -> torch.Tensor:
    """RAS coordinates (mm) of every voxel centre of a grid, ``[3, K, J, I]`` with channels (R, A, S)."""
    return apply_matrix(torch.as_tensor(ijk_to_ras, dtype=dtype, device=device), voxel_grid(shape_kji, device, dtype))


def apply_matrix(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply a 4x4 (or 3x4) homogeneous matrix to points with coordinates on dimension 0 (``[3, ...]``)."""
    matrix = torch.as_tensor(matrix, dtype=points.dtype, device=points.device)
    return torch.einsum("rc,c...->r...", matrix[:3, :3], points) + matrix[:3, 3].reshape(3, *([1] * (points.dim() - 1)))


# ---------------------------------------------------------------- sampling
def sample_linear(image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of ``image`` ``[B, C, K, J, I]`` at voxel coordinates ``coords`` ``[B, 3, K', J', I']`` (i, j, k).

    Coordinates outside the image are clamped to its border (border
    replication). Differentiable with respect to both arguments.
    """
    batch, channels = image.shape[:2]
    size_ijk = image.shape[2:][::-1]
    flat = image.reshape(batch, channels, -1)
    out_shape = coords.shape[2:]
    lower, weight = [], []
    for axis in range(3):
        n = size_ijk[axis]
        x = coords[:, axis].clamp(0, n - 1)
        x0 = torch.floor(x).clamp(max=max(n - 2, 0))
        lower.append(x0.long())
        weight.append(x - x0)
    size_i, size_j = size_ijk[0], size_ijk[1]
    result = 0
    for corner in range(8):
        offsets = [(corner >> axis) & 1 for axis in range(3)]
        index = [(lower[a] + offsets[a]).clamp(max=size_ijk[a] - 1) for a in range(3)]
        w = 1
        for axis in range(3):
            w = w * (weight[axis] if offsets[axis] else 1 - weight[axis])
        linear = ((index[2] * size_j + index[1]) * size_i + index[0]).reshape(batch, 1, -1)
        values = flat.gather(2, linear.expand(batch, channels, -1)).reshape(batch, channels, *out_shape)
        result = result + values * w.unsqueeze(1)
    return result


def sample_nearest(image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour samples of ``image`` ``[B, C, K, J, I]`` at voxel coordinates ``[B, 3, ...]`` (border clamped).

    What Slicer uses to resample labelmaps; LabelReg uses it to reproduce Slicer's exports exactly.
    """
    batch, channels = image.shape[:2]
    size_ijk = image.shape[2:][::-1]
    index = [torch.floor(coords[:, axis] + 0.5).clamp(0, size_ijk[axis] - 1).long() for axis in range(3)]
    linear = ((index[2] * size_ijk[1] + index[1]) * size_ijk[0] + index[0]).reshape(batch, 1, -1)
    return (
        image.reshape(batch, channels, -1)
        .gather(2, linear.expand(batch, channels, -1))
        .reshape(batch, channels, *coords.shape[2:])
    )


def warp(image: torch.Tensor, ddf: torch.Tensor) -> torch.Tensor:
    """Resample ``image`` (same grid as ``ddf``) by a voxel DDF ``[B, 3, K, J, I]``: out(p) = image(p + ddf(p))."""
    grid = voxel_grid(ddf.shape[2:], ddf.device, ddf.dtype).unsqueeze(0)
    return sample_linear(image, grid + ddf)


def resize(volume: torch.Tensor, shape_kji) -> torch.Tensor:
    """Trilinear resize of ``[B, C, K, J, I]`` to ``shape_kji`` (values unchanged: a DDF keeps its units)."""
    if tuple(volume.shape[2:]) == tuple(shape_kji):
        return volume
    return F.interpolate(volume, size=tuple(shape_kji), mode="trilinear", align_corners=False)


# ---------------------------------------------------------------- numpy-level resampling of Volumes
def resample_volume(
    moving: Volume,
    shape_kji,
    ijk_to_ras: np.ndarray,
    fixed_to_moving_ras: np.ndarray | None = None,
    displacement_ras: np.ndarray | None = None,
    device=None,
    interpolation: str = "linear",
) -> Volume:
    """Resample ``moving`` onto a reference grid (linear, border clamping).

    The reference voxel at RAS point ``x`` takes the moving value at
    ``T(x) + u(x)``, where ``T`` is ``fixed_to_moving_ras`` (4x4, default
    identity) and ``u`` is ``displacement_ras`` (``[K, J, I, 3]`` RAS mm on the
    reference grid, default zero). A vector moving volume keeps its components.
    ``interpolation``: ``linear`` or ``nearest``.
    """
    points = grid_points_ras(shape_kji, ijk_to_ras, device, torch.float64)
    if fixed_to_moving_ras is not None:
        points = apply_matrix(torch.as_tensor(fixed_to_moving_ras, dtype=torch.float64), points)
    if displacement_ras is not None:
        points = points + torch.as_tensor(
            np.moveaxis(displacement_ras, -1, 0), dtype=torch.float64, device=points.device
        )
    coords = apply_matrix(torch.as_tensor(np.linalg.inv(moving.ijk_to_ras), dtype=torch.float64), points)
    array = moving.array
    image = torch.as_tensor(
        np.moveaxis(array, -1, 0) if array.ndim == 4 else array[None], dtype=torch.float32, device=device
    )
    sampler = {"linear": sample_linear, "nearest": sample_nearest}[interpolation]
    out = sampler(image[None], coords[None].to(torch.float32))[0].cpu().numpy()
    out = np.moveaxis(out, 0, -1) if array.ndim == 4 else out[0]
    return Volume(out, np.asarray(ijk_to_ras, dtype=float).copy(), moving.name)


# ---------------------------------------------------------------- initial alignment


def initial_alignment(moving: Volume, fixed: Volume, mode: str = "centers") -> np.ndarray:
    """4x4 RAS matrix taking a fixed-space point to the moving-space point it starts on.

    ``physical``: identity (the headers, and any parent transform already folded
    into the moving geometry, are trusted). ``centers``: a translation that puts
    the centre of the fixed field of view on the centre of the moving one.
    (``glands`` needs the images' content: :func:`.gland_alignment.glands_initial`.)
    """
    mode = mode.lower()
    matrix = np.eye(4)
    if mode == "centers":
        matrix[:3, 3] = moving.center_ras - fixed.center_ras
    elif mode == "glands":
        raise ValueError("the glands alignment needs a gland model: gland_alignment.glands_initial")
    elif mode != "physical":
        raise ValueError(f"Unknown initial alignment '{mode}'; choose one of {', '.join(ALIGNMENT_MODES)}.")
    return matrix


def fields_of_view_overlap(moving: Volume, fixed: Volume, fixed_to_moving_ras: np.ndarray) -> bool:
    """Whether any of the fixed field of view lands inside the moving one under ``fixed_to_moving_ras`` (4x4).

    The fixed grid's eight corners (voxel edges, not centres) are taken into the moving voxel frame; their bounding
    box is compared with the moving box. A box that does not meet it means certainly no overlap (for an oblique
    pair the bounding box is larger than the true image of the grid, so the test never refuses a real overlap)."""
    edges = [(-0.5, n - 0.5) for n in fixed.shape[::-1]]  # i, j, k
    corners_ijk = np.array([[i, j, k, 1.0] for i in edges[0] for j in edges[1] for k in edges[2]])
    to_moving_ijk = np.linalg.inv(moving.ijk_to_ras) @ np.asarray(fixed_to_moving_ras, float) @ fixed.ijk_to_ras
    mapped = (to_moving_ijk @ corners_ijk.T).T[:, :3]
    high = np.array(moving.shape[::-1], float) - 0.5
    return bool(np.all(mapped.max(axis=0) > -0.5) and np.all(mapped.min(axis=0) < high))


# ---------------------------------------------------------------- voxel <-> RAS displacements
def ddf_voxel_to_ras(ddf: torch.Tensor | np.ndarray, ijk_to_ras: np.ndarray):
    """Voxel DDF (channels i, j, k on dimension -4: ``[..., 3, K, J, I]``) to RAS mm displacements, same layout."""
    return _apply_linear(ddf, np.asarray(ijk_to_ras, dtype=float)[:3, :3])


def ddf_ras_to_voxel(ddf_ras: torch.Tensor | np.ndarray, ijk_to_ras: np.ndarray):
    """RAS mm displacements (``[..., 3, K, J, I]``) to a voxel DDF of the grid with matrix ``ijk_to_ras``."""
    return _apply_linear(ddf_ras, np.linalg.inv(np.asarray(ijk_to_ras, dtype=float)[:3, :3]))


def _apply_linear(field, matrix3: np.ndarray):
    if isinstance(field, torch.Tensor):
        m = torch.as_tensor(matrix3, dtype=field.dtype, device=field.device)
        return torch.einsum("rc,...cxyz->...rxyz", m, field)
    return np.einsum("rc,...cxyz->...rxyz", matrix3, field)


# ---------------------------------------------------------------- random affine augmentation
def random_affine(batch: int, corner_scale: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random affine maps of normalised coordinates ``[-1, 1]^3`` as ``[B, 3, 4]`` (label-reg's augmentation).

    Four corners of the normalised cube are each moved inwards by a uniform
    random amount in ``[0, corner_scale]`` per axis; the affine that maps the
    original corners onto the moved ones is solved exactly (4 points fix it).
    """
    corners = torch.tensor(
        [[-1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, -1.0]], dtype=torch.float64
    )
    inward = -corners  # each corner moves towards the centre
    offsets = inward * torch.rand(batch, 4, 3, generator=generator, dtype=torch.float64) * corner_scale
    source = torch.cat([corners, torch.ones(4, 1, dtype=torch.float64)], dim=1)  # [4, 4] homogeneous
    solution = torch.linalg.solve(source.expand(batch, 4, 4), corners + offsets)  # [B, 4, 3]
    return solution.transpose(1, 2).to(torch.float32)  # [B, 3, 4]: y = A x + b


def normalised_affine_to_voxel(theta: torch.Tensor, shape_kji) -> torch.Tensor:
    """``[B, 3, 4]`` affine of normalised (i, j, k) coordinates to ``[B, 4, 4]`` acting on voxel indices."""
    size = torch.tensor(shape_kji[::-1], dtype=theta.dtype, device=theta.device)
    half = (size - 1).clamp(min=1) / 2
    to_norm = torch.eye(4, dtype=theta.dtype, device=theta.device)
    to_norm[:3, :3] = torch.diag(1 / half)
    to_norm[:3, 3] = -1
    from_norm = torch.linalg.inv(to_norm)
    theta4 = torch.cat(
        [theta, torch.tensor([0, 0, 0, 1], dtype=theta.dtype, device=theta.device).expand(theta.shape[0], 1, 4)], 1
    )
    return from_norm @ theta4 @ to_norm


def affine_warp(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample ``[B, C, K, J, I]`` images through ``[B, 3, 4]`` normalised affines: out(p) = image(theta(p))."""
    matrix = normalised_affine_to_voxel(theta, image.shape[2:])
    grid = voxel_grid(image.shape[2:], image.device, image.dtype)
    coords = torch.einsum("brc,cxyz->brxyz", matrix[:, :3, :3], grid) + matrix[:, :3, 3, None, None, None]
    return sample_linear(image, coords)


# ---------------------------------------------------------------- Jacobian
def jacobian_determinant(ddf: torch.Tensor) -> torch.Tensor:
    """Jacobian determinant of ``p -> p + ddf(p)`` for a voxel DDF ``[B, 3, K, J, I]``; returns ``[B, K, J, I]``.

    Central differences inside, one-sided at the border. The determinant is
    the same whether the field is expressed in voxels or in RAS mm.
    """
    # derivatives along i, j, k are along tensor dims 4, 3, 2
    grads = [torch.gradient(ddf, dim=dim)[0] for dim in (4, 3, 2)]
    jac = torch.stack(grads, dim=2)  # [B, component, derivative axis, K, J, I]
    jac = jac + torch.eye(3, dtype=ddf.dtype, device=ddf.device).reshape(1, 3, 3, 1, 1, 1)
    return torch.linalg.det(jac.permute(0, 3, 4, 5, 1, 2))


def folding_fraction(ddf: torch.Tensor) -> float:
    """Fraction of voxels where the Jacobian determinant is <= 0 (a folded map)."""
    return float((jacobian_determinant(ddf) <= 0).float().mean())
