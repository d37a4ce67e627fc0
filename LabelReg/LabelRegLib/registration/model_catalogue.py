"""The models a user can pick, and the loaded ones, shared by every caller of a session.

The LabelReg panel lists the bundled model and every model trained or chosen
during the session, with a one-paragraph summary of each; registrations reuse
a model loaded once. Listing and summarising read only the model header
(:func:`~LabelRegLib.nets.model_file.peek_model_header`: no torch, no weights), so
opening the panel stays instant. Loaded models are keyed on the file's path,
size and modification time as well as the device: a model retrained into the
same file is loaded again, not served stale.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from ..nets.model_file import default_model_path, peek_model_header


class ModelCatalogue:
    """Model files offered to the user, their summaries, and a cache of loaded :class:`Registrar` objects."""

    def __init__(self, bundled: str | Path | None = None):
        self.bundled = self.resolved(bundled or default_model_path())
        self.extra: list[str] = []  # trained or browsed this session, in the order they came
        self.observers: list[Callable[[], None]] = []  # run when the list changes (the panel refreshes)
        self._registrars: dict = {}  # (path, device, size, mtime_ns) -> Registrar
        # the compute devices torch can use, as the registration worker reported them (None: not known yet)
        self.devices: list[str] | None = None

    @staticmethod
    def resolved(path: str | Path) -> str:
        """The absolute path the catalogue lists a model file under."""
        return str(Path(path).resolve())

    # ------------------------------------------------------------ the list
    def add(self, path: str | Path) -> None:
        """Offer a model file (a finished training, a file the user picked) and tell the observers."""
        path = self.resolved(path)
        if path != self.bundled and path not in self.extra:
            self.extra.append(path)
        for observer in list(self.observers):
            observer()

    def models(self, extra: tuple = ()) -> list[tuple[str, str]]:
        """``(label, path)`` of the bundled model, then every other model offered (``extra`` too)."""
        paths = self.extra + [self.resolved(p) for p in extra if p and self.resolved(p) not in self.extra]
        listed = [("Bundled LocalNet (default)", self.bundled)]
        for path in paths:
            if path != self.bundled:
                listed.append((f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}", path))
        return listed

    def summary(self, path: str | Path | None = None) -> str:
        """One line about a model file, read from its header only: network, training data, validation."""
        header = peek_model_header(path or self.bundled)
        training, validation = header.get("training", {}), header.get("validation", {})
        architecture = header.get("architecture", {})
        text = (
            f"{architecture.get('network_type', '?')} net, {architecture.get('num_channel_initial', '?')} channels; "
            f"trained on {training.get('n_train_pairs', '?')} pairs ({training.get('data', '?')}), {training.get('steps', '?')} steps"
        )
        if validation:
            text += f"; validation: gland Dice {validation.get('val_dice', float('nan')):.2f}, TRE {validation.get('val_tre_mm', float('nan')):.1f} mm"
        return text

    # ------------------------------------------------------------ devices
    def device_summary(self) -> str:
        """The compute devices torch can use: those the registration worker reported, or this process's
        once torch is loaded here anyway; showing it never imports torch."""
        if self.devices is None:
            if "torch" not in sys.modules:
                return "devices: listed after the first registration"
            from ..core.device import available_devices

            self.devices = available_devices()
        return "available: " + ", ".join(self.devices)

    # ------------------------------------------------------------ loaded models
    def registrar(self, path: str | Path | None = None, device: str = "auto"):
        """The :class:`~LabelRegLib.registration.registrar.Registrar` for (file, device), loaded on first use and
        again whenever the file changed (size or modification time)."""
        from ..core.device import select_device
        from .registrar import Registrar

        path = self.resolved(path or self.bundled)
        stat = os.stat(path) if os.path.isfile(path) else None
        resolved = str(select_device(device))
        key = (path, resolved, stat.st_size if stat else None, stat.st_mtime_ns if stat else None)
        if key not in self._registrars:
            for stale in [k for k in self._registrars if k[:2] == key[:2]]:
                del self._registrars[stale]  # an older version of the same file on this device
            self._registrars[key] = Registrar(path, device)
        return self._registrars[key]
