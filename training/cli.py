"""`lsr train`: every TrainConfig field is a flag, which wins over the config file."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag_type(annotation: str):
    base = annotation.replace(" | None", "")
    if base == "bool":
        return _bool, None
    if base.startswith("list["):
        return (float if "float" in base else str), "+"
    return {"int": int, "float": float, "str": str}[base], None


def register(subparsers: argparse._SubParsersAction) -> None:
    from lsr.training.config import TrainConfig

    train = subparsers.add_parser(
        "train", help="train a sparse encoder (inference-free or splade)",
        description="Settings come from --config (YAML or JSON); every setting is also a flag, which wins.")
    train.add_argument("--config", metavar="FILE", help="YAML or JSON file of training settings")
    train.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                       help="continue from the latest checkpoint of the work directory (or the given step-N dir)")
    settings = train.add_argument_group("training settings (override the config file)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "command":
            continue
        kind, nargs = _flag_type(str(f.type))
        settings.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, nargs=nargs, default=None,
                              metavar=f.name.upper())
    train.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from lsr.training.trainer import TrainConfig, main_train

    base = dataclasses.asdict(TrainConfig.load(args.config)) if args.config else {}
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if f.name != "command" and getattr(args, f.name, None) is not None}
    command = "lsr " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    config = TrainConfig(**{**base, **overrides, "command": command})
    out = main_train(config, resume=args.resume)
    print(out)
    return 0
