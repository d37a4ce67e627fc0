"""The adapter between MRML nodes and the engine's types: the only engine file that imports slicer.

- volume nodes <-> :class:`~LabelRegLib.core.volume.Volume` (``slicer.util.arrayFromVolume``
  gives ``[k, j, i]``; the node's IJK->RAS matrix is already RAS);
- a RAS displacement field -> a ``vtkOrientedGridTransform`` set on a grid
  transform node with ``SetAndObserveTransformFromParent``: Slicer resamples a
  child node by asking, for each parent (fixed) point ``x``, for ``x + u(x)``,
  which is exactly LabelReg's resampling-direction field (docs/design.md, "Conventions").
"""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..core.volume import Volume


def _matrix_to_numpy(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_matrix(array: np.ndarray):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def transform_to_world(transform_node, owner: str) -> np.ndarray:
    """4x4 matrix from the child frame of ``transform_node`` to world RAS (identity for ``None``).

    A non-linear transform cannot be folded into a volume's geometry: it is
    reported, naming ``owner``, so that the user can harden or remove it.
    """
    if transform_node is None:
        return np.eye(4)
    if not transform_node.IsTransformToWorldLinear():
        raise InputError(
            owner,
            f"is under the non-linear transform '{transform_node.GetName()}'; harden it or remove it before registering",
        )
    import vtk

    matrix = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(matrix)
    return _matrix_to_numpy(matrix)


def volume_from_node(node, role: str, to_world: np.ndarray | None = None) -> Volume:
    """A :class:`Volume` in world RAS; ``role`` names it in errors.

    ``to_world`` maps the node's own RAS to world (default: its parent
    transform, which must be linear).
    """
    import slicer
    import vtk

    from ..core.volume import check_volume

    if node is None:
        raise InputError(role, "no volume selected")
    if node.GetImageData() is None:
        raise InputError(f"{role} '{node.GetName()}'", "has no image data")
    array = slicer.util.arrayFromVolume(node)
    if array.ndim != 3:
        raise InputError(f"{role} '{node.GetName()}'", f"is not a scalar 3D volume (array shape {array.shape})")
    if to_world is None:
        to_world = transform_to_world(node.GetParentTransformNode(), f"{role} '{node.GetName()}'")
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    volume = Volume(np.array(array, dtype=np.float32), to_world @ _matrix_to_numpy(ijk_to_ras), node.GetName())
    check_volume(volume, f"{role} '{node.GetName()}'")
    return volume


def update_volume_node(node, volume: Volume) -> None:
    """Set a volume node's voxels and IJK->RAS geometry from a :class:`Volume` (in the node's own RAS)."""
    import slicer

    node.SetIJKToRASMatrix(_numpy_to_matrix(volume.ijk_to_ras))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))


def set_grid_transform(transform_node, displacement: Volume) -> None:
    """Store a RAS displacement field (``[K, J, I, 3]`` mm on its grid) as the node's transform from parent."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    spacing = displacement.spacing
    direction = np.eye(4)
    direction[:3, :3] = displacement.direction
    grid = vtk.vtkImageData()
    grid.SetOrigin(*displacement.origin)
    grid.SetSpacing(*spacing)
    grid.SetDimensions(*displacement.shape[::-1])
    vectors = numpy_support.numpy_to_vtk(
        np.ascontiguousarray(displacement.array, dtype=np.float64).reshape(-1, 3), deep=True
    )
    vectors.SetNumberOfComponents(3)
    grid.GetPointData().SetScalars(vectors)
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetGridDirectionMatrix(_numpy_to_matrix(direction))
    transform.SetInterpolationModeToLinear()
    transform_node.SetAndObserveTransformFromParent(transform)


def grid_transform_displacement(transform_node) -> Volume:
    """The displacement field stored in a grid transform node (RAS mm, its own grid), for checks."""
    import slicer

    transform = transform_node.GetTransformFromParent()
    grid = transform.GetDisplacementGrid()
    direction = _matrix_to_numpy(transform.GetGridDirectionMatrix())[:3, :3]
    from ..core.volume import make_ijk_to_ras

    matrix = make_ijk_to_ras(grid.GetSpacing(), grid.GetOrigin(), direction)
    return Volume(np.array(slicer.util.arrayFromGridTransform(transform_node)), matrix, transform_node.GetName())


def add_phantom_nodes(scene, pair, prefix: str = "") -> tuple:
    """A phantom pair in ``scene`` as Slicer users have theirs: ``(MR volume, US volume, MR gland segmentation)``
    (for the self-test, the tests and the pictures)."""

    moving = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{prefix}MR")
    fixed = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{prefix}US")
    update_volume_node(moving, pair.moving_image)
    update_volume_node(fixed, pair.fixed_image)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{prefix}MR gland")
    set_segments_from_labelmap(scene, segmentation, pair.moving_labels[0], "gland")
    return moving, fixed, segmentation


def set_segments_from_labelmap(scene, segmentation_node, label: Volume, segment_name: str) -> None:
    """Replace the segments of ``segmentation_node`` by the voxels of ``label`` above 0.5 (one segment named
    ``segment_name``; ``label`` in the node's own RAS), through a scratch labelmap node that is removed again."""
    import slicer

    scratch = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", segment_name)
    try:
        update_volume_node(scratch, label.with_array((label.array > 0.5).astype(np.uint8)))
        segmentation_node.GetSegmentation().RemoveAllSegments()
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(scratch, segmentation_node):
            raise RuntimeError(f"Importing '{segment_name}' into '{segmentation_node.GetName()}' failed")
    finally:
        scene.RemoveNode(scratch)


def node_ids(scene) -> set:
    """IDs of every node in the scene (to remove later exactly the nodes a test adds)."""
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


def remove_nodes_added_since(scene, ids_before: set) -> None:
    """Remove every node whose ID is not in ``ids_before`` (with its display and storage nodes)."""
    for node in [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]:
        if node.GetID() not in ids_before and scene.IsNodePresent(node):
            scene.RemoveNode(node)
