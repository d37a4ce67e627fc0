"""``labelreg map-points``: points (biopsy targets, a needle tip) through a registration's transform file."""

from __future__ import annotations


def add_parser(commands):
    parser = commands.add_parser(
        "map-points",
        help="map points through a registration: MR targets onto the US, or US positions onto the MR",
        description="Map points through a registration's transform file (from labelreg register --output-transform "
        "or Slicer). --to us takes MR points (biopsy targets) onto the US: the field inverted point by point, each "
        "point's inversion residual reported; --to mr takes US points (a needle tip) onto the MR. Points: CSV "
        "(label,r,a,s in RAS mm, label,l,p,s in LPS mm) or Slicer markups (.mrk.json); the output keeps the input's "
        "form, names and coordinate system.",
    )
    parser.add_argument("--transform", required=True, help="the registration (.h5, or a displacement-field image)")
    parser.add_argument("--points", required=True, help="the points to map (.csv or .mrk.json)")
    parser.add_argument("--output", required=True, help="the mapped points (the same form as --points)")
    parser.add_argument("--to", required=True, choices=("us", "mr"), help="where the points go")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    parser.set_defaults(func=run_map_points)


def run_map_points(args) -> int:
    from ..core.outputs import check_outputs
    from ..core.paths import file_suffix
    from ..core.transform_io import read_displacement
    from ..registration.point_mapping import map_point_file

    inputs = {"--transform": args.transform, "--points": args.points}
    check_outputs({"--output": args.output}, inputs, args.overwrite, {"--output": (file_suffix(args.points),)})
    displacement = read_displacement(args.transform)
    points, mapped, residual_mm = map_point_file(displacement, args.points, args.output, args.to)
    for n, label in enumerate(points.labels):
        line = f"{label}: RAS {_ras(points.ras[n])} -> {_ras(mapped[n])}"
        print(line + (f" (residual {residual_mm[n]:.4f} mm)" if residual_mm is not None else ""))
    where = "the US" if args.to == "us" else "the MR"
    residual = f"; inversion residual at most {residual_mm.max():.4f} mm" if residual_mm is not None else ""
    print(f"{len(points.labels)} point(s) mapped onto {where}{residual}; written to {args.output}")
    return 0


def _ras(point) -> str:
    return "(" + ", ".join(f"{value:.2f}" for value in point) + ")"
