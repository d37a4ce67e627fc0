"""Render the README's picture through MRML slice logic: the US with the MR gland carried onto it.

    python Testing/Pictures/render_result.py [--model M] [--output Testing/Pictures/result.png]

A phantom pair is registered by LabelRegLogic; the segmentation exported on the
US grid is shown as an outline (label layer) over the US (background layer) in
an axial slice view, resliced by vtkMRMLSliceLogic exactly as Slicer's Red
view does, and written as a PNG (left: MR gland after the centres-aligned start;
right: after LabelReg).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


class SliceView:
    """An axial slice view driven by vtkMRMLSliceLogic, as Slicer's Red view (no render window needed)."""

    def __init__(self, slicer, size=(256, 256)):
        self.slicer = slicer
        self.app = slicer.vtkMRMLApplicationLogic()  # kept: the slice logic does not own it
        self.app.SetMRMLScene(slicer.mrmlScene)
        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(self.app)
        self.logic.SetMRMLScene(slicer.mrmlScene)
        self.logic.AddSliceNode("Red")
        self.node = self.logic.GetSliceNode()
        self.node.SetOrientationToAxial()
        self.node.SetDimensions(size[0], size[1], 1)
        self.node.SetUseLabelOutline(True)

    def show(self, background, label) -> np.ndarray:
        """RGBA array of the slice through the label's centre: background volume, label outline on top."""
        import vtk
        from vtk.util import numpy_support

        composite = self.logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(background.GetID())
        composite.SetLabelVolumeID(label.GetID())
        composite.SetLabelOpacity(1.0)
        self.logic.FitSliceToAll()
        array = self.slicer.util.arrayFromVolume(label)
        k, j, i = [int(np.round(v.mean())) for v in np.nonzero(array)]
        ijk_to_ras = vtk.vtkMatrix4x4()
        label.GetIJKToRASMatrix(ijk_to_ras)
        self.node.JumpSliceByCentering(*ijk_to_ras.MultiplyPoint([i, j, k, 1])[:3])
        algorithm = self.logic.GetImageDataConnection().GetProducer()
        algorithm.Update()
        image = algorithm.GetOutputDataObject(0)
        dims = image.GetDimensions()
        return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[1], dims[0], -1)[::-1].copy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--output", default=str(HERE / "result.png"))
    parser.add_argument("--seed", type=int, default=1001)
    args = parser.parse_args()

    from LabelRegLib.slicer import standalone as slicer_standalone

    slicer = slicer_standalone.install()
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(slicer.mrmlScene)
    colors.AddDefaultColorNodes()
    from LabelRegLib.data.phantom import make_phantom_pair
    from LabelRegLib.slicer.mrml import add_phantom_nodes, update_volume_node

    import LabelReg

    pair = make_phantom_pair(args.seed)
    moving, fixed, segmentation = add_phantom_nodes(slicer.mrmlScene, pair)

    from LabelRegLib.core.spatial import initial_alignment, resample_volume

    start = initial_alignment(pair.moving_image, pair.fixed_image, "centers")
    before = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "MR gland, centres aligned")
    before_volume = resample_volume(
        pair.moving_labels[0], pair.fixed_image.shape, pair.fixed_image.ijk_to_ras, start, interpolation="nearest"
    )
    update_volume_node(before, before_volume.with_array(before_volume.array.astype(np.int16)))
    logic = LabelReg.LabelRegLogic()
    logic.register(moving, fixed, modelPath=args.model, segmentationNode=segmentation, createLabelmap=True)
    for node in (before, logic.lastLabelmapNode):
        node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetAndObserveColorNodeID("vtkMRMLColorTableNodeLabels")
    fixed.CreateDefaultDisplayNodes()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = SliceView(slicer)
    figure, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    for axis, label, title in zip(
        axes, (before, logic.lastLabelmapNode), ("MR gland, centres aligned", "MR gland after LabelReg")
    ):
        axis.imshow(view.show(fixed, label)[..., :3])
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.suptitle(
        f"US with the MR gland outline (Slicer slice view, phantom {args.seed}); {logic.lastStatus}", fontsize=8
    )
    figure.tight_layout()
    figure.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
