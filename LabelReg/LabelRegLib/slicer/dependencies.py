"""The Python packages LabelReg needs in Slicer, found without importing them and installed after asking.

torch comes through the PyTorch extension's ``PyTorchUtils`` (a declared
dependency of this extension: it picks the build for the machine's GPU),
nibabel through Slicer's ``pip_install``. Neither replaces Slicer's own numpy
or SimpleITK. The registration itself runs in the worker process
(:mod:`.registration_worker`), which imports torch there, never here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

TORCH_REQUIREMENT = (2, 1)  # weights-only model loading and channels_last_3d; what pyproject.toml asks for
PACKAGES = ("torch", "nibabel")


def missing_dependencies() -> list[str]:
    """The packages of :data:`PACKAGES` that are not installed (checked without importing them)."""
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


def ensure_dependencies(ask_user: bool = True) -> bool:
    """Make torch (>= :data:`TORCH_REQUIREMENT`) and nibabel importable, asking before each install (without
    asking when ``ask_user`` is False, e.g. a headless batch job). False when the user declines; raises
    ``RuntimeError`` with what to do when an install is not possible."""
    import slicer
    from slicer.i18n import tr as _

    missing = missing_dependencies()
    version = "0" if "torch" in missing else importlib.metadata.version("torch")
    too_old = "torch" not in missing and tuple(int(p) for p in version.split("+")[0].split(".")[:2]) < TORCH_REQUIREMENT
    requirement = ">=" + ".".join(map(str, TORCH_REQUIREMENT))
    if "torch" in missing or too_old:
        try:
            import PyTorchUtils  # the PyTorch extension, a declared dependency of this extension
        except ImportError:
            raise RuntimeError(
                _(
                    "LabelReg needs the PyTorch extension. Install it in the Extensions Manager "
                    "(search for 'PyTorch'), restart Slicer, then try again."
                )
            ) from None
        question = (
            _("LabelReg needs PyTorch {requirement}; version {version} is installed.")
            if too_old
            else _("LabelReg needs PyTorch {requirement}, which is not installed yet.")
        ).format(requirement=requirement, version=version)
        if ask_user and not slicer.util.confirmOkCancelDisplay(
            question + " " + _("Install it now? (this can take several minutes)")
        ):
            return False
        logic = PyTorchUtils.PyTorchUtilsLogic()
        if logic.installTorch(askConfirmation=False, torchVersionRequirement=requirement) is None:
            raise RuntimeError(_("PyTorch could not be installed; see the PyTorch extension's messages."))
    if "nibabel" in missing:
        question = _("LabelReg reads NIfTI files with the Python package nibabel, which is not installed yet.")
        if ask_user and not slicer.util.confirmOkCancelDisplay(question + " " + _("Install it now?")):
            return False
        slicer.util.pip_install("nibabel")
    return True
