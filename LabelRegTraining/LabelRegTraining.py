"""LabelRegTraining: deep-learning training registration networks (placeholder module).

The registration engine lives in LabelRegLib; the full widget, logic and
self-test of this module are built in the Slicer-module issue.
"""

from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.i18n import tr as _
from slicer.i18n import translate


class LabelRegTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LabelRegTraining")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.contributors = ["LabelRegTraining developers"]
        self.parent.helpText = _("MR to TRUS registration with a weakly-supervised LocalNet (Hu et al., Medical Image Analysis 2018).")
        self.parent.acknowledgementText = _("After the label-reg tutorial of Yipeng Hu et al.")


class LabelRegWidget(ScriptedLoadableModuleWidget):
    pass


class LabelRegLogic(ScriptedLoadableModuleLogic):
    pass


class LabelRegTest(ScriptedLoadableModuleTest):
    def runTest(self):
        self.setUp()
