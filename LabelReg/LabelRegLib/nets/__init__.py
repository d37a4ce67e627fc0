"""The networks and what they are made of: layers, the LocalNet family, the gland U-Net, losses, model files.

Pure torch modules (tensors ``[B, C, K, J, I]``) and the model file format that stores them with their header
(:mod:`.model_file`). May import :mod:`..core` only.
"""

from __future__ import annotations
