"""What a second review of the module files against Slicer, CTK and the extension index found (issue 24, 2-11).

Each test names the defect it guards against and fails on the code before the fix. Static checks read the
module and ``.ui`` files (Qt cannot run here); the rest runs on slicer-core through LabelRegLib/slicer/standalone.py.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
from helpers import REPO, subprocess_env

slicer_standalone = pytest.importorskip("LabelRegLib.slicer.standalone")
LABELREG = REPO / "LabelReg" / "LabelReg.py"
TRAINING = REPO / "LabelRegTraining" / "LabelRegTraining.py"
BATCH = REPO / "LabelReg" / "Resources" / "Scripts" / "labelreg_batch.py"


def _method(path, class_name: str, name: str) -> str:
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    return ast.unparse(next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == name))


# ---------------------------------------------------------------- 2. a licence, and the extension index's checks
def test_the_extension_passes_the_extension_index_offline_checks():
    """The checks of Slicer/ExtensionsIndex scripts/check_description_files.py that need no network: a licence
    file in the root, the category, the repository URL and name, the CMake project name and the picture URLs."""
    assert any((REPO / name).is_file() for name in ("LICENSE", "LICENCE", "LICENSE.txt", "COPYING")), "no licence"
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    assert 'license = "Apache-2.0"' in (REPO / "pyproject.toml").read_text()  # the same licence everywhere
    description = json.loads((REPO / "LabelReg.json").read_text())
    assert description["$schema"].startswith("https://") and description["category"] == "Registration"
    url = urllib.parse.urlsplit(description["scm_url"])
    assert url.scheme in ("git", "https") and "://" in description["scm_url"]
    assert "slicer" in url.path.split("/")[-1].lower(), "the index asks for 'Slicer' in the repository name"
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"project\s*\(\s*([^\s)]+)", cmake).group(1) == "LabelReg"  # the description file's name
    icon = re.search(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"', cmake).group(1)
    screenshots = re.search(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"', cmake).group(1).split()
    assert all(u.startswith("http") for u in [icon, *screenshots]) and screenshots
    for link in [icon, *screenshots]:  # each picture is in the repository, where the URL points
        assert (REPO / link.split("/main/", 1)[1]).is_file(), link


# ---------------------------------------------------------------- 3. the scene closed or the table deleted in a training
# (a real training process: Testing/test_slicer_training.py, test_the_training_survives_...)


# ---------------------------------------------------------------- 5. a saved "update automatically" starts nothing
def test_live_mode_starts_only_on_a_click_after_the_dependency_check():
    source = LABELREG.read_text()
    assert 'autoUpdateCheckBox.connect("clicked(bool)"' in source, "toggled fires when a saved scene is bound"
    assert "toggled(bool)" not in source
    clicked = _method(LABELREG, "LabelRegWidget", "onAutoUpdateClicked")
    assert clicked.index("ensureDependencies") < clicked.index("_startLive")


# ---------------------------------------------------------------- 6. the batch script installs or says how
def test_the_batch_script_without_torch_says_how_in_one_line_before_any_case(tmp_path):
    code = f"""
        import sys
        sys.modules["torch"] = None  # not installed
        sys.argv = ["labelreg_batch.py", "--moving", "mr.nii.gz", "--fixed", "us.nii.gz"]
        sys.path.insert(0, {str(BATCH.parent)!r})
        import labelreg_batch
        labelreg_batch.main(sys.argv[1:])
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path,
        env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("labelreg_batch.py: error: torch not installed and not installable here (")
    assert "pip install torch nibabel" in line and "Traceback" not in result.stderr


def test_the_usage_gives_the_batch_scripts_path_in_an_installed_extension():
    usage = (REPO / "docs" / "usage.md").read_text()
    assert "slicer.modules.labelreg.path" in usage and "'Resources', 'Scripts', 'labelreg_batch.py'" in usage
    assert "Resources/Scripts/labelreg_batch.py" in (REPO / "LabelReg" / "CMakeLists.txt").read_text()


# ---------------------------------------------------------------- 7. Start and Check data never read images here
def test_check_data_and_start_read_no_image_in_slicers_process(slicer, scene, tmp_path, monkeypatch):
    import LabelRegLib.data.cases
    from LabelRegLib.data.phantom import write_phantom_folder
    from LabelRegLib.slicer.training_process import TrainingProcess

    import LabelRegTraining

    write_phantom_folder(tmp_path / "data", n_pairs=3)
    logic = LabelRegTraining.LabelRegTrainingLogic()
    p = logic.getParameterNode()
    p.dataFolder, p.outputModel, p.iterations = str(tmp_path / "data"), str(tmp_path / "model.pt"), 2
    expected = logic.summariseData(p)[0]  # what reading here would say

    def no_reading(*args, **kwargs):
        raise AssertionError("an image was read in Slicer's process")

    monkeypatch.setattr(LabelRegLib.data.cases, "load_cases", no_reading)
    assert logic.checkData(p).startswith("Checking the data")
    from LabelRegLib.slicer.self_tests import wait_for

    assert wait_for(logic, lambda: bool(logic.dataSummary), timeout=120)
    assert logic.dataSummary == expected and "3 usable pair(s)" in expected
    commands = []
    logic.training = TrainingProcess(lambda args: commands.append(args) or subprocess.Popen(
        [sys.executable, "-c", "pass"], stdout=subprocess.PIPE, text=True))  # fmt: skip
    logic.start(p)  # launches the training, which checks the data itself
    assert commands and commands[0][commands[0].index("--data_dir") + 1] == p.dataFolder
    assert "reading the data" in p.status


# ---------------------------------------------------------------- 8. reload and quit
def test_reload_reads_labelreglib_again_and_keeps_the_sessions_training_and_models():
    code = """
        import sys
        from LabelRegLib.slicer import standalone as slicer_standalone
        slicer_standalone.install()
        import LabelReg, LabelRegTraining
        import LabelRegLib.core.config as old_config
        from LabelRegLib.slicer import session
        training = LabelRegTraining.LabelRegTrainingLogic().training
        catalogue = LabelReg.LabelRegLogic.modelCatalogue()
        catalogue.add(catalogue.bundled.replace("labelreg_localnet.pt", "labelreg_glands.pt"))
        forgotten = session.reload_library()
        assert "LabelRegLib.core.config" in forgotten and "LabelRegLib.slicer.session" not in forgotten
        import LabelRegLib.core.config
        assert LabelRegLib.core.config is not old_config, "the edited code is read again"
        assert LabelRegTraining.LabelRegTrainingLogic().training is training, "the running training is kept"
        renewed = LabelReg.LabelRegLogic.modelCatalogue()
        assert renewed is not catalogue and renewed.extra == catalogue.extra, "the model list is kept"
        print("ok")
    """
    prelude = f"import sys; sys.path.insert(0, {str(REPO / 'LabelReg')!r})\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, env=subprocess_env(),
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("path", [LABELREG, TRAINING], ids=lambda p: p.name)
def test_both_panels_reload_labelreglib_and_leave_nothing_connected(path):
    widget = path.stem + "Widget"
    reload = _method(path, widget, "onReload")
    assert reload.index("reload_library()") < reload.index("ScriptedLoadableModuleWidget.onReload(self)")
    assert "aboutToQuit" not in path.read_text(), "a connection cleanup() never removed (the training ends with Slicer)"
    if path == TRAINING:  # a training started before the Reload is polled by the new panel
        assert "if self.logic.isRunning:" in _method(path, widget, "setup")


# ---------------------------------------------------------------- 10. every .ui connection has both ends
@pytest.mark.parametrize("name", ["LabelReg", "LabelRegTraining"])
def test_every_ui_connection_names_widgets_that_exist(name):
    ui = ET.parse(REPO / name / "Resources" / "UI" / f"{name}.ui")
    widgets = {w.get("name") for w in ui.iter("widget")}
    for connection in ui.iter("connection"):
        for end in ("sender", "receiver"):
            assert connection.find(end).text in widgets, f"{name}.ui connects {end} {connection.find(end).text}"


# ---------------------------------------------------------------- 12. thin module files
def test_the_module_files_read_like_the_template():
    assert len(LABELREG.read_text().splitlines()) <= 450
    assert len(TRAINING.read_text().splitlines()) <= 400
