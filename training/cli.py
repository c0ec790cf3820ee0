"""Command-line pieces of ``training/``: encoder options shared by every subcommand that encodes, and `lsr train`."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from training.encoders import KINDS, load_encoder


def add_encoder_arguments(parser: argparse.ArgumentParser, required: bool = True, flag: str = "--encoder") -> None:
    group = parser.add_argument_group("encoder")
    group.add_argument(flag, required=required, metavar="DIR",
                       help="lsr encoder directory, or a plain Hugging Face directory with --kind"
                            + ("" if required else " (default: the shipped models/inference-free-default)"))
    group.add_argument("--kind", choices=KINDS, help="encoder kind, for a plain Hugging Face directory")
    group.add_argument("--idf", metavar="FILE", help="inference-free: query-side {token: weight} JSON table")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    group.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                       help="encoding precision (auto: bf16/fp16 autocast on CUDA, fp32 on CPU)")
    group.add_argument("--max-query-length", type=int, default=None, help="query truncation in tokens (default 64)")
    group.add_argument("--max-document-length", type=int, default=None,
                       help="document truncation in tokens (default 256)")


def encoder_from_args(args: argparse.Namespace, path: str | None = None):
    path = path or args.encoder
    if path is None:  # the shipped default (an lsr encoder directory: no --kind/--idf needed)
        from training.encoders import default_encoder_directory

        path = default_encoder_directory()
        if not path.exists():
            raise FileNotFoundError(f"no --encoder given and the default encoder {path} is missing; pass --encoder DIR "
                                    "(or set LSR_DEFAULT_ENCODER)")
    return load_encoder(
        path, kind=args.kind, idf=args.idf, device=args.device, dtype=args.dtype,
        max_query_length=args.max_query_length, max_document_length=args.max_document_length,
    )


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
    from training.trainer import TrainConfig

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
    from training.trainer import TrainConfig, main_train

    base = dataclasses.asdict(TrainConfig.load(args.config)) if args.config else {}
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if f.name != "command" and getattr(args, f.name, None) is not None}
    command = "lsr " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    config = TrainConfig(**{**base, **overrides, "command": command})
    out = main_train(config, resume=args.resume)
    print(out)
    return 0
