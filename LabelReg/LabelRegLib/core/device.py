"""Choosing the torch device: cuda, then mps, then cpu; float32 everywhere."""

from __future__ import annotations

from .errors import DeviceError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Names of the device kinds torch can use on this machine, best first (``cpu`` always last)."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def select_device(name: str = "auto"):
    """The ``torch.device`` for ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``).

    ``auto`` picks cuda, then mps, then cpu. An explicit device this machine
    does not have raises :class:`DeviceError` saying what it does have.
    """
    import torch

    name = (name or "auto").strip().lower()
    available = available_devices()
    if name == "auto":
        return torch.device(available[0])
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise DeviceError(f"Unknown device '{name}'; choose one of {', '.join(DEVICE_CHOICES)}.")
    if kind not in available:
        raise DeviceError(
            f"Device '{name}' was requested but is not available here; available: {', '.join(available)}."
        )
    index = name.split(":")[1] if ":" in name else "0"
    if not index.isdigit():
        raise DeviceError(f"Unknown device '{name}'; give cuda:N with N a whole number.")
    if kind == "cuda" and int(index) >= torch.cuda.device_count():
        raise DeviceError(f"Device '{name}' was requested but only {torch.cuda.device_count()} CUDA device(s) exist.")
    return torch.device(name)
