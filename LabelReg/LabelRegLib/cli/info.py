"""``labelreg info``: a model file's header and this machine's devices."""

from __future__ import annotations


def add_parser(commands):
    parser = commands.add_parser("info", help="show a model file's header and this machine's devices")
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.set_defaults(func=run_info)


def run_info(args) -> int:
    import json

    from ..core.device import available_devices
    from ..nets.model_file import default_model_path, read_model_header

    path = args.model or default_model_path()
    print(json.dumps({"model": str(path), "devices": available_devices(), "header": read_model_header(path)}, indent=2))
    return 0
