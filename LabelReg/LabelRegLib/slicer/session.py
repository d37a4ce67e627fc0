"""What one Slicer session shares across module panels and module reloads.

The panels' logic objects come and go (one per panel, one per self-test, new
classes after a Reload); a few things must be one per session: the model list
of the LabelReg panel (:class:`~LabelRegLib.registration.model_catalogue.ModelCatalogue`),
the registration worker process and the training process. :func:`shared`
keeps them here, in a module that a Reload does not replace.

Slicer's Reload re-executes the module file only (``slicer.util.reloadScriptedModule``):
the LabelRegLib it had imported stays in ``sys.modules``, so a developer's
edits there would be ignored. :func:`reload_library` makes the next import read
the files again: it forgets every other LabelRegLib module, stops the
registration worker (the next registration starts one with the new code) and
carries the model list over into a catalogue of the new code. A running
training keeps going with the code it started with.
"""

from __future__ import annotations

import sys
from typing import Callable

_shared: dict = {}


def shared(name: str, make: Callable):
    """The session's object ``name``, made by ``make()`` the first time it is asked for."""
    if name not in _shared:
        _shared[name] = make()
    return _shared[name]


def reload_library() -> list[str]:
    """Forget the imported LabelRegLib (except this module) so that the next import reads the edited files;
    returns the names of the modules forgotten."""
    worker = _shared.pop("worker", None)
    if worker is not None:
        worker.stop()
    catalogue = _shared.pop("catalogue", None)
    forgotten = [name for name in sys.modules if name.split(".")[0] == "LabelRegLib" and name != __name__]
    for name in forgotten:
        del sys.modules[name]
    if catalogue is not None:
        from LabelRegLib.registration.model_catalogue import ModelCatalogue  # the edited code

        renewed = shared("catalogue", lambda: ModelCatalogue(catalogue.bundled))
        renewed.extra, renewed.devices = list(catalogue.extra), catalogue.devices
    return forgotten
