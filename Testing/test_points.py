"""Points through a registration (issue 27): MR targets onto the US, US positions onto the MR, point files."""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import run_labelreg
from LabelRegLib.core.errors import InputError
from LabelRegLib.core.point_files import read_points
from LabelRegLib.core.transform_io import write_displacement
from LabelRegLib.data.phantom import make_phantom_pair
from LabelRegLib.registration.point_mapping import FieldMapper


@pytest.fixture(scope="module")
def pair():
    return make_phantom_pair(3, oblique=True)


@pytest.fixture(scope="module")
def mapper(pair):
    return FieldMapper(pair.true_displacement)


def _inside_us_points(pair, count=40, margin=6, seed=0):
    """RAS points well inside the US grid (``margin`` voxels from every face)."""
    volume = pair.true_displacement
    rng = np.random.default_rng(seed)
    ijk = np.stack([rng.uniform(margin, n - 1 - margin, count) for n in volume.shape[::-1]], axis=-1)
    return ijk @ volume.ijk_to_ras[:3, :3].T + volume.ijk_to_ras[:3, 3]


def _known_inverse(pair, targets):
    """The US point of each MR target through the phantom's exact deformation (not its sampled field)."""
    phi = pair.true_mapping
    rotation_inverse = np.linalg.inv(phi.rotation)
    x = phi.fixed_center + (targets - phi.moving_center) @ rotation_inverse.T
    for _ in range(200):  # phi = affine + small smooth bumps: the fixed-point iteration contracts
        x = x - (phi(x) - targets) @ rotation_inverse.T
    assert np.abs(phi(x) - targets).max() < 1e-9
    return x


def test_mr_to_us_to_mr_lands_on_the_start(pair, mapper):
    labels = [f"T{n}" for n in range(40)]
    targets = mapper.phi(_inside_us_points(pair))  # MR points whose US points lie inside the field
    on_us, residual_mm = mapper.to_us(targets, labels)
    back = mapper.to_mr(on_us, labels)
    assert np.linalg.norm(back - targets, axis=-1).max() < 0.1
    assert residual_mm.max() < 0.1 and np.allclose(residual_mm, np.linalg.norm(back - targets, axis=-1))


def test_the_inverse_agrees_with_the_phantoms_known_inverse(pair, mapper):
    truth = _inside_us_points(pair, seed=1)
    targets = pair.true_mapping(truth)
    on_us, _residual = mapper.to_us(targets, [f"T{n}" for n in range(len(targets))])
    assert np.linalg.norm(on_us - truth, axis=-1).max() < 0.2  # the field is sampled at 1.2-1.3 mm


def test_a_point_outside_the_grid_is_refused_by_name(pair, mapper):
    inside = _inside_us_points(pair, count=1)
    far = inside + [0.0, 0.0, 200.0]
    with pytest.raises(InputError, match=r"point 'needle tip' \(\d+\.\d mm beyond it\) is outside"):
        mapper.to_mr(np.vstack([inside, far]), ["inside", "needle tip"])
    with pytest.raises(InputError, match=r"'far target' .* falls outside the registration's field on the US"):
        mapper.to_us(mapper.phi(far) + [0.0, 0.0, 200.0], ["far target"])


def _markups(positions_lps, labels):
    return {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
        "markups-schema-v1.0.3.json#",
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "controlPoints": [
                    {
                        "id": str(n + 1),
                        "label": label,
                        "description": "core",
                        "position": list(map(float, p)),
                        "selected": True,
                        "locked": False,
                        "visibility": True,
                        "positionStatus": "defined",
                    }
                    for n, (p, label) in enumerate(zip(positions_lps, labels))
                ],  # fmt: skip
                "measurements": [],
                "display": {"color": [0.1, 0.9, 0.2]},
            }
        ],
    }


def test_map_points_keeps_a_markups_files_names_and_fields(pair, mapper, tmp_path):
    write_displacement(pair.true_displacement, tmp_path / "mr_to_us.h5")
    targets = mapper.phi(_inside_us_points(pair, count=3, seed=2))
    labels = ["apex target", "lesion 1", "lesion 2"]
    (tmp_path / "targets.mrk.json").write_text(json.dumps(_markups(targets * [-1, -1, 1], labels)))
    result = run_labelreg(
        "map-points", "--transform", tmp_path / "mr_to_us.h5", "--points", tmp_path / "targets.mrk.json",
        "--output", tmp_path / "on_us.mrk.json", "--to", "us",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3 point(s) mapped onto the US; inversion residual at most" in result.stdout
    written = json.loads((tmp_path / "on_us.mrk.json").read_text())
    points = written["markups"][0]["controlPoints"]
    assert [p["label"] for p in points] == labels and all(p["description"] == "core" for p in points)
    assert written["markups"][0]["display"] == {"color": [0.1, 0.9, 0.2]}
    expected, _ = mapper.to_us(targets, labels)
    assert np.allclose(read_points(tmp_path / "on_us.mrk.json").ras, expected, atol=1e-3)
    again = run_labelreg(
        "map-points", "--transform", tmp_path / "mr_to_us.h5", "--points", tmp_path / "targets.mrk.json",
        "--output", tmp_path / "on_us.mrk.json", "--to", "us",
    )  # fmt: skip
    assert again.returncode == 2 and "exists; pass --overwrite to replace it" in again.stderr


def test_an_lps_csv_and_its_ras_twin_give_the_same_points(pair, mapper, tmp_path):
    write_displacement(pair.true_displacement, tmp_path / "mr_to_us.h5")
    us = _inside_us_points(pair, count=4, seed=3)
    rows = "\n".join(f"needle {n},{p[0]},{p[1]},{p[2]}" for n, p in enumerate(us))
    lps_rows = "\n".join(f"needle {n},{-p[0]},{-p[1]},{p[2]}" for n, p in enumerate(us))
    (tmp_path / "ras.csv").write_text("label,r,a,s\n" + rows + "\n")
    (tmp_path / "lps.csv").write_text("label,l,p,s\n" + lps_rows + "\n")
    (tmp_path / "xyz.csv").write_text("# coordinate system: LPS\nlabel,x,y,z\n" + lps_rows + "\n")
    mapped = {}
    for name in ("ras", "lps", "xyz"):
        result = run_labelreg(
            "map-points", "--transform", tmp_path / "mr_to_us.h5", "--points", tmp_path / f"{name}.csv",
            "--output", tmp_path / f"{name}_on_mr.csv", "--to", "mr",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        mapped[name] = read_points(tmp_path / f"{name}_on_mr.csv")
    assert np.allclose(mapped["ras"].ras, mapper.phi(us), atol=1e-3)
    for name in ("lps", "xyz"):
        assert (
            np.allclose(mapped[name].ras, mapped["ras"].ras, atol=1e-3) and mapped[name].labels == mapped["ras"].labels
        )
    assert (tmp_path / "lps_on_mr.csv").read_text().splitlines()[0] == "label,l,p,s"  # written back as it came


@pytest.mark.parametrize(
    "text, problem",
    [
        ("name,x,y,z\nT1,1,2,3\n", "needs a header label,r,a,s"),
        ("label,r,a,s\nT1,1,two,3\n", "row 2: needs three numbers in the columns r,a,s"),
        ("label,r,a,s,r\nT1,1,2,3,4\n", "names a column twice"),
        ("label,r,a,s\nT1,1,2,3,4\n", "row 2: has 5 values for 4 columns"),
        ("label,r,a,s\n", "holds no points"),
    ],
)
def test_a_bad_point_file_is_refused_in_one_line_naming_it(tmp_path, text, problem):
    (tmp_path / "points.csv").write_text(text)
    with pytest.raises(InputError, match=problem):
        read_points(tmp_path / "points.csv")


def test_register_maps_the_moving_points_as_map_points_does(pair, tmp_path):
    from LabelRegLib.core.io import write_volume
    from LabelRegLib.core.metrics import centroid_ras

    write_volume(pair.moving_image, tmp_path / "mr.nii.gz")
    write_volume(pair.fixed_image, tmp_path / "us.nii.gz")
    centroids = [centroid_ras(label) for label in pair.moving_labels[1:]]
    rows = "".join(f"landmark {n},{p[0]},{p[1]},{p[2]}\n" for n, p in enumerate(centroids, 1))
    (tmp_path / "targets.csv").write_text("label,r,a,s\n" + rows)
    common = ("--moving", tmp_path / "mr.nii.gz", "--fixed", tmp_path / "us.nii.gz", "--moving-points")
    alone = run_labelreg("register", *common, tmp_path / "targets.csv", "--output-transform", tmp_path / "t.h5")
    assert alone.returncode == 2 and "--moving-points and --points-on-fixed go together" in alone.stderr
    result = run_labelreg(
        "register", *common, tmp_path / "targets.csv", "--points-on-fixed", tmp_path / "on_us.csv",
        "--output-transform", tmp_path / "t.h5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "point(s) onto the US, inversion residual at most" in result.stdout
    check = run_labelreg(
        "map-points", "--transform", tmp_path / "t.h5", "--points", tmp_path / "targets.csv",
        "--output", tmp_path / "check.csv", "--to", "us",
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    on_us = read_points(tmp_path / "on_us.csv")
    assert on_us.labels == [f"landmark {n}" for n in range(1, len(centroids) + 1)]
    assert np.allclose(on_us.ras, read_points(tmp_path / "check.csv").ras, atol=1e-3)
    assert (tmp_path / "on_us.csv").read_text().splitlines()[0] == "label,r,a,s,residual_mm"


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_point_file_that_cannot_be_written_whole_is_one_line_and_the_old_file_stays(tmp_path):
    import textwrap

    from helpers import REPO, subprocess_env

    (tmp_path / "targets.csv").write_text("label,r,a,s\n" + "".join(f"T{n},1,2,3\n" for n in range(200)))
    (tmp_path / "out.csv").write_text("the old file\n")
    code = f"""
        import resource, sys
        sys.path.insert(0, {str(REPO / "LabelReg")!r})
        from LabelRegLib.core.errors import InputError
        from LabelRegLib.core.point_files import read_points, write_points
        points = read_points({str(tmp_path / "targets.csv")!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))  # a file-size limit: the write stops short
        try:
            write_points(points, {str(tmp_path / "out.csv")!r})
        except InputError as error:
            print(error)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=subprocess_env(), timeout=60
    )
    assert result.stdout.strip().startswith(f"{tmp_path / 'out.csv'}: could not be written ("), result
    assert (tmp_path / "out.csv").read_text() == "the old file\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
