"""CLI of the models stage: `model list`, `model params NAME…`, `export --to hf`, `import --from HF_DIR`."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from ..config import from_dict
from ..errors import CheckpointError, ConfigError


def register(subparsers) -> None:
    model = subparsers.add_parser("model", help="named model sizes and their parameter counts")
    model_sub = model.add_subparsers(dest="model_command", metavar="WHAT")
    model_sub.required = True
    listing = model_sub.add_parser("list", help="every named size with layers, widths, heads and parameters")
    listing.add_argument("--vocab-size", type=int, default=None,
                         help="count with this vocabulary (default: each size's own, 30522 / 30000 / 32128)")
    listing.set_defaults(func=_list)
    params = model_sub.add_parser("params", help="parameter counts of named sizes or model folders")
    params.add_argument("names", nargs="+", metavar="NAME", help="a named size (see `model list`) or a model folder")
    params.add_argument("--vocab-size", type=int, default=None, help="count with this vocabulary size")
    params.set_defaults(func=_params)

    export = subparsers.add_parser(
        "export", help="write a model as a Hugging Face transformers folder",
        description=textwrap.fill(
            "Write a maskbench model as a Hugging Face transformers folder (config.json, model.safetensors, "
            "tokenizer) that AutoModelForMaskedLM / AutoModelForSequenceClassification / "
            "T5ForConditionalGeneration load. Every weight is accounted for: what HF cannot express (partial "
            "layer sharing, a decoder-only T5) is refused in one line."),
        epilog="examples:\n  maskbench export --checkpoint runs/mlm40 --out hf-model/\n"
               "  maskbench export --checkpoint roberta-run/ --hf-type roberta --out hf-roberta/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("--checkpoint", required=True, metavar="RUN",
                        help="a model folder or a pretraining run (its final model or newest checkpoint)")
    export.add_argument("--to", choices=["hf"], default="hf", help="target format (hf: transformers)")
    export.add_argument("--hf-type", default="auto",
                        choices=["auto", "bert", "albert", "roberta", "xlm-roberta", "electra"],
                        help="transformers family; auto keeps the one the model was imported from, else bert "
                             "(plain) or albert (factorized or shared); a discriminator is electra")
    export.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty or new)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace --out if it holds an earlier export (never another folder)")
    export.set_defaults(func=_export)

    imp = subparsers.add_parser(
        "import", help="read a Hugging Face BERT/ALBERT/RoBERTa/XLM-R/ELECTRA/T5 folder into a maskbench model",
        description=textwrap.fill(
            "Convert a Hugging Face transformers folder into a maskbench model folder (weights checked name by "
            "name, tokenizer files copied). Reads BERT (absolute positions), ALBERT, RoBERTa, XLM-R, ELECTRA "
            "generator and discriminator, and T5; anything else is refused in one line. Every command that "
            "takes --checkpoint also reads such folders directly."),
        epilog="example:\n  maskbench import --from hf-model/ --out imported/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("--from", dest="source", required=True, metavar="HF_DIR", help="a transformers model folder")
    imp.add_argument("--out", required=True, metavar="RUN", help="output model folder (must be empty or new)")
    imp.add_argument("--overwrite", action="store_true",
                     help="replace --out if it holds an earlier imported model (never another folder)")
    imp.set_defaults(func=_import)


def _millions(n: int) -> str:
    return f"{n / 1e6:,.1f}M"


def format_table(rows: list[dict]) -> str:
    """A markdown table of `describe_size` rows."""
    header = ["name", "kind", "layers", "H", "E", "heads", "vocab", "parameters", "non-embedding", "without pooler",
              "exact"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["name"], r["kind"], r["layers"], r["hidden"], r["embedding"], r["heads"], f"{r['vocab']:,}",
                 _millions(r["parameters"]), _millions(r["non_embedding"]), _millions(r["without_pooler"]),
                 f"{r['parameters']:,}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _row(name: str, vocab_size: int | None) -> dict:
    from .checkpoint import model_config_json  # lazy: `maskbench --help` imports this module
    from .encoder import EncoderConfig  # lazy: `maskbench --help` imports this module
    from .encoder_decoder import EncoderDecoderConfig  # lazy: `maskbench --help` imports this module
    from .sizes import NAMED_SIZES, describe_size, named_config  # lazy: `maskbench --help` imports this module

    if name in NAMED_SIZES or not Path(name).exists():
        config = named_config(name, vocab_size=vocab_size)
    else:
        meta = model_config_json(name)
        if "architecture" not in meta:
            from .hf_import import import_hf_state  # lazy: `maskbench --help` imports this module

            from .checkpoint import resolve_model_dir  # lazy: `maskbench --help` imports this module

            arch, cfg, _, _ = import_hf_state(resolve_model_dir(name))
            meta = {"architecture": arch, "config": cfg}
        if not isinstance(meta.get("config"), dict):
            raise CheckpointError(f"{name}: its config.json lacks the 'config' table of a maskbench model folder")
        cls = EncoderDecoderConfig if meta.get("architecture") == "EncoderDecoderModel" else EncoderConfig
        try:
            config = from_dict(cls, {**meta["config"], **({"vocab_size": vocab_size} if vocab_size else {})})
        except ConfigError as e:
            raise ConfigError(f"{name}: {e}") from None
    return describe_size(name, config)


def _list(args: argparse.Namespace) -> int:
    from .sizes import NAMED_SIZES  # lazy: `maskbench --help` imports this module

    print(format_table([_row(name, args.vocab_size) for name in NAMED_SIZES]))
    return 0


def _params(args: argparse.Namespace) -> int:
    print(format_table([_row(name, args.vocab_size) for name in args.names]))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .hf import export_hf  # lazy: `maskbench --help` imports this module

    out = export_hf(args.checkpoint, args.out, hf_type=args.hf_type, overwrite=args.overwrite)
    print(f"exported {args.checkpoint} → {out} (load it with transformers' from_pretrained)", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from .hf import import_to_folder  # lazy: `maskbench --help` imports this module

    out = import_to_folder(args.source, args.out, overwrite=args.overwrite)
    print(f"imported {args.source} → {out} (a maskbench model folder)", file=sys.stderr)
    return 0
