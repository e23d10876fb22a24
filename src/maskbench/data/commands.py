"""CLI of the data stage: `corpus synth`, `corpus synth-tasks`, `tokenizer train`, `prepare`, `shards`.

Handlers import numpy/tokenizers inside, so `maskbench --help` stays fast; each calls one Python function
(the same one the demo and experiments call directly) and prints a one-paragraph summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..config import load_config
from .synth import PROFILES
from .tokenizer import special_ids, tokenizer_hash, train_tokenizer


def register(subparsers) -> None:
    from ..arguments import add_examples, add_set_argument  # lazy: `maskbench --help` imports this module

    corpus = subparsers.add_parser("corpus", help="write the built-in synthetic corpus and tasks")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", metavar="WHAT")
    corpus_sub.required = True
    synth = corpus_sub.add_parser("synth", help="generate the synthetic English-like corpus (text + latent labels)")
    synth.add_argument("--out", required=True, help="output folder (corpus.txt, labels.jsonl, meta.json)")
    synth.add_argument("--tokens", type=int, default=2_000_000, help="about this many words (default 2,000,000)")
    synth.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    synth.add_argument("--language", type=int, default=0,
                       help="lexicon seed; keep it equal between a corpus and its tasks (default 0)")
    synth.add_argument("--profile", default="standard", choices=tuple(PROFILES),
                       help="variant of the language: standard, or compact (a small lexicon a tiny model learns; "
                            "the demo's); keep it equal between a corpus and its tasks (default standard)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing synthetic corpus in --out")
    synth.set_defaults(func=_corpus_synth)

    tasks = corpus_sub.add_parser("synth-tasks", help="write GLUE-format tasks built on the synthetic language")
    tasks.add_argument("--out", required=True, help="output folder (one sub-folder per task)")
    tasks.add_argument("--seed", type=int, default=0)
    tasks.add_argument("--language", type=int, default=0)
    tasks.add_argument("--train", type=int, default=2000, help="training examples per task (default 2000)")
    tasks.add_argument("--dev", type=int, default=500)
    tasks.add_argument("--test", type=int, default=500)
    tasks.add_argument("--profile", default="standard", choices=tuple(PROFILES),
                       help="variant of the language, as for `corpus synth` (default standard)")
    tasks.add_argument("--overwrite", action="store_true")
    tasks.set_defaults(func=_corpus_tasks)

    tok = subparsers.add_parser("tokenizer", help="train a tokenizer")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", metavar="WHAT")
    tok_sub.required = True
    train = tok_sub.add_parser("train", help="train a WordPiece, Unigram or BPE tokenizer on text files")
    train.add_argument("--input", nargs="+", required=True, metavar="PATH",
                       help="text/JSONL files (.gz too), folders, globs, datasets folders or hf:NAME")
    train.add_argument("--kind", default="wordpiece", help="wordpiece | unigram | bpe (default wordpiece)")
    train.add_argument("--vocab-size", type=int, default=8000)
    train.add_argument("--out", required=True, help="the tokenizer.json to write")
    train.add_argument("--cased", action="store_true", help="keep case (default: lowercase everything)")
    train.add_argument("--min-frequency", type=int, default=2)
    train.add_argument("--text-field", default="text", help="JSONL/dataset field holding the text")
    train.set_defaults(func=_tokenizer_train)

    prep = subparsers.add_parser("prepare", help="tokenize text into packed, memory-mapped shards")
    prep.add_argument("--input", nargs="+", required=True, metavar="PATH",
                      help="text/JSONL files (.gz too), folders, globs, datasets folders or hf:NAME")
    prep.add_argument("--tokenizer", required=True, help="tokenizer.json, BERT vocab.txt, or a folder with one")
    prep.add_argument("--out", required=True, help="output folder for the shards")
    prep.add_argument("--config", help="TOML file with PrepareConfig fields")
    prep.add_argument("--seq-len", type=int, help="default sequence length recorded for loaders (128)")
    prep.add_argument("--val-fraction", type=float, help="share of documents for validation (0.05)")
    prep.add_argument("--seed", type=int, help="seed of the train/validation split (0)")
    prep.add_argument("--sentences", choices=["lines", "punctuation"],
                      help="a sentence is a line (default) or ends at . ! ? (for hard-wrapped books)")
    prep.add_argument("--text-field", help="JSONL/dataset field holding the text (text)")
    prep.add_argument("--overwrite", action="store_true", help="replace existing shards in --out")
    add_set_argument(prep, "seq_len=256")
    add_examples(prep, "maskbench prepare --input corpus/ --tokenizer tok.json --seq-len 128 --out shards/",
                 "maskbench prepare --input 'books/*.txt.gz' --tokenizer vocab.txt --out shards/ --set seq_len=512")
    prep.set_defaults(func=_prepare)

    shards = subparsers.add_parser("shards", help="summarise (and verify) a prepared shard folder")
    shards.add_argument("dir")
    shards.add_argument("--verify", action="store_true", help="check every file's sha256 against the manifest")
    shards.set_defaults(func=_shards)


def _corpus_synth(args: argparse.Namespace) -> int:
    from .synth import generate_corpus  # lazy: `maskbench --help` imports this module

    path = generate_corpus(args.out, tokens=args.tokens, seed=args.seed, language=args.language,
                           overwrite=args.overwrite, profile=args.profile)
    meta = json.loads((path.parent / "meta.json").read_text(encoding="utf-8"))
    print(f"wrote {path}: {meta['words']:,} words in {meta['sentences']:,} sentences, "
          f"{meta['documents']:,} documents; latent labels in {path.parent / 'labels.jsonl'}")
    return 0


def _corpus_tasks(args: argparse.Namespace) -> int:
    from .synth import write_tasks  # lazy: `maskbench --help` imports this module

    folders = write_tasks(args.out, seed=args.seed, language=args.language, train=args.train, dev=args.dev,
                          test=args.test, overwrite=args.overwrite, profile=args.profile)
    for name, folder in folders.items():
        print(f"{name}: {folder} ({args.train} train / {args.dev} dev / {args.test} test)")
    return 0


def _tokenizer_train(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    tok = train_tokenizer(args.input, kind=args.kind, vocab_size=args.vocab_size, out_path=args.out,
                          lowercase=not args.cased, min_frequency=args.min_frequency, text_field=args.text_field,
                          show_progress=sys.stderr.isatty())
    ids = special_ids(tok)
    print(f"wrote {args.out}: {args.kind}, {tok.get_vocab_size():,} tokens (pad={ids.pad} unk={ids.unk} "
          f"cls={ids.cls} sep={ids.sep} mask={ids.mask}, {len(ids.sentinels)} sentinels), "
          f"hash {tokenizer_hash(tok)[:12]}, {time.perf_counter() - start:.1f} s")
    return 0


def prepare_config_from_args(args: argparse.Namespace):
    """PrepareConfig from --config, then explicit flags, then --set (the last word wins)."""
    from .shards import PrepareConfig  # lazy: `maskbench --help` imports this module

    flags = {key: getattr(args, key, None) for key in ("seq_len", "val_fraction", "seed", "sentences", "text_field")}
    return load_config(PrepareConfig, args.config, args.overrides, flags=flags)


def _prepare(args: argparse.Namespace) -> int:
    from .shards import prepare  # lazy: `maskbench --help` imports this module

    config = prepare_config_from_args(args)
    start = time.perf_counter()
    manifest = prepare(args.input, args.tokenizer, args.out, config=config, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    _print_manifest(args.out, manifest)
    print(f"({seconds:.1f} s)")
    return 0


def _print_manifest(root, manifest: dict) -> None:
    splits = manifest["splits"]
    parts = [f"{name}: {s['tokens']:,} tokens, {s['sentences']:,} sentences, {s['documents']:,} documents"
             for name, s in splits.items()]
    print(f"{root}: {'; '.join(parts)}; {manifest['dtype']}, vocabulary {manifest['vocab_size']:,}, "
          f"tokenizer {manifest['tokenizer_hash'][:12]}")


def _shards(args: argparse.Namespace) -> int:
    from .shards import Shards  # lazy: `maskbench --help` imports this module

    shards = Shards.open(args.dir, verify=args.verify)
    _print_manifest(args.dir, shards.manifest)
    if args.verify:
        print("all sha256 hashes match the manifest")
    return 0

