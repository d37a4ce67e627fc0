"""Static checks of what cannot run here (the Qt widgets): names used by the code exist in the .ui files,
every parameter bound in a .ui exists in the module's parameter class, and the module files compile."""

import ast
import re
import xml.etree.ElementTree as ET

import pytest
from helpers import REPO

MODULES = ["LabelReg", "LabelRegTraining"]


def _module_source(name):
    return (REPO / name / f"{name}.py").read_text()


def _ui(name):
    return ET.parse(REPO / name / "Resources" / "UI" / f"{name}.ui")


def _ui_widget_names(name) -> set:
    return {w.get("name") for w in _ui(name).iter("widget")}


def _ui_bindings(name) -> dict:
    """widget name -> SlicerParameterName of every bound widget."""
    bindings = {}
    for widget in _ui(name).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bindings[widget.get("name")] = prop.find("string").text
    return bindings


def _parameter_class_fields(name) -> set:
    tree = ast.parse(_module_source(name))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)}
    raise AssertionError(f"{name}.py has no @parameterNodeWrapper class")


@pytest.mark.parametrize("name", MODULES)
def test_module_file_compiles(name):
    compile(_module_source(name), f"{name}.py", "exec")


@pytest.mark.parametrize("name", MODULES)
def test_every_ui_name_the_widget_uses_exists(name):
    used = set(re.findall(r"self\.ui\.(\w+)", _module_source(name)))
    assert used, "the widget uses its .ui"
    missing = used - _ui_widget_names(name)
    assert not missing, f"{name}.py uses self.ui.{sorted(missing)} which {name}.ui does not define"


@pytest.mark.parametrize("name", MODULES)
def test_every_bound_parameter_exists_in_the_parameter_class(name):
    bindings = _ui_bindings(name)
    assert bindings
    missing = set(bindings.values()) - _parameter_class_fields(name)
    assert not missing, f"{name}.ui binds {sorted(missing)} that the parameter class lacks"


@pytest.mark.parametrize("name", MODULES)
def test_no_heavy_import_at_module_scope(name):
    tree = ast.parse(_module_source(name))
    heavy = {"torch", "LabelRegLib", "numpy", "SimpleITK", "nibabel"}
    for node in tree.body:  # module scope only
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in heavy for n in names), f"{name}.py imports {names} at module scope"
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{name}Widget")
    init = next(f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    assert "torch" not in ast.unparse(init)


@pytest.mark.parametrize("name", MODULES)
def test_cmake_lists_the_resources(name):
    cmake = (REPO / name / "CMakeLists.txt").read_text()
    for resource in (REPO / name / "Resources").rglob("*"):
        if resource.is_file() and resource.suffix in (".ui", ".png", ".py", ".pt"):
            relative = (
                resource.relative_to(REPO / name).as_posix().replace(name, "${MODULE_NAME}", 1)
                if resource.stem == name
                else resource.relative_to(REPO / name).as_posix()
            )
            assert relative in cmake or resource.relative_to(REPO / name).as_posix() in cmake, (
                f"{resource} is not listed in {name}/CMakeLists.txt"
            )
    if name == "LabelReg":
        for source in (REPO / name / "LabelRegLib").rglob("*.py"):  # the subpackages' too
            relative = source.relative_to(REPO / name / "LabelRegLib").as_posix()
            assert f"${{MODULE_NAME}}Lib/{relative}" in cmake, f"{relative} is not listed in LabelReg/CMakeLists.txt"


# What Slicer's parameterNodeWrapper GUI connectors bind (slicer/parameterNodeWrapper/guiConnectors.py)
CONNECTABLE = {
    "QCheckBox": {"bool"},
    "QSpinBox": {"int"},
    "QDoubleSpinBox": {"float"},
    "QComboBox": {"str", "int", "float", "bool"},  # with a Choice annotation
    "QLineEdit": {"str"},
    "ctkPathLineEdit": {"pathlib.Path"},
}


def _parameter_annotations(name) -> dict:
    tree = ast.parse(_module_source(name))
    cls = next(
        n
        for n in tree.body
        if isinstance(n, ast.ClassDef)
        and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in n.decorator_list)
    )
    return {item.target.id: ast.unparse(item.annotation) for item in cls.body if isinstance(item, ast.AnnAssign)}


@pytest.mark.parametrize("name", MODULES)
def test_bound_widgets_can_represent_their_parameter_type(name):
    annotations = _parameter_annotations(name)
    widget_class = {w.get("name"): w.get("class") for w in _ui(name).iter("widget")}
    for widget, parameter in _ui_bindings(name).items():
        annotation = annotations[parameter]
        base = (
            annotation.split("[", 1)[1].split(",", 1)[0].strip() if annotation.startswith("Annotated[") else annotation
        )
        cls = widget_class[widget]
        if cls == "qMRMLNodeComboBox":
            assert base.startswith("vtkMRML"), f"{widget} binds {parameter}: {annotation}"
            continue
        assert base in CONNECTABLE[cls], f"{name}.ui: {cls} '{widget}' cannot bind {parameter}: {annotation}"
        if cls == "QComboBox":
            assert "Choice(" in annotation, f"{parameter} needs a Choice annotation for its QComboBox"


def test_production_code_does_not_depend_on_the_test_folder():
    """The Slicer modules, LabelRegLib and the batch script are installed without Testing/."""
    for folder in ("LabelReg", "LabelRegTraining"):
        for source in (REPO / folder).rglob("*.py"):
            text = source.read_text()
            assert '"Testing"' not in text and "slicer_harness" not in text, f"{source} uses the test folder"


def test_the_alignment_choices_of_the_panel_and_the_batch_script_are_the_engines():
    """The module file and the batch script list the initial alignments literally (they are read before
    LabelRegLib is importable); they must be the engine's."""
    from LabelRegLib.core.config import REGISTRATION_ALIGNMENTS

    module = (REPO / "LabelReg" / "LabelReg.py").read_text()
    batch = (REPO / "LabelReg" / "Resources" / "Scripts" / "labelreg_batch.py").read_text()
    ui = (REPO / "LabelReg" / "Resources" / "UI" / "LabelReg.ui").read_text()
    assert re.search(r"initialAlignment: Annotated\[str, Choice\((\[.*?\])\)\]", module).group(1) == str(
        list(REGISTRATION_ALIGNMENTS)
    ).replace("'", '"')
    assert re.search(r'"--init", choices=(\[.*?\])', batch).group(1) == str(list(REGISTRATION_ALIGNMENTS)).replace(
        "'", '"'
    )
    combo = ui.split("<string>initialAlignment</string>")[1].split("</widget>")[0]
    assert re.findall(r"<string>(\w+)</string>", combo) == list(REGISTRATION_ALIGNMENTS)
