"""`maskbench objectives` (list the corruption policies) and `maskbench pmi build` (PMI n-gram vocabulary)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..config import apply_overrides, from_dict
from ..data.tokenizer import SpecialIds
from ..errors import ConfigError


def register(subparsers) -> None:
    listing = subparsers.add_parser("objectives", help="list the corruption objectives, their parameters and defaults",
                                    description="List every objective usable as [objective] name = \"...\".")
    listing.add_argument("name", nargs="?", help="check one objective: validate its parameters and print them")
    listing.add_argument("--json", action="store_true", help="print machine-readable JSON")
    listing.add_argument("--vocab-size", type=int, default=30522,
                         help="vocabulary size assumed when checking (maskbench's special-token layout)")
    from ..arguments import add_examples, add_set_argument  # lazy: `maskbench --help` imports this module

    add_set_argument(listing, "mask_rate=0.4")
    add_examples(listing, "maskbench objectives", "maskbench objectives mlm --set mask_rate=0.4 --set unit=whole_word",
                 "maskbench objectives t5 --json")
    listing.set_defaults(func=_list)

    pmi = subparsers.add_parser("pmi", help="PMI-masking n-gram vocabularies")
    pmi_sub = pmi.add_subparsers(dest="pmi_command", metavar="ACTION")
    build = pmi_sub.add_parser("build", help="build a PMI n-gram vocabulary from token shards",
                               description="Count word n-grams in the shards' training split and keep the "
                                           "highest-PMI ones (Levine et al. 2021) for unit = \"pmi\".")
    build.add_argument("--shards", required=True, help="a folder made by `maskbench prepare`")
    build.add_argument("--out", required=True, help="the JSON vocabulary to write")
    build.add_argument("--max-n", type=int, default=5, help="longest n-gram in words (default 5)")
    build.add_argument("--min-count", type=int, default=10, help="least occurrences of an n-gram (default 10)")
    build.add_argument("--max-ngrams", type=int, default=10000, help="vocabulary size (default 10000)")
    build.add_argument("--split", default="train", help="shard split to count (default train)")
    build.set_defaults(func=_pmi_build)
    pmi.set_defaults(func=lambda args: pmi.print_help() or 2)


def _format_default(value) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)


def _check(args: argparse.Namespace) -> int:
    """Build one objective from `--set objective.KEY=VALUE` with the data stage's special ids and show it."""
    from .registry import build_objective_for_tokenizer, objective_params  # lazy: `maskbench --help` imports this module

    params = apply_overrides({"objective": {}}, args.overrides)
    unknown = [key for key in params if key != "objective"]
    if unknown:
        raise ConfigError(f"--set keys must start with 'objective.', got '{unknown[0]}'")
    ids = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, sentinels=list(range(5, 105)))
    obj = build_objective_for_tokenizer(args.name, ids, args.vocab_size, **params["objective"])
    print(obj.summary())
    for key, value in objective_params(obj).items():
        print(f"    {key} = {value!r}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from .registry import list_objectives  # lazy: `maskbench --help` imports this module

    if args.name:
        return _check(args)
    infos = list_objectives()
    if args.json:
        print(json.dumps([{"name": i.name, "description": i.description,
                           "parameters": [{"name": p.name, "type": p.type, "wiring": p.wiring,
                                           "default": None if p.default is dataclasses.MISSING else p.default}
                                          for p in i.parameters]} for i in infos], indent=2))
        return 0
    for info in infos:
        print(f"{info.name}: {info.description}")
        for p in info.parameters:
            if p.wiring:
                continue
            print(f"    {p.name:<18} {p.type:<34} default {_format_default(p.default)}")
        wiring = [p.name for p in info.parameters if p.wiring]
        print(f"    (from the tokenizer: {', '.join(wiring)})")
    return 0


def _pmi_build(args: argparse.Namespace) -> int:
    from .pmi import PmiBuildConfig, build_pmi_vocabulary, write_pmi_vocabulary  # lazy: `maskbench --help` imports this module

    config = from_dict(PmiBuildConfig, {"max_n": args.max_n, "min_count": args.min_count,
                                        "max_ngrams": args.max_ngrams, "split": args.split})
    vocabulary = build_pmi_vocabulary(args.shards, config)
    write_pmi_vocabulary(vocabulary, args.out)
    sizes = ", ".join(f"{n}-grams: {c}" for n, c in vocabulary["ngrams_per_length"].items())
    print(f"wrote {len(vocabulary['ngrams'])} n-grams from {vocabulary['words_counted']} words to {args.out} ({sizes})")
    return 0
