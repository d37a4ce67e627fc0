"""LabelRegLib: the LabelReg registration engine (pure Python + torch, no Qt, no Slicer).

Weakly-supervised MR-to-TRUS registration after Hu et al., Medical Image
Analysis 2018. Conventions (docs/design.md, "Conventions"): arrays are indexed
``[k, j, i]``; geometry is a 4x4 IJK->RAS matrix in millimetres; displacements
are RAS millimetres on the fixed grid and map a fixed point ``x`` to the moving
point ``x + u(x)`` (a resampling transform).

The subpackages are layers; each imports only the ones below it (docs/design.md, "Layers"; checked by
import-linter, the contract in pyproject.toml): ``cli`` and ``slicer`` on top, then ``evaluation``,
``training``, ``registration``, ``data``, ``nets``, and ``core`` at the bottom.

Submodules are imported on demand so that ``import LabelRegLib`` stays cheap
(Slicer imports module files at start-up; torch must not load then).
"""

from __future__ import annotations

__version__ = "0.1.0"
