"""`maskbench finetune --task squad --data DIR`: SQuAD as a `TaskHead` of the one fine-tuning loop.

`prepare_squad` reads and windows both splits (see `squad.py`) and loads the encoder as `prepare` does;
the head is `EncoderForQuestionAnswering`, predictions are answer strings (+ null-score differences),
scored with the official EM / F1 (`squad_metrics.py`). SQuAD 2.0 is recognised by unanswerable questions.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.tokenizer import special_ids
from ..errors import CheckpointError, ConfigError
from ..models.qa import EncoderForQuestionAnswering
from .config import FinetuneConfig, default_lr
from .loop import Prepared, TaskHead, _load_encoder, _resolve_tokenizer
from .squad import SquadSplit, best_answers, encode, find_files, read_squad
from .squad_metrics import squad_scores
from .tasks import batches_in_order

NAMES = ("squad", "squad1", "squad2", "squad-v1.1", "squad-v2.0")


def is_squad(task: str) -> bool:
    return str(task).lower() in NAMES


def _version2(split: SquadSplit) -> bool:
    return any(not e.answers for e in split.examples)


def build(prep: Prepared, seed: int) -> torch.nn.Module:
    model = EncoderForQuestionAnswering(prep.model_config, torch.Generator().manual_seed(seed))
    if prep.encoder_state is not None:
        model.encoder.load_state_dict(prep.encoder_state, strict=True)
    return model


def new_parameters(model: torch.nn.Module) -> dict:
    return {f"qa_outputs.{n}": p for n, p in model.qa_outputs.named_parameters()}


@torch.inference_mode()
def predict(model: torch.nn.Module, prep: Prepared, split: SquadSplit, batch_size: int, device) -> tuple:
    """(answer texts, null-score differences), one per question, in the split's order."""
    was_training = model.training
    model.eval()
    width = int(split.lengths.max())
    starts = np.full((len(split), width), -np.inf, dtype=np.float32)
    ends = starts.copy()
    for rows in batches_in_order(split, batch_size):
        batch = split.batch(rows, prep.pad_id)
        out = model(**{k: v.to(device) for k, v in batch.items() if not k.endswith("_positions")})
        n = out["start_logits"].shape[1]
        starts[rows, :n] = out["start_logits"].cpu().numpy()
        ends[rows, :n] = out["end_logits"].cpu().numpy()
    model.train(was_training)
    squad = prep.task
    threshold = squad.null_score_diff_threshold if _version2(split) else None
    return best_answers(split, starts, ends, squad.n_best, squad.max_answer_length, threshold)


def score(prep: Prepared, predictions: tuple, split: SquadSplit) -> dict:
    texts, diffs = predictions
    return squad_scores(split.labels, texts, diffs if _version2(split) else None)


QUESTION_ANSWERING = TaskHead("question_answering", build, new_parameters, predict, score)


def prepare_squad(cfg: FinetuneConfig) -> Prepared:
    """Read, window and check both splits and load the checkpoint; raises before anything is written."""
    if not cfg.data:
        raise ConfigError("--task squad needs --data DIR holding train-v1.1.json and dev-v1.1.json (or v2.0)", "data")
    if not cfg.checkpoint:
        raise ConfigError("no checkpoint given (--checkpoint RUN_OR_MODEL_DIR or random:SIZE)", "checkpoint")
    train_path, dev_path = find_files(cfg.data)
    train, dev = read_squad(train_path), read_squad(dev_path)
    tokenizer = _resolve_tokenizer(cfg)
    ids = special_ids(tokenizer)
    model_config, state, _ = _load_encoder(cfg, tokenizer.get_vocab_size())
    if model_config.vocab_size != tokenizer.get_vocab_size():
        raise CheckpointError(f"checkpoint {cfg.checkpoint} has a vocabulary of {model_config.vocab_size} tokens "
                              f"but the tokenizer has {tokenizer.get_vocab_size()}; use the tokenizer the "
                              "model was pretrained with")
    if cfg.max_length > model_config.max_positions:
        raise ConfigError(f"max_length {cfg.max_length} exceeds the model's max_positions "
                          f"{model_config.max_positions}", "max_length")
    s = cfg.squad
    splits = {name: encode(tokenizer, examples, cfg.max_length, s.doc_stride, s.max_query_length, ids.cls, ids.sep,
                           ids.pad) for name, examples in (("train", train), ("dev", dev))}
    if cfg.max_train_examples and len(splits["train"]) > cfg.max_train_examples:
        splits["train"] = splits["train"].subset(np.arange(cfg.max_train_examples))
    version = "v2.0" if _version2(splits["dev"]) or _version2(splits["train"]) else "v1.1"
    lr = cfg.lr if cfg.lr is not None else default_lr(model_config.hidden_size)
    return Prepared(task_name=f"squad-{version}", task=s, splits=splits, num_labels=2, label_names=None,
                    metric_names=["exact_match", "f1"], model_config=model_config, encoder_state=state,
                    pad_id=ids.pad, lr=lr, checkpoint=cfg.checkpoint, head=QUESTION_ANSWERING,
                    tokenizer=tokenizer)
