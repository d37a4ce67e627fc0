"""Run LabelReg's Slicer modules on Slicer's real MRML libraries outside the Slicer application.

Used by the batch script under plain Python and by the test suite; never inside Slicer.

The PyPI wheel ``slicer-core`` provides the real ``vtkMRMLScene``, MRML nodes,
module logics (volumes, transforms, segmentations) and ``slicer.util``; it has
no application, no Qt and no ``ScriptedLoadableModule``. :func:`install`
creates the scene and the module logics the way the Slicer application does
and supplies just those missing entry points, so that ``LabelReg.py`` and
``LabelRegTraining.py`` import and their Logic classes run unchanged:

- ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()`` for volumes,
  transforms and segmentations (each logic given the scene);
- ``slicer.app`` with the few attributes the logic code touches;
- ``slicer.ScriptedLoadableModule`` base classes, ``slicer.parameterNodeWrapper``
  (typed attributes stored in a ``vtkMRMLScriptedModuleNode``, as in Slicer),
  ``slicer.i18n``; and empty ``qt`` / ``ctk`` modules for import statements
  that only the widget uses.

Nothing here replaces an MRML class: every node under test is real.
"""

from __future__ import annotations

import pathlib
import sys
import types
import typing
from pathlib import Path

# the module folders: side by side in an installed extension, LabelReg/ and LabelRegTraining/ in a checkout
_LABELREG_DIR = Path(__file__).resolve().parents[2]  # LabelReg/LabelRegLib/slicer/standalone.py
MODULE_DIRS = [
    _LABELREG_DIR,
    *[d for d in (_LABELREG_DIR.parent / "LabelRegTraining",) if (d / "LabelRegTraining.py").is_file()],
]


class _App:
    """The parts of ``slicer.app`` used outside widgets."""

    def __init__(self):
        import tempfile

        self.temporaryPath = tempfile.mkdtemp(prefix="labelreg-slicer-")
        self.commandOptions = lambda: types.SimpleNamespace(noMainWindow=True)

    def processEvents(self):
        pass

    def testingEnabled(self):
        return True

    def connect(self, *args):
        pass


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__[: -len("Logic")]

    def getParameterNode(self):
        """The module's singleton parameter node, created in the scene on first use (as in Slicer)."""
        import slicer

        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetName(self.moduleName)
            node.SetModuleName(self.moduleName)
            node = scene.AddNode(node)
        return node


class ScriptedLoadableModuleTest:
    def delayDisplay(self, message, msec=0):
        print(message)

    def assertTrue(self, value, message=""):
        assert value, message

    def assertEqual(self, a, b, message=""):
        assert a == b, message or f"{a} != {b}"

    def assertGreater(self, a, b, message=""):
        assert a > b, message or f"{a} <= {b}"

    def assertLess(self, a, b, message=""):
        assert a < b, message or f"{a} >= {b}"

    def assertIsNotNone(self, value, message=""):
        assert value is not None, message


def _scripted_loadable_module():
    module = types.ModuleType("slicer.ScriptedLoadableModule")
    classes = (
        ScriptedLoadableModule,
        ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
    )
    for cls in classes:
        setattr(module, cls.__name__, cls)
    module.__all__ = [cls.__name__ for cls in classes]
    return module


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


class Default:
    def __init__(self, value):
        self.value = value


VALUE_TYPES = (str, int, float, bool, pathlib.Path)  # kept as parameter text; everything else is a node reference


def _base_type(annotation):
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def parameterNodeWrapper(cls):
    """Typed parameters kept in a scripted module node: strings, paths, numbers, booleans and node references."""
    hints = typing.get_type_hints(cls, include_extras=True)
    defaults = {name: getattr(cls, name) for name in hints if hasattr(cls, name)}

    def __init__(self, node):
        object.__setattr__(self, "parameterNode", node)
        for name, value in defaults.items():
            if not node.GetParameter(name) and _base_type(hints[name]) in VALUE_TYPES:
                setattr(self, name, value)

    def __getattr__(self, name):
        if name not in hints:
            raise AttributeError(name)
        node = object.__getattribute__(self, "parameterNode")
        kind = _base_type(hints[name])
        if kind in VALUE_TYPES:
            text = node.GetParameter(name)
            if kind is bool:
                return text == "true"
            return kind(text) if text != "" else defaults.get(name, kind())
        return node.GetNodeReference(name)

    def __setattr__(self, name, value):
        if name not in hints:
            raise AttributeError(f"{cls.__name__} has no parameter '{name}'")
        node = object.__getattribute__(self, "parameterNode")
        kind = _base_type(hints[name])
        if kind is bool:
            node.SetParameter(name, "true" if value else "false")
        elif kind in VALUE_TYPES:
            node.SetParameter(name, str(value))
        else:
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)

    # observers go to the MRML parameter node, as in Slicer's wrapper (parameterNodeWrapper/wrapper.py)
    def AddObserver(self, event, callback, priority=0.0):
        return object.__getattribute__(self, "parameterNode").AddObserver(event, callback, priority)

    def RemoveObserver(self, tag):
        object.__getattribute__(self, "parameterNode").RemoveObserver(tag)

    members = {"__init__": __init__, "__getattr__": __getattr__, "__setattr__": __setattr__, "__annotations__": hints}
    wrapper = type(cls.__name__, (), {**members, "AddObserver": AddObserver, "RemoveObserver": RemoveObserver})
    wrapper.allParameters = hints
    return wrapper


def _parameter_node_wrapper():
    module = types.ModuleType("slicer.parameterNodeWrapper")
    for member in (parameterNodeWrapper, WithinRange, Choice, Default):
        setattr(module, member.__name__, member)
    return module


def _i18n():
    module = types.ModuleType("slicer.i18n")
    module.tr = lambda text: text
    module.translate = lambda context, text: text
    return module


def install():
    """Create the scene and module logics, fill in the missing entry points, put the module folders on sys.path."""
    import slicer

    if getattr(slicer, "_labelreg_harness", False):
        return slicer
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    logics = {}
    for name, cls in (
        ("volumes", slicer.vtkSlicerVolumesLogic),
        ("transforms", slicer.vtkSlicerTransformLogic),
        ("segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
    ):
        logic = cls()
        logic.SetMRMLScene(scene)
        logics[name] = logic
    slicer.modules = types.SimpleNamespace(
        **{name: types.SimpleNamespace(logic=(lambda l=logic: l)) for name, logic in logics.items()}
    )
    slicer.app = _App()
    for name, module in (
        ("slicer.ScriptedLoadableModule", _scripted_loadable_module()),
        ("slicer.parameterNodeWrapper", _parameter_node_wrapper()),
        ("slicer.i18n", _i18n()),
    ):
        sys.modules[name] = module
        setattr(slicer, name.split(".")[1], module)
    for name in ("qt", "ctk"):
        sys.modules.setdefault(name, types.ModuleType(name))
    for folder in MODULE_DIRS:
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    slicer._labelreg_harness = True
    return slicer


def run_event_loop(on_tick, until, tick_s: float = 0.02, hold_gil: bool = True, timeout_s: float = 120.0) -> float:
    """Run ``on_tick()`` every ``tick_s`` until ``until()`` is true, as Slicer's main thread runs a ``QTimer``'s
    Python callback; returns the seconds it took (``TimeoutError`` after ``timeout_s``).

    Between two ticks Slicer's main thread waits in the Qt event loop, in C++, holding Python's GIL
    (PythonQt's thread support is off; docs/design.md, "Slicer specifics"). ``hold_gil`` reproduces that
    with a C ``usleep`` called through ``ctypes.PyDLL``, which keeps the GIL; ``hold_gil=False`` waits with
    ``time.sleep``, which releases it. POSIX only (``usleep``).
    """
    import ctypes
    import time

    wait = ctypes.PyDLL(None).usleep if hold_gil else (lambda microseconds: time.sleep(microseconds / 1e6))
    started = time.perf_counter()
    while not until():
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"not done after {timeout_s:g} s of event loop")
        wait(int(tick_s * 1e6))
        on_tick()
    return time.perf_counter() - started
