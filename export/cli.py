"""``llm2vec-rag export {fuse,onnx,openvino,tensorrt}``: one plain function per subcommand."""

from __future__ import annotations

import argparse
import sys

_OPT = {"batch": 16, "seq": 128}  # default tuning shapes when the max allows them
_CALIBRATION = ("texts for static int8: a text file (one text per line) or JSONL ('text' "
                "field), e.g. a BEIR corpus.jsonl; each is calibrated as a document and as a "
                "query (default: built-in texts)")


def loader_options(args: argparse.Namespace) -> tuple[str, list[str], dict]:
    """Model, adapters and loader options of the shared flags (``spec_from_args``); the
    export's own --dtype default is applied by each command."""
    from llm2vec_rag.flags import spec_from_args

    spec = spec_from_args(args)
    options = {k: v for k, v in spec.options.items() if k != "dtype"}
    return spec.model, list(spec.adapters), options


def cmd_fuse(args: argparse.Namespace) -> int:
    """Merge the --adapter chain into --model and save a plain bidirectional model folder."""
    from .fuse import fuse_adapters

    model, adapters, options = loader_options(args)
    out = fuse_adapters(model, args.out, adapters, overwrite=args.overwrite,
                        dtype=args.dtype or "float32", **options)
    print(f"fused model -> {out}", file=sys.stderr)
    return 0


def cmd_onnx(args: argparse.Namespace) -> int:
    """Export --model (+ --adapter chain) to ONNX, validated against PyTorch before it is
    moved into place. --dtype float16 gives the fp16 (GPU) graph, --quantize int8 the CPU one."""
    from .onnx import export_onnx

    model, adapters, options = loader_options(args)
    out = export_onnx(model, args.out, adapters, dtype=args.dtype or "fp32",
                      quantize=args.quantize, calibration=args.calibration,
                      external_data=args.external_data or None,
                      opset=args.opset, overwrite=args.overwrite, tolerance=args.tolerance,
                      min_cosine=args.min_cosine, **options)
    print(f"ONNX model -> {out}", file=sys.stderr)
    return 0


def cmd_openvino(args: argparse.Namespace) -> int:
    """Write an OpenVINO IR folder from an fp32 ONNX export: int8 by NNCF (calibrated on
    --calibration texts), or fp32 with --no-quantize. OpenVINO also runs the ONNX folder as
    it is (--openvino); this step is for int8."""
    from .openvino_export import export_openvino

    out = export_openvino(args.model, args.out, quantize=None if args.no_quantize else "int8",
                          calibration=args.calibration, overwrite=args.overwrite,
                          min_cosine=args.min_cosine)
    print(f"OpenVINO IR -> {out}", file=sys.stderr)
    return 0


def cmd_tensorrt(args: argparse.Namespace) -> int:
    """Build and cache a TensorRT engine (ONNX Runtime TensorRT provider) for an ONNX folder."""
    from .tensorrt import TensorRTProfile, build_tensorrt

    def opt(axis: str) -> int:  # an unset opt follows a smaller max
        value = getattr(args, f"opt_{axis}")
        return value if value is not None else min(_OPT[axis], getattr(args, f"max_{axis}"))

    profile = TensorRTProfile(args.min_batch, opt("batch"), args.max_batch,
                              args.min_seq, opt("seq"), args.max_seq)
    cache = build_tensorrt(args.model, profile, fp16=not args.no_fp16, device=args.device,
                           workspace_gb=args.workspace_gb, overwrite=args.overwrite)
    print(f"TensorRT engine cache -> {cache}", file=sys.stderr)
    return 0


def add_commands(subparsers, model_flags: argparse.ArgumentParser) -> None:
    """Register ``export {fuse,onnx,openvino,tensorrt}`` on the main parser. Exports load a PyTorch
    model, uncached, so the shared flags come without --onnx and --cache."""
    from llm2vec_rag.flags import model_flags as shared_flags

    model_flags = shared_flags(onnx=False, cache=False)
    export = subparsers.add_parser("export",
                                   help="fuse adapters, export to ONNX / OpenVINO / TensorRT")
    sub = export.add_subparsers(dest="export_command", required=True)
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--out", required=True,
                     help="output folder: new, or a previous export to replace with --overwrite")
    out.add_argument("--overwrite", action="store_true",
                     help="replace --out if it holds a previous llm2vec-rag export (never other "
                          "files or the source model)")

    p = sub.add_parser("fuse", parents=[model_flags, out], help=cmd_fuse.__doc__,
                       description=cmd_fuse.__doc__)
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("onnx", parents=[model_flags, out], help="export to ONNX",
                       description=cmd_onnx.__doc__)
    p.add_argument("--quantize", choices=["int8", "int8-dynamic", "int8-static"], default=None,
                   help="int8 for CPU serving: block-wise (accurate), dynamic (fastest, "
                        "less accurate on short queries) or static (calibrated on "
                        "--calibration texts)")
    p.add_argument("--calibration", default=None, metavar="FILE", help=_CALIBRATION)
    p.add_argument("--min-cosine", type=float, default=None,
                   help="mean cosine to PyTorch a fp16/int8 graph must keep (default: "
                        "0.999 fp16, 0.98 int8)")
    p.add_argument("--external-data", action="store_true",
                   help="weights in model.onnx.data (automatic above 2 GB)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: exporter's)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="max fp32 difference to PyTorch, relative to the output scale")
    p.set_defaults(func=cmd_onnx)

    p = sub.add_parser("openvino", parents=[out], help="OpenVINO IR (NNCF int8) of an ONNX folder",
                       description=cmd_openvino.__doc__)
    p.add_argument("--model", required=True, help="fp32 folder written by `export onnx`")
    p.add_argument("--no-quantize", action="store_true",
                   help="write the fp32 graph as IR instead of NNCF int8")
    p.add_argument("--calibration", default=None, metavar="FILE", help=_CALIBRATION)
    p.add_argument("--min-cosine", type=float, default=None,
                   help="mean cosine to the fp32 graph the int8 IR must keep (default 0.98)")
    p.set_defaults(func=cmd_openvino)

    p = sub.add_parser("tensorrt", help="build a TensorRT engine for an ONNX folder",
                       description=cmd_tensorrt.__doc__)
    p.add_argument("--model", required=True, help="folder written by `export onnx`")
    for axis, (low, high) in (("batch", (1, 32)), ("seq", (1, 512))):
        p.add_argument(f"--min-{axis}", type=int, default=low,
                       help=f"optimization profile: smallest {axis} (default {low})")
        p.add_argument(f"--opt-{axis}", type=int, default=None,
                       help=f"{axis} the kernels are tuned for (default min({_OPT[axis]}, max))")
        p.add_argument(f"--max-{axis}", type=int, default=high,
                       help=f"optimization profile: largest {axis} (default {high})")
    p.add_argument("--no-fp16", action="store_true", help="build an fp32 engine")
    p.add_argument("--workspace-gb", type=float, default=None,
                   help="TensorRT builder workspace in GB (default: TensorRT's)")
    p.add_argument("--device", default=None, help="cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing engine")
    p.set_defaults(func=cmd_tensorrt)
