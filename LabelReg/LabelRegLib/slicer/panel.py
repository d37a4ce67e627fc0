"""The part of Slicer's scripted-module widget template that both LabelReg panels share.

Slicer's template (``ScriptedLoadableModuleTemplate``) gives every widget the
same dozen lines: load the ``.ui``, bind the module's parameter node to it while
the module is shown (``enter``/``exit``), drop the binding when the scene
closes and bind again after, and observe the node to update the buttons. Both
``LabelReg`` and ``LabelRegTraining`` need exactly that, so it is written once
here. It is a helper object the widget creates in ``setup()`` rather than a base
class, because a base class would be imported at the top of the module files,
where Slicer may load ``LabelRegTraining`` before ``LabelReg`` has put this
package on ``sys.path``. It holds the observations (a ``VTKObservationMixin``)
and imports no Qt (the ``.ui`` is loaded by ``slicer.util``).
"""

from __future__ import annotations


class ParameterNodePanel:
    """A module panel's ``.ui`` bound to its logic's parameter node.

    Args:
        widget: the module's ``ScriptedLoadableModuleWidget``; its ``ui`` is set here from the ``.ui`` file, and
            its ``_parameterNode`` (the name the template uses) is kept current.
        uiFile: the ``.ui`` file, relative to the module's resources (e.g. ``"UI/LabelReg.ui"``).
        logic: the module logic; ``getParameterNode()`` gives the node to bind.
        onModified: called with ``(caller, event)`` whenever the bound node changes, and once after binding.
        onBound: called after a node is bound, before ``onModified`` (e.g. to fill lists from the node).
        beforeSceneClose: called before the binding is dropped when the scene closes (e.g. to stop live mode).
    """

    def __init__(self, widget, uiFile: str, logic, onModified, onBound=None, beforeSceneClose=None):
        import slicer
        from slicer.util import VTKObservationMixin

        self.observations = VTKObservationMixin()
        self.widget = widget
        self.logic = logic
        self.onModified = onModified
        self.onBound = onBound
        self.beforeSceneClose = beforeSceneClose
        self.node = widget._parameterNode = None
        self.guiTag = None
        uiWidget = slicer.util.loadUI(widget.resourcePath(uiFile))
        widget.layout.addWidget(uiWidget)
        widget.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.observations.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.observations.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def bind(self) -> None:
        """Bind the logic's parameter node (created if the scene has none): on ``setup`` and ``enter``."""
        self.setNode(self.logic.getParameterNode())

    def release(self) -> None:
        """Unbind the GUI and stop observing the node (it stays the panel's node): on ``exit``."""
        if self.node is not None:
            if self.guiTag is not None:
                self.node.disconnectGui(self.guiTag)
                self.guiTag = None
            if self.observations.hasObserver(self.node, _modifiedEvent(), self.onModified):
                self.observations.removeObserver(self.node, _modifiedEvent(), self.onModified)

    def setNode(self, node) -> None:
        self.release()
        self.node = self.widget._parameterNode = node
        if node is not None:
            self.guiTag = node.connectGui(self.widget.ui)
            self.observations.addObserver(node, _modifiedEvent(), self.onModified)
            if self.onBound:
                self.onBound()
            self.onModified(node, None)

    def cleanup(self) -> None:
        """Stop observing the scene and the node: on the widget's ``cleanup``."""
        self.observations.removeObservers()

    def onSceneStartClose(self, caller, event) -> None:
        if self.beforeSceneClose:
            self.beforeSceneClose()
        self.setNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.widget.parent.isEntered:
            self.bind()


def fill_model_list(comboBox, catalogue, chosen: str) -> None:
    """Fill the LabelReg panel's model list from the :class:`~LabelRegLib.registration.model_catalogue.ModelCatalogue` (each
    item's data is the file's path) and select ``chosen`` (the bundled model when ""), without signalling."""
    comboBox.blockSignals(True)
    comboBox.clear()
    for label, path in catalogue.models(extra=(chosen,) if chosen else ()):
        comboBox.addItem(label, path)
    index = comboBox.findData(catalogue.resolved(chosen) if chosen else catalogue.bundled)
    comboBox.setCurrentIndex(max(index, 0))
    comboBox.blockSignals(False)


def _modifiedEvent() -> int:
    import vtk

    return vtk.vtkCommand.ModifiedEvent
