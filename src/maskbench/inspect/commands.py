"""`maskbench attention`, `maskbench heads`, `maskbench probe`: look inside a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import MaskbenchError

HEADS_KIND = "heads result"
PROBE_KIND = "probe result"


def register(subparsers) -> None:
    from ..arguments import add_examples, add_set_argument

    att = subparsers.add_parser(
        "attention", help="interactive attention views in one offline HTML file",
        description="Write a self-contained HTML page (no network needed) with the head view, the model view "
                    "(layer x head thumbnails) and the neuron view (q, k, q*k, q.k, softmax) of a model on a text.")
    _checkpoint_args(att)
    att.add_argument("--text", required=True, help="the text (sentence A)")
    att.add_argument("--pair", default=None,
                     help="sentence B for an encoder; the decoder's text for an encoder-decoder model "
                          "(default: the model's own greedy output)")
    att.add_argument("--view", default="all", help="head, model, neuron, all, or a comma list (default all)")
    att.add_argument("--max-length", type=int, default=None, help="truncate the input to this many tokens")
    att.add_argument("--no-compress", action="store_true",
                     help="store arrays uncompressed (bigger file; for browsers without DecompressionStream)")
    att.add_argument("--out", default="attention.html", help="the HTML file to write (default attention.html)")
    att.set_defaults(func=_attention)

    heads = subparsers.add_parser(
        "heads", help="classify every attention head by its pattern over real text",
        description="Average each head's attention over many inputs and label it next / previous token, same "
                    "token, same word in the other sentence, [CLS], [SEP], punctuation, broad or none. Writes "
                    "heads.json and heads.png; thresholds: --set next=0.4 etc. (see docs/inspect.md).")
    _checkpoint_args(heads)
    heads.add_argument("--input", required=True, help="text file(s): one sentence or paragraph per line; JSONL too")
    heads.add_argument("--samples", type=int, default=500, help="inputs drawn at random (default 500)")
    heads.add_argument("--pairs", action="store_true",
                       help="feed consecutive sentences of a document as pairs (measures other_sentence)")
    heads.add_argument("--max-length", type=int, default=128, help="tokens per input (default 128)")
    heads.add_argument("--batch-size", type=int, default=16)
    heads.add_argument("--seed", type=int, default=0)
    _out_args(heads, "heads")
    add_set_argument(heads, "next=0.4")
    add_examples(heads, "maskbench heads --checkpoint runs/mlm40 --input corpus/ --samples 200 --out heads/",
                 "maskbench heads --checkpoint runs/mlm40 --input corpus/ --pairs --out heads-pairs/")
    heads.set_defaults(func=_heads)

    pr = subparsers.add_parser(
        "probe", help="layer-wise linear probes on frozen hidden states",
        description="Train a linear probe per layer (embeddings, then each layer) and plot validation accuracy. "
                    "Tasks: token_identity (input ids at masked vs unmasked positions), replacement (the original "
                    "token at [MASK]ed, randomly replaced, kept and unselected positions, per --set replace=...: "
                    "Wettig et al.'s analysis of 80-10-10), word_class (the "
                    "synthetic language's latent classes), labels (--labels FILE). Settings: --set epochs=30 etc.")
    _checkpoint_args(pr)
    pr.add_argument("--compare", default=None, help="a second model/run, probed the same way and drawn in the same plot")
    pr.add_argument("--compare-tokenizer", default=None, help="tokenizer of --compare (default: found beside it)")
    pr.add_argument("--task", default=None, help="token_identity, replacement, word_class or labels")
    pr.add_argument("--input", default=None, help="text file(s) for token_identity and replacement")
    pr.add_argument("--labels", default=None, help='JSONL of {"words": [...], "labels": [...]} (task labels)')
    pr.add_argument("--samples", type=int, default=None, help="sentences to use (default 1000)")
    pr.add_argument("--seed", type=int, default=None)
    _out_args(pr, "probe")
    add_set_argument(pr, "epochs=30")
    add_examples(pr, "maskbench probe --checkpoint runs/mlm40 --compare runs/mlm15 --task word_class --out probe/",
                 "maskbench probe --checkpoint runs/mlm40 --task token_identity --input corpus/ --out probe-ids/")
    pr.set_defaults(func=_probe)


def _out_args(parser: argparse.ArgumentParser, command: str) -> None:
    """`--out` (a folder maskbench claims) and `--overwrite` (only an earlier result of this command)."""
    parser.add_argument("--out", required=True, help="output folder (must be empty or new)")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace --out if it holds an earlier `{command}` result (never another folder)")


def _checkpoint_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a model folder, a pretraining run, or a Hugging Face folder")
    parser.add_argument("--tokenizer", default=None, help="tokenizer.json / vocab.txt / folder (default: found beside the model)")


def find_tokenizer(checkpoint: str | Path, explicit: str | Path | None = None):
    """The tokenizer of a model: `--tokenizer`, else tokenizer.json / vocab.txt in the model folder or its run."""
    from ..data.tokenizer import load_tokenizer
    from ..errors import CheckpointError
    from ..models.checkpoint import resolve_model_dir

    if explicit is not None:
        return load_tokenizer(explicit)
    path = Path(checkpoint)
    resolved = resolve_model_dir(path)
    candidates = [resolved, path, path / "model", resolved.parent.parent / "model", resolved.parent.parent]
    for folder in candidates:
        for name in ("tokenizer.json", "vocab.txt"):
            if (folder / name).is_file():
                return load_tokenizer(folder / name)
    raise CheckpointError(f"no tokenizer.json or vocab.txt beside {checkpoint}; pass --tokenizer PATH")


def _load(checkpoint: str, tokenizer: str | None):
    """The model and its tokenizer, checked to belong together (as `finetune` checks them)."""
    from ..data.tokenizer import check_tokenizer_fits
    from ..models import load_model

    model = load_model(checkpoint)
    found = find_tokenizer(checkpoint, tokenizer)
    check_tokenizer_fits(found, model.config.vocab_size, checkpoint)
    return model, found


def _attention(args: argparse.Namespace) -> int:
    import sys

    from .attention import attention
    from .html import parse_views, write_html

    views = parse_views(args.view)
    model, tokenizer = _load(args.checkpoint, args.tokenizer)
    data = attention(model, tokenizer, args.text, pair=args.pair, max_length=args.max_length, qk="neuron" in views)
    path = write_html(data, args.out, views, compress=not args.no_compress)
    size = path.stat().st_size
    sets = ", ".join(f"{s.name} {s.num_layers}x{s.num_heads}" for s in data.sets)
    print(f"wrote {path} ({size / 1e6:.2f} MB; {sets}; {len(data.sets[0].query_tokens)} tokens; views: {', '.join(views)})",
          file=sys.stderr)
    return 0


def _read_inputs(paths: list[str], samples: int, seed: int, pairs: bool) -> tuple[list[str], list[str] | None]:
    """Up to `samples` inputs drawn at random (seeded) from the files; pairs = consecutive sentences."""
    import numpy as np

    from ..data.sources import iter_documents
    from ..errors import DataError

    cap = max(200_000, 20 * samples)
    items = []
    for doc in iter_documents(paths):
        if pairs:
            items.extend(zip(doc[:-1], doc[1:]))
        else:
            items.extend((s, None) for s in doc)
        if len(items) >= cap:
            break
    if not items:
        raise DataError(f"no {'sentence pairs' if pairs else 'text'} found in {', '.join(paths)}"
                        + ("; --pairs needs documents of several lines" if pairs else ""))
    rng = np.random.default_rng(seed)
    if len(items) > samples:
        items = [items[i] for i in np.sort(rng.choice(len(items), size=samples, replace=False))]
    texts = [a for a, _ in items]
    return texts, ([b for _, b in items] if pairs else None)


def _heads(args: argparse.Namespace) -> int:
    from ..config import check_range, load_config
    from ..io import atomic_dir, claim_out_dir, write_json, write_text
    from ..runtime import progress_enabled
    from .heads import HeadThresholds, head_patterns, plot_heads

    thresholds = load_config(HeadThresholds, None, args.overrides)
    for flag, value in (("samples", args.samples), ("max_length", args.max_length), ("batch_size", args.batch_size)):
        check_range(flag, value, 1)  # before the model loads (head_patterns checks them too)
    claim_out_dir(args.out, HEADS_KIND, args.overwrite, inputs=[args.checkpoint, args.input])
    model, tokenizer = _load(args.checkpoint, args.tokenizer)
    texts, pairs = _read_inputs([args.input], args.samples, args.seed, args.pairs)
    report = head_patterns(model, tokenizer, texts, pairs, thresholds=thresholds, batch_size=args.batch_size,
                           max_length=args.max_length, progress=progress_enabled())
    out = Path(args.out)
    info = report.to_json()
    info["checkpoint"] = str(args.checkpoint)
    info["input"] = str(args.input)
    table = report.table()
    with atomic_dir(out, kind=HEADS_KIND) as tmp:
        write_json(tmp / "heads.json", info)
        plot_heads(report, tmp / "heads.png", title=f"head patterns: {Path(args.checkpoint).name}")
        write_text(tmp / "heads.md", table + "\n")
    print(table)
    print(f"\nwrote {out / 'heads.json'} and {out / 'heads.png'} ({report.scores.samples} inputs, "
          f"{report.scores.tokens} tokens)")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..io import atomic_dir, claim_out_dir, write_json, write_text
    from .probes import ProbeConfig, holdout_note, plot_probes, probe, read_labels, table

    base = {}
    if args.task is not None:
        base["task"] = args.task
    elif args.labels is not None:
        base["task"] = "labels"
    if args.samples is not None:
        base["samples"] = args.samples
    if args.seed is not None:
        base["seed"] = args.seed
    config = load_config(ProbeConfig, None, args.overrides, base=base)
    texts = words = labels = None
    if config.task in ("token_identity", "replacement"):
        if args.input is None:
            raise MaskbenchError(f"--task {config.task} needs --input PATH (text to probe)")
        texts, _ = _read_inputs([args.input], config.samples, config.seed, False)
    elif config.task == "labels":
        if args.labels is None:
            raise MaskbenchError("--task labels needs --labels FILE (JSONL with 'words' and 'labels')")
        words, labels = read_labels(args.labels)
    claim_out_dir(args.out, PROBE_KIND, args.overwrite,
                  inputs=[args.checkpoint, args.compare, args.input, args.labels])
    runs = [(args.checkpoint, args.tokenizer)]
    if args.compare:
        runs.append((args.compare, args.compare_tokenizer))
    results = []
    names = _names([r[0] for r in runs])
    loaded = [_load(checkpoint, tok) for checkpoint, tok in runs]  # a bad --compare stops before any probing
    for (checkpoint, _tok), (model, tokenizer), name in zip(runs, loaded, names):
        result = probe(model, tokenizer, config, texts=texts, words=words, labels=labels, name=name)
        result.meta["checkpoint"] = str(checkpoint)
        results.append(result)
    out = Path(args.out)
    text = table(results) + "\n\n" + holdout_note(results[0])
    with atomic_dir(out, kind=PROBE_KIND) as tmp:
        write_json(tmp / "probe.json", {"task": config.task, "runs": [r.to_json() for r in results]})
        plot_probes(results, tmp / "probe.png")
        write_text(tmp / "probe.md", text + "\n")
    print(text)
    print(f"\nwrote {out / 'probe.json'} and {out / 'probe.png'}")
    return 0


def _names(paths: list[str]) -> list[str]:
    """Short distinct labels for the plot: the folder names, made unique with their parents if needed."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{n} ({i + 1})" for i, n in enumerate(paths)]
