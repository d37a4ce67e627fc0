"""Check, under the Python that runs it (CI: a Python 3.9, as in Slicer 5.8), that every file Slicer loads works.

1. Every file Slicer loads byte-compiles (syntax newer than the interpreter fails here).
2. Every ``LabelRegLib`` module imports, except those that import torch at module scope (torch has no
   CPU build for 3.9 on this project's package index): those are byte-compiled only, and their
   annotations are covered by the lint (``ruff``, target py39, run by ``Testing/test_python39.py``).
3. ``LabelReg.py`` and ``LabelRegTraining.py`` import against stand-ins for ``slicer``, ``vtk`` and
   ``qt``: their class definitions run, the parameter classes' annotations are evaluated with
   ``typing.get_type_hints`` as Slicer's ``parameterNodeWrapper`` does, and the logic classes that
   need no scene are constructed.

Prints one line per file and exits non-zero on the first kind of failure. Needs numpy, SimpleITK and
nibabel (what LabelRegLib imports besides torch).
"""

from __future__ import annotations

import importlib
import py_compile
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "LabelReg" / "LabelRegLib"
SLICER_FILES = [
    REPO / "LabelReg" / "LabelReg.py",
    REPO / "LabelRegTraining" / "LabelRegTraining.py",
    *sorted(LIB.rglob("*.py")),
    *sorted((REPO / "LabelReg" / "Resources" / "Scripts").glob("*.py")),
]


def _stub_slicer():
    """A ``slicer`` package with the names the module files use at import time (no scene: nothing runs)."""
    import ast

    from LabelRegLib.slicer import standalone as slicer_standalone

    slicer = types.ModuleType("slicer")
    for module_file in (REPO / "LabelReg" / "LabelReg.py", REPO / "LabelRegTraining" / "LabelRegTraining.py"):
        for node in ast.parse(module_file.read_text()).body:  # the node classes each imports from slicer
            if isinstance(node, ast.ImportFrom) and node.module == "slicer":
                for alias in node.names:
                    setattr(slicer, alias.name, type(alias.name, (), {}))
    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = type("VTKObservationMixin", (), {"__init__": lambda self: None})
    slicer.util = util
    sys.modules.update({"slicer": slicer, "slicer.util": util})
    for name, module in (
        ("slicer.ScriptedLoadableModule", slicer_standalone._scripted_loadable_module()),
        ("slicer.parameterNodeWrapper", slicer_standalone._parameter_node_wrapper()),
        ("slicer.i18n", slicer_standalone._i18n()),
    ):
        sys.modules[name] = module
        setattr(slicer, name.split(".")[1], module)
    for name in ("vtk", "qt", "ctk"):
        sys.modules.setdefault(name, types.ModuleType(name))


def main() -> int:
    print(f"Python {sys.version.split()[0]}")
    for path in SLICER_FILES:
        py_compile.compile(str(path), doraise=True, cfile=str(Path(sys.prefix) / "labelreg-check.pyc"))
        print(f"compiles: {path.relative_to(REPO)}")
    sys.path[:0] = [str(REPO / "LabelReg"), str(REPO / "LabelRegTraining")]
    for path in sorted(p for p in LIB.rglob("*.py") if p.stem != "__main__"):  # __main__ would run the command
        parts = path.relative_to(LIB.parent).with_suffix("").parts  # ("LabelRegLib", "core", "io"), every layer
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != "torch":
                raise
            print(f"needs torch (compiled and linted only): {name}")
            continue
        print(f"imports: {name}")
    _stub_slicer()
    import LabelReg
    import LabelRegTraining

    LabelReg.LabelRegLogic()
    LabelRegTraining.LabelRegTrainingLogic()
    print(
        f"imports, logic constructed: LabelReg.py, LabelRegTraining.py; missing here: {LabelReg.LabelRegLogic.missingDependencies()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
