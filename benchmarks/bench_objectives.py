"""Corruption objectives vs Hugging Face's `DataCollatorForLanguageModeling`, and vs a bert-tiny step.

    .venv/bin/python benchmarks/bench_objectives.py                 # both allocator settings, 20 repeats
    .venv/bin/python benchmarks/bench_objectives.py --allocator on  # one setting, in this process

Same batches for both sides: WikiText-2 (validation) tokenized by a WordPiece tokenizer trained on it,
packed into B x L windows ([CLS] ... [SEP]), with the offsets and special-token mask HF needs and the word
starts maskbench needs (the same word rule HF uses: a token starts a word when its offset does not touch the
previous token's). HF is timed on `torch_mask_tokens` alone (the masking; its list padding in `__call__` is
left out, which favours HF) and, for reference, on a full collator call. Two timings: `blocks` runs each
contender's calls in a row (warm caches, as collator timings are usually quoted) in rotating rounds;
`alternating` runs every contender once per repeat, in turn, so each call starts with caches holding the
previous contender's work and machine noise hits all of them alike. We report medians. T5 objectives run on raw windows
without special tokens, as the loader gives them. The bert-tiny step is Hugging Face `BertForMaskedLM`
(2 layers, hidden 128, 2 heads) forward + backward + AdamW on the token-MLM batch, with the output
layer applied to the masked positions only (sparse prediction, as maskbench's models and cramming do; a
dense 256 x 512 x vocab logit tensor would take 8 GB and make every objective look free).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = REPO.parent / "shared" / "data" / "corpus" / "wikitext-2-raw" / "wiki.valid.raw"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--step-repeats", type=int, default=5)
    parser.add_argument("--shapes", default="32x128,256x512")
    parser.add_argument("--modes", default="blocks,alternating",
                        help="blocks: each contender's calls in a row (warm caches); alternating: contenders in turn")
    parser.add_argument("--allocator", choices=["on", "off", "both"], default="both",
                        help="maskbench.runtime.tune_allocator() setting (both: one subprocess each)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides (1: the data loader's setting, and stable on a shared box)")
    parser.add_argument("--vocab-size", type=int, default=16000)
    return parser.parse_args()


def build_data(vocab_size: int, work: Path):
    from transformers import PreTrainedTokenizerFast

    from maskbench.data.shards import prepare
    from maskbench.data.tokenizer import special_ids, train_tokenizer
    from maskbench.objectives.pmi import PmiBuildConfig, build_pmi_vocabulary, write_pmi_vocabulary

    tok = train_tokenizer([WIKITEXT], kind="wordpiece", vocab_size=vocab_size, out_path=work / "tokenizer.json")
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                 sep_token="[SEP]", mask_token="[MASK]")
    prepare([WIKITEXT], work / "tokenizer.json", work / "shards", progress=False)
    write_pmi_vocabulary(build_pmi_vocabulary(work / "shards", PmiBuildConfig(min_count=5), progress=False),
                         work / "pmi.json")
    return tok, hf, special_ids(tok)


def make_batches(hf, rows: int, length: int):
    import torch

    text = WIKITEXT.read_text(encoding="utf-8")
    text = " ".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith(" ="))
    size = length * 6
    chunks = [text[i * size:(i + 1) * size] for i in range(rows)]
    enc = hf(chunks, max_length=length, truncation=True, padding="max_length", return_offsets_mapping=True,
             return_special_tokens_mask=True, return_tensors="pt")
    special = enc["special_tokens_mask"].bool()
    offsets = enc["offset_mapping"]
    previous_end = torch.nn.functional.pad(offsets[:, :-1, 1], (1, 0), value=-1)
    previous_special = torch.nn.functional.pad(special[:, :-1], (1, 0), value=False)
    word_starts = ~special & ((offsets[:, :, 0] != previous_end) | previous_special)
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "word_starts": word_starts}
    raw_ids = hf(text[: rows * size * 2], add_special_tokens=False)["input_ids"][: rows * length]
    raw = torch.tensor(raw_ids).view(rows, length)
    raw_batch = {"input_ids": raw, "attention_mask": torch.ones_like(raw)}
    examples = [{"input_ids": ids.tolist(), "special_tokens_mask": s.long().tolist()}
                for ids, s in zip(enc["input_ids"], special)]
    word_examples = [dict(e, offset_mapping=o.tolist()) for e, o in zip(examples, offsets)]
    return batch, raw_batch, enc, examples, word_examples


def median_times(contenders: dict, repeats: int, mode: str = "alternating") -> dict:
    """Median seconds per contender (after one warm-up call each).

    `alternating`: every repeat runs each contender once, in turn, so each call starts with caches full of
    the previous contender's work (as a collator does between training steps). `blocks`: each contender
    runs `repeats` calls in a row, in three rounds of blocks in rotating order (steady state, warm caches:
    how collator timings are usually quoted)."""
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    if mode == "alternating":
        for _ in range(repeats):
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    else:
        names = list(contenders)
        for round_ in range(3):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                fn = contenders[name]
                fn()
                for _ in range(repeats):
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bert_tiny_step_time(vocab: int, batch: dict, objective, repeats: int) -> float:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=512)
    model = BertForMaskedLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)

    def step():
        out = objective(batch, generator=g)
        hidden = model.bert(input_ids=out["input_ids"], attention_mask=out["attention_mask"]).last_hidden_state
        predicted = out["labels"] != -100
        logits = model.cls(hidden[predicted])
        loss = torch.nn.functional.cross_entropy(logits, out["labels"][predicted])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return median_times({"step": step}, repeats)["step"]


def run_one(args: argparse.Namespace) -> str:
    import torch
    import transformers
    from transformers import DataCollatorForLanguageModeling

    from maskbench.objectives import build_objective_for_tokenizer
    from maskbench.runtime import tune_allocator

    tuned = tune_allocator(args.allocator == "on")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    lines = []
    steps = {}
    with tempfile.TemporaryDirectory() as tmp:
        tok, hf, ids = build_data(args.vocab_size, Path(tmp))
        vocab = tok.get_vocab_size()

        def objective(name, **params):
            return build_objective_for_tokenizer(name, ids, vocab, **params)

        hf_token = DataCollatorForLanguageModeling(hf, mlm_probability=0.15, seed=0)
        hf_word = DataCollatorForLanguageModeling(hf, mlm_probability=0.15, whole_word_mask=True, seed=0)
        ours = {
            "mlm token (exact)": objective("mlm"),
            "mlm token (bernoulli)": objective("mlm", sampling="bernoulli"),
            "mlm whole_word": objective("mlm", unit="whole_word"),
            "mlm whole_word (bernoulli)": objective("mlm", unit="whole_word", sampling="bernoulli"),
            "mlm span (SpanBERT)": objective("mlm", unit="span"),
            "mlm pmi": objective("mlm", unit="pmi", pmi_path=str(Path(tmp) / "pmi.json")),
            "mlm 15% corrupt / 30% predict (k=2)": objective("mlm", predict_rate=0.3),
            "mlm 40% / predict 20%": objective("mlm", mask_rate=0.4, predict_rate=0.2),
        }
        t5 = {name: objective(name) for name in ("prefix_lm", "bert_style", "deshuffle", "iid_mask",
                                                 "replace_spans", "drop", "span_corruption")}
        lines.append(f"allocator tuning: {'on' if tuned else 'off'}; torch {torch.__version__}, transformers "
                     f"{transformers.__version__}, {args.threads} threads, vocab {vocab}, median of {args.repeats}")
        lines.append("")
        lines.append("| objective | B x L | timing | maskbench ms | HF masking ms | speed-up vs masking | "
                     "HF collator call ms | speed-up vs collator call | % of bert-tiny step |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for shape, mode in ((shape, mode) for shape in args.shapes.split(",") for mode in args.modes.split(",")):
            rows, length = (int(x) for x in shape.split("x"))
            batch, raw, enc, examples, word_examples = make_batches(hf, rows, length)
            special = enc["special_tokens_mask"]
            offsets = enc["offset_mapping"]
            g = torch.Generator().manual_seed(0)
            contenders = {
                "HF token": lambda: hf_token.torch_mask_tokens(batch["input_ids"].clone(), special_tokens_mask=special),
                "HF token (full collator call)": lambda: hf_token(examples),
                "HF whole_word (full collator call)": lambda: hf_word(word_examples),
                "HF whole_word": lambda: hf_word.torch_mask_tokens(batch["input_ids"].clone(),
                                                                   special_tokens_mask=special, offset_mapping=offsets),
            }
            for name, obj in ours.items():
                contenders[name] = (lambda o: lambda: o(batch, generator=g))(obj)
            for name, obj in t5.items():
                contenders[name] = (lambda o: lambda: o(raw, generator=g))(obj)
            times = median_times(contenders, args.repeats, mode)
            if shape not in steps:
                steps[shape] = bert_tiny_step_time(vocab, batch, ours["mlm token (exact)"], args.step_repeats)
                lines.append(f"| bert-tiny HF training step (reference) | {shape} | | | | | | | "
                             f"{steps[shape] * 1e3:.1f} ms |")
            step = steps[shape]
            for name in list(ours) + list(t5):
                kind = "token" if name.startswith("mlm token") else "whole_word" if name.startswith("mlm whole_word") else None
                cells = []
                for key in (f"HF {kind}", f"HF {kind} (full collator call)"):
                    reference = times.get(key) if kind else None
                    cells += [f"{reference * 1e3:.2f}", f"{reference / times[name]:.1f}x"] if reference else ["", ""]
                ms = times[name] * 1e3
                lines.append(f"| {name} | {shape} | {mode} | {ms:.3f} | {' | '.join(cells)} | "
                             f"{100 * times[name] / step:.2f}% |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.allocator == "both":
        for setting in ("on", "off"):
            env = dict(os.environ, MASKBENCH_MALLOC_TUNING="1" if setting == "on" else "0")
            cmd = [sys.executable, __file__, "--allocator", setting, "--repeats", str(args.repeats),
                   "--step-repeats", str(args.step_repeats), "--shapes", args.shapes,
                   "--threads", str(args.threads), "--vocab-size", str(args.vocab_size), "--modes", args.modes]
            print(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
        return
    print(run_one(args))


if __name__ == "__main__":
    main()
