"""The network's displacement field for one prepared pair: mirrored copies averaged, repeated passes composed, and
the result composed with the initial alignment onto the fixed grid.

:class:`.registrar.Registrar` calls these; fields are RAS millimetres (``[K, J, I, 3]``) unless named voxel fields
(``[B, 3, K, J, I]``, channels i, j, k).
"""

from __future__ import annotations

import numpy as np

from ..core.volume import Volume


def network_field_ras(
    network, pair, device, mirror_axes: str = "", passes: int = 1, copies: bool = False
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The field ``[K, J, I, 3]`` (RAS mm) that ``network`` predicts for a :class:`~..data.preprocess.WorkingPair`
    on its working grid: averaged over the pair mirrored along ``mirror_axes``; with ``passes`` > 1, the moving image
    warped by the field so far and registered again, the fields composed. With ``copies``, also each mirrored copy's
    own field of the first pass (for :mod:`.uncertainty`; else an empty list; the field itself when it is the only
    copy)."""
    import torch

    from ..core.spatial import ddf_voxel_to_ras, warp

    layout = {"device": device, "memory_format": torch.channels_last_3d}
    with torch.no_grad():
        moving_t = torch.as_tensor(pair.moving_image)[None, None].to(**layout)
        fixed_t = torch.as_tensor(pair.fixed_image)[None, None].to(**layout)
        first = mirrored_copies(network, moving_t, fixed_t, mirror_axes)
        ddf = average(first)
        for _ in range(passes - 1):
            # x -> x + d(x) then the field so far: total(x) = d(x) + ddf(x + d(x))
            warped = warp(moving_t, ddf).contiguous(memory_format=torch.channels_last_3d)
            step = mirrored_prediction(network, warped, fixed_t, mirror_axes)
            ddf = step + warp(ddf, step)

    def to_ras(voxel_field) -> np.ndarray:
        return np.moveaxis(ddf_voxel_to_ras(voxel_field[0].double().cpu(), pair.ijk_to_ras).numpy(), 0, -1)

    field_ras = to_ras(ddf)
    if not copies:
        return field_ras, []
    return field_ras, [field_ras] if passes == 1 and len(first) == 1 else [to_ras(copy) for copy in first]


def mirrored_prediction(network, moving, fixed, axes: str = ""):
    """The network's voxel field ``[B, 3, K, J, I]`` (channels i, j, k), averaged with the fields it predicts for
    the pair mirrored along each of ``axes`` (and each combination), each mirrored back (:func:`mirrored_copies`).
    The average is exactly equivariant: the mirrored pair gets the mirrored field."""
    return average(mirrored_copies(network, moving, fixed, axes))


def average(fields: list):
    """The mean of one or more fields (the one field itself, exactly, when alone)."""
    return fields[0] if len(fields) == 1 else sum(fields) / len(fields)


def mirrored_copies(network, moving, fixed, axes: str = "") -> list:
    """The voxel fields ``[B, 3, K, J, I]`` the network predicts for the pair and for the pair mirrored along each
    of ``axes`` (and each combination), each mirrored back: along an axis, the field is flipped and its component on
    that axis negated. Both images share the working grid, so one reflection mirrors the pair. All copies go through
    the network as one batch (faster than one by one on a CPU: the model card's speed row); at inference the
    network treats each copy of a batch alone (instance or running statistics), so batching changes no result."""
    from itertools import combinations

    import torch

    from ..data.augmentation import FLIP_DIMS

    dims = [FLIP_DIMS[axis] for axis in axes]
    subsets = [list(c) for n in range(len(dims) + 1) for c in combinations(dims, n)]
    if len(subsets) == 1:
        return [network(moving, fixed)]
    layout = {"memory_format": torch.channels_last_3d}
    copies = len(moving)

    def mirrored(x, flips):
        return (x.flip(flips) if flips else x).contiguous(**layout)

    fields = network(
        torch.cat([mirrored(moving, flips) for flips in subsets]),
        torch.cat([mirrored(fixed, flips) for flips in subsets]),
    )
    mirrored_back = []
    for n, flips in enumerate(subsets):
        field = fields[n * copies : (n + 1) * copies]
        if flips:
            sign = torch.ones(3, dtype=field.dtype, device=field.device)
            sign[[4 - d for d in flips]] = -1.0  # tensor dimension 4, 3, 2 (i, j, k) -> field channel 0, 1, 2
            field = field.flip(flips) * sign.view(1, 3, 1, 1, 1)
        mirrored_back.append(field)
    return mirrored_back


def compose_with_initial(field_ras: np.ndarray, fixed: Volume, initial: np.ndarray) -> np.ndarray:
    """Full displacement ``T(x + u(x)) - x`` on the fixed grid from the network's ``u`` and the initial ``T``."""
    import torch

    from ..core.spatial import grid_points_ras

    points = np.moveaxis(grid_points_ras(fixed.shape, fixed.ijk_to_ras, dtype=torch.float64).numpy(), 0, -1)
    moved = (points + field_ras) @ initial[:3, :3].T + initial[:3, 3]
    return moved - points
