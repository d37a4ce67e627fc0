"""The memory a registration needs, checked against what the machine has before any work.

A registration holds two kinds of arrays: the network's activations on the
working grid (the fixed image resampled to the model's working spacing; float32,
no gradients, in proportion to the network's width) and the displacement field
on the fixed image's own grid (float64 RAS points, the field and its composition
with the initial alignment). A 512-cube US at 1 mm needs far more of the second
than a laptop has; without this check it ran 40 s and then died with a traceback.

The coefficients are an upper envelope of peak-memory measurements on the CPU
(``python Testing/Benchmarks/benchmark_memory.py`` prints them beside the
estimate): the estimate errs on the high side, so that a registration it allows
does not run out of memory.
"""

from __future__ import annotations

import os
from math import prod

from .errors import InputError

BYTES_PER_WORKING_VOXEL_PER_CHANNEL = 16  # network activations, per channel of the first level
BYTES_PER_FIXED_VOXEL = 200  # the field on the fixed grid and its composition (float64)
OVERHEAD_BYTES = 600 * 2**20  # the framework's own buffers and threads

GIB = 2**30


def registration_bytes(working_shape_kji, fixed_shape_kji, num_channel_initial: int) -> tuple[int, int]:
    """``(network, field)``: estimated peak bytes of the network on the working grid and of the field on the
    fixed grid (the overhead counted with the network)."""
    network = prod(working_shape_kji) * BYTES_PER_WORKING_VOXEL_PER_CHANNEL * num_channel_initial + OVERHEAD_BYTES
    return network, prod(fixed_shape_kji) * BYTES_PER_FIXED_VOXEL


def available_ram_bytes() -> int | None:
    """Memory available to a new allocation (psutil where installed, else POSIX ``sysconf``); None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:  # free pages only (the page cache not counted): errs on the safe side
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # Windows without psutil
        return None


def gland_bytes(grid_shapes_kji: list, num_channel_initial: int) -> int:
    """Estimated peak bytes of the gland segmentation of images with these segmentation grids: one batch, every grid
    padded to the largest (:meth:`.glands.GlandSegmenter.segment_all`); the network's coefficient, for want of a
    measurement of its own (its network is no wider than the registration's per level)."""
    if not grid_shapes_kji:
        return 0
    largest = [max(shape[axis] for shape in grid_shapes_kji) for axis in range(3)]
    return prod(largest) * len(grid_shapes_kji) * BYTES_PER_WORKING_VOXEL_PER_CHANNEL * num_channel_initial


def check_registration_memory(
    name: str, working_shape_kji, fixed_shape_kji, num_channel_initial: int, device, glands: int = 0
) -> None:
    """Raise :class:`InputError` naming ``name``, the grids and the estimate when this machine lacks the memory
    (``glands``: the gland segmentation's bytes, :func:`gland_bytes`, on the same device as the network)."""
    network, field = registration_bytes(working_shape_kji, fixed_shape_kji, num_channel_initial)
    network += glands
    needs = {"memory": network + field}
    have = {"memory": available_ram_bytes()}
    if getattr(device, "type", str(device)) == "cuda":  # the network's share lives on the GPU
        import torch

        needs = {"memory": field, "GPU memory": network}
        have["GPU memory"] = torch.cuda.mem_get_info(device)[0]
    for kind, needed in needs.items():
        if have[kind] is not None and needed > have[kind]:
            raise InputError(
                name,
                f"is too large to register here: a {'x'.join(map(str, fixed_shape_kji))} grid, "
                f"{'x'.join(map(str, working_shape_kji))} at the model's working spacing, needs about "
                f"{needed / GIB:.1f} GiB of {kind} and {have[kind] / GIB:.1f} GiB is available"
                + (
                    f" (the gland segmentation of each image's whole field of view takes {glands / GIB:.1f} GiB of it)"
                    if glands
                    else ""
                )
                + "; crop the image to the prostate or resample it to a coarser spacing",
            )
