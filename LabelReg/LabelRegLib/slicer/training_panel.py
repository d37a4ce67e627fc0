"""The LabelRegTraining panel's work that needs no Qt: its settings as ``labelreg train`` arguments, the
training folder beside the model, and the progress table with its plot (MRML nodes).

The training itself runs in another process (:mod:`.training_process`); the
panel polls it. The table keeps one row per reported step, saved with the
scene; when the user deletes it or closes the scene during a training,
:func:`progress_table` makes a new one and fills it again from the process's
history, so the training goes on and its progress is shown again.
"""

from __future__ import annotations

import os

TABLE_COLUMNS = ["step", "loss", "similarity", "regulariser", "val_dice", "val_tre_mm", "val_folding", "elapsed_s"]
TABLE_NAME = "LabelReg training curves"


def output_directory(output_model: str) -> str:
    """Training files (checkpoint, curves, metrics) go beside the model, in <model name>_training/."""
    return os.path.splitext(os.path.abspath(output_model))[0] + "_training"


def can_resume(output_model: str) -> bool:
    from ..core.outputs import CHECKPOINT_NAME

    return bool(output_model) and os.path.isfile(os.path.join(output_directory(output_model), CHECKPOINT_NAME))


def holds_training(output_model: str) -> bool:
    """Whether a new training there would replace a model or a checkpoint."""
    return bool(output_model) and (os.path.exists(output_model) or can_resume(output_model))


def check_start(output_model: str, resume: bool, overwrite: bool) -> None:
    """Refuse a start that has no output model, a resume without a checkpoint, or a new training over an existing
    model or checkpoint without ``overwrite``."""
    if not output_model:
        raise ValueError("Choose the output model file.")
    if resume and not can_resume(output_model):
        raise ValueError(f"There is no checkpoint to resume in {output_directory(output_model)}")
    if not resume and not overwrite and holds_training(output_model):
        raise ValueError(
            f"{output_model} or its training folder exists: Resume continues it; to start again, confirm replacing it."
        )


def train_arguments(recipe: str, output_model: str, data: dict, settings: dict, initial_model: str = "") -> list:
    """The ``labelreg train`` arguments: the ``recipe`` .ini, then the output, ``data`` (``data_dir`` and the
    four folder keys, "" for unset) and the panel's ``settings`` (``labelreg train`` keys) as overrides; with
    ``initial_model``, fine-tuning: that model's own architecture, working spacing and alignment override them."""
    from ..core.config import train_config_from_ini
    from ..nets.model_file import model_settings_flags, peek_model_header

    defaults = train_config_from_ini(recipe)
    iterations = int(settings["total_iterations"])
    args = [recipe, "--output_dir", output_directory(output_model), "--file_model_save", os.path.abspath(output_model)]
    # a row every step and a checkpoint every tenth of the run for short trainings; the recipe's otherwise
    args += ["--freq_info_print", str(min(defaults.freq_info_print, max(1, iterations // 100)))]
    args += ["--freq_model_save", str(min(defaults.freq_model_save, max(1, iterations // 10)))]
    args += ["--data_dir", data.get("data_dir", "")]  # "" clears the recipe's data folder for the four folders
    for key, value in data.items():
        if key != "data_dir" and value:
            args += [f"--{key}", value]
    for key, value in settings.items():
        args += [f"--{key}", repr(float(value)) if isinstance(value, float) else str(value)]
    if initial_model:
        args += ["--initial_model", os.path.abspath(initial_model)]
        args += model_settings_flags(peek_model_header(initial_model))
    return args


def progress_table(scene, table, history: list, reset: bool = False):
    """``table`` while it is still in ``scene`` (emptied with ``reset``); else a new table node, filled from
    ``history`` (the step records read so far), e.g. after the user deleted it or closed the scene during a
    training."""
    import vtk

    if table is not None and scene.IsNodePresent(table):
        if not reset and table.GetNumberOfColumns() == len(TABLE_COLUMNS):
            return table
        table.RemoveAllColumns()
    else:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(TABLE_NAME))
    for name in TABLE_COLUMNS:
        column = vtk.vtkDoubleArray()
        column.SetName(name)
        table.AddColumn(column)
    for record in history:
        append_row(table, record)
    return table


def add_rows(scene, run: dict, records: list):
    """Append the rows among progress ``records`` (steps, and the validation before the first step) to the table
    of ``run`` (``table``, ``rows`` so far); when that table has left the scene, a new one with every row so far
    takes its place. Returns the table."""
    rows = [r for r in records if r["event"] == "step" or (r["event"] == "validation" and r.get("step") == 0)]
    run["rows"] += rows
    table = progress_table(scene, run["table"], run["rows"])
    if table is run["table"]:
        for record in rows:
            append_row(table, record)
    run["table"] = table
    return table


def append_row(table, record: dict) -> None:
    row = table.AddEmptyRow()
    for index, name in enumerate(TABLE_COLUMNS):
        value = record.get(name)
        table.GetTable().GetColumn(index).SetValue(row, float("nan") if value is None else float(value))
    table.GetTable().Modified()
    table.Modified()


def plot_chart_node(scene, table):
    """A plot of the loss and the validation Dice against the step (made once, saved with the scene; the panel
    shows it in the layout's plot view)."""
    import slicer

    name = f"{table.GetName()} plot"
    chart = scene.GetFirstNodeByName(name)
    if chart is not None:
        return chart
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    for column in ("loss", "val_dice"):
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", column)
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName("step")
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetXAxisTitle("step")
    return chart
