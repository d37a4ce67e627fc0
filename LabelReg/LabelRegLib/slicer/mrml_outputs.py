"""Where a registration lands in the Slicer scene: the transform node and the outputs made with it.

The LabelReg logic (``LabelReg.py``) registers through the worker; this file
puts the reply into MRML on the main thread, and gathers what goes into a
request from the nodes. Every output node is made once and updated by later
registrations (each finds it through a node reference of its source), so
registering again, or every live frame, never piles up nodes:

- the grid transform node (fixed world RAS to the MR's own RAS), with the
  self-check in its attributes, and the MR under it;
- the MR segmentation under the transform (``transform``) or a hardened copy
  on the US (``harden``), and optionally a labelmap on the US grid that keeps
  the segments' names and colours (its colour table);
- the two predicted glands, each beside its volume.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.volume import Volume
from .mrml import (
    node_ids,
    remove_nodes_added_since,
    set_grid_transform,
    set_segments_from_labelmap,
    transform_to_world,
    update_volume_node,
    volume_from_node,
)

# output transform -> the MR's own parent transform (remapped on scene import)
MOVING_PARENT_REFERENCE = "labelRegMovingParent"
# segmentation -> its hardened copy on the US / its labelmap on the US; volume -> its predicted gland
HARDENED_REFERENCE = "labelRegOnUS"
LABELMAP_REFERENCE = "labelRegLabelmapOnUS"
COLOUR_TABLE_ATTRIBUTE = "LabelReg.LabelmapColours"  # marks the colour tables LabelReg made (and may remove)
GLAND_REFERENCE = "labelRegPredictedGland"
# the transform node attribute of each quality column (quality.QUALITY_COLUMNS)
QUALITY_ATTRIBUTES = {
    "quality_dice": "LabelReg.QualityDice",
    "quality_centroid_mm": "LabelReg.QualityCentroidMm",
    "quality_flag": "LabelReg.QualityFlag",
}
SEGMENTATION_MODES = ("transform", "harden")


@dataclass
class MovingFrame:
    """The MR as the engine gets it: its volume in world RAS, the matrix from its own RAS to world, and the ID
    of its own parent transform (None: none)."""

    volume: Volume
    to_world: np.ndarray
    parent_id: str | None

    @property
    def world_to_moving(self) -> np.ndarray:
        """World RAS -> the MR's own RAS (what the output transform maps onto)."""
        return np.linalg.inv(self.to_world)


def moving_frame(scene, moving_node, output_transform_node) -> MovingFrame:
    """The MR of a registration. When it is already under the output transform (registering again, live
    mode), its own parent is the one the transform refers to."""
    if moving_node is None:
        volume_from_node(None, "moving volume")  # raises "no volume selected"
    parent_id = moving_node.GetTransformNodeID()
    if output_transform_node is not None and parent_id == output_transform_node.GetID():
        parent_id = output_transform_node.GetNodeReferenceID(MOVING_PARENT_REFERENCE)
    parent = scene.GetNodeByID(parent_id) if parent_id else None
    to_world = transform_to_world(parent, f"moving volume '{moving_node.GetName()}'")
    return MovingFrame(volume_from_node(moving_node, "moving volume", to_world), to_world, parent_id)


def fixed_volume(fixed_node) -> Volume:
    return volume_from_node(fixed_node, "fixed volume")


def check_same_frame(nodes, frame: MovingFrame, output_transform_node) -> None:
    """What is carried onto the US (a segmentation, targets) must be drawn in the MR's frame: the same parent
    transform as the MR, or the output transform (registering again)."""
    same = {frame.parent_id} | ({output_transform_node.GetID()} if output_transform_node else set())
    for node in nodes:
        if node is not None and node.GetTransformNodeID() not in same:
            raise InputError(
                node.GetName(),
                "is not in the moving volume's frame: give it the same parent transform as the MR (or none), then register again",
            )


@contextmanager
def unchanged_on_error(scene, *nodes):
    """On an exception inside: ``nodes`` (those not None) get their parent transforms back and every node added
    to ``scene`` since is removed (with its display and storage nodes), then the exception goes on."""
    before = node_ids(scene)
    parents = [(node, node.GetTransformNodeID()) for node in nodes if node is not None]
    try:
        yield
    except BaseException:
        for node, parent_id in parents:
            node.SetAndObserveTransformNodeID(parent_id)
        remove_nodes_added_since(scene, before)
        raise


def segments_as_labels(scene, segmentation_node) -> tuple[Volume, object]:
    """``(labels, colour table node)``: the segments as one labelmap in the segmentation's own RAS (an exact copy
    of Slicer's binary labelmaps, padded by a voxel of background) and the colour table Slicer made for it,
    which names and colours each label value as its segment. The scratch labelmap is removed; the colour table
    stays in the scene for the labelmap on the US (:func:`show_labelmap`)."""
    import slicer
    import vtk

    scratch_ids = node_ids(scene)
    colour = None
    try:
        scratch = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__LabelReg_labelmap_in_MR_frame__")
        segment_ids = vtk.vtkStringArray()
        segmentation_node.GetSegmentation().GetSegmentIDs(segment_ids)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, segment_ids, scratch
        ):
            raise RuntimeError(f"Exporting the segments of '{segmentation_node.GetName()}' to a labelmap failed")
        labels = volume_from_node(scratch, "exported labelmap", to_world=np.eye(4)).padded(1)
        colour = scratch.GetDisplayNode().GetColorNode() if scratch.GetDisplayNode() else None
    finally:
        keep = {colour.GetID()} if colour is not None else set()
        remove_nodes_added_since(scene, scratch_ids | keep)
    if colour is not None:
        colour.SetName(scene.GenerateUniqueName(f"{segmentation_node.GetName()} colours"))
        colour.SetAttribute(COLOUR_TABLE_ATTRIBUTE, "1")
    return labels, colour


def apply_transform(scene, reply, nodes: tuple, frame: MovingFrame, apply_to_moving: bool):
    """Put the reply's field (fixed world RAS -> the MR's own RAS) into the output transform node (made when None)
    with the self-check in its attributes, and the MR under it with ``apply_to_moving``; returns the node.
    ``nodes``: (moving, fixed, output transform or None)."""
    moving_node, fixed_node, output_transform_node = nodes
    if output_transform_node is None:
        output_transform_node = scene.AddNewNodeByClass(
            "vtkMRMLGridTransformNode", f"{moving_node.GetName()} to {fixed_node.GetName()}"
        )
        output_transform_node.CreateDefaultDisplayNodes()
    output_transform_node.SetAndObserveTransformNodeID(None)
    output_transform_node.SetNodeReferenceID(MOVING_PARENT_REFERENCE, frame.parent_id)
    set_grid_transform(output_transform_node, reply.displacement)
    for name, value in (reply.quality.row() if reply.quality else {}).items():
        output_transform_node.SetAttribute(QUALITY_ATTRIBUTES[name], f"{value:.6g}")
    if apply_to_moving:
        moving_node.SetAndObserveTransformNodeID(output_transform_node.GetID())
    return output_transform_node


def carry_segmentation(scene, segmentation_node, transform_node, mode: str):
    """``transform``: the segmentation under the transform; ``harden``: its copy "<name> on US", hardened onto
    the US (the copy of the previous registration is updated), so the MR segmentation stays as it was drawn."""
    if mode == "transform":
        segmentation_node.SetAndObserveTransformNodeID(transform_node.GetID())
        return segmentation_node
    copy = _referenced_or_new(
        scene, segmentation_node, HARDENED_REFERENCE, "vtkMRMLSegmentationNode", f"{segmentation_node.GetName()} on US"
    )
    copy.GetSegmentation().DeepCopy(segmentation_node.GetSegmentation())
    copy.SetAndObserveTransformNodeID(transform_node.GetID())
    copy.HardenTransform()
    return copy


def carry_segments(scene, segmentation_node, mode: str, transform_node, fixed_node, labels, colour) -> tuple:
    """``(carried segmentation, labelmap or None)``: :func:`carry_segmentation`, and :func:`show_labelmap` when
    the reply carries the segments resampled onto the US (``labels``)."""
    carried = carry_segmentation(scene, segmentation_node, transform_node, mode)
    labelmap = show_labelmap(scene, segmentation_node, fixed_node, labels, colour) if labels is not None else None
    return carried, labelmap


def show_labelmap(scene, segmentation_node, fixed_node, labels_on_us: Volume, colour):
    """The warped labels as the labelmap "<segmentation> labelmap on US" on the US grid, under the US's parent,
    named and coloured by ``colour`` (the previous registration's labelmap is updated, its old colour table
    removed)."""
    import vtk

    labelmap = _referenced_or_new(
        scene,
        segmentation_node,
        LABELMAP_REFERENCE,
        "vtkMRMLLabelMapVolumeNode",
        f"{segmentation_node.GetName()} labelmap on US",
    )
    local_matrix = vtk.vtkMatrix4x4()
    fixed_node.GetIJKToRASMatrix(local_matrix)
    labelmap.SetAndObserveTransformNodeID(fixed_node.GetTransformNodeID())
    update_volume_node(labelmap, labels_on_us.with_array(np.rint(labels_on_us.array).astype(np.int16)))
    labelmap.SetIJKToRASMatrix(local_matrix)  # same grid as the US node, under the same parent
    display = labelmap.GetDisplayNode()
    if colour is not None and display is not None:
        previous = display.GetColorNode()
        display.SetAndObserveColorNodeID(colour.GetID())
        if previous is not None and previous is not colour and previous.GetAttribute(COLOUR_TABLE_ATTRIBUTE):
            scene.RemoveNode(previous)  # the colour table of the previous registration
    return labelmap


def show_glands(scene, reply, moving_node, fixed_node, frame: MovingFrame, moving_parent_id) -> tuple:
    """The predicted (MR, US) glands as segmentation nodes "<volume> gland (LabelReg)": the MR's in the MR's own
    frame under ``moving_parent_id``, the US's in the US's frame under the US's parent."""
    fixed_to_world = transform_to_world(fixed_node.GetParentTransformNode(), "fixed volume")
    placements = (
        (moving_node, moving_parent_id, frame.world_to_moving),
        (fixed_node, fixed_node.GetTransformNodeID(), np.linalg.inv(fixed_to_world)),
    )
    nodes = []
    for probability, (volume_node, parent_id, world_to_local) in zip(reply.glands, placements):
        node = _referenced_or_new(
            scene, volume_node, GLAND_REFERENCE, "vtkMRMLSegmentationNode", f"{volume_node.GetName()} gland (LabelReg)"
        )
        local = Volume(probability.array, world_to_local @ probability.ijk_to_ras, probability.name)
        set_segments_from_labelmap(scene, node, local, "predicted gland")
        node.SetAndObserveTransformNodeID(parent_id)
        nodes.append(node)
    return tuple(nodes)


def _referenced_or_new(scene, source, reference: str, node_class: str, name: str):
    """The node ``source`` refers to by ``reference`` (made, with its display nodes, when there is none)."""
    node = source.GetNodeReference(reference)
    if node is None or not scene.IsNodePresent(node):
        node = scene.AddNewNodeByClass(node_class, name)
        node.CreateDefaultDisplayNodes()
        source.SetNodeReferenceID(reference, node.GetID())
    return node
