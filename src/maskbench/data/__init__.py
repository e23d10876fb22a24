"""Text in, token shards out: the synthetic language, readers, tokenizers, shards, batches, GLUE tasks.

Names are imported lazily so `import maskbench.data` (and `maskbench --help`) stays fast; each lives in
the submodule named below.
"""

from __future__ import annotations


from ..lazy import lazy_exports

_EXPORTS = {
    "SPECIAL_TOKENS": "tokenizer", "SpecialIds": "tokenizer", "train_tokenizer": "tokenizer",
    "load_tokenizer": "tokenizer", "save_tokenizer": "tokenizer", "special_ids": "tokenizer",
    "tokenizer_hash": "tokenizer",
    "PrepareConfig": "shards", "prepare": "shards", "Shards": "shards", "SplitArrays": "shards",
    "PretrainBatches": "loader",
    "iter_documents": "sources", "resolve_inputs": "sources",
    "generate_corpus": "synth", "write_tasks": "synth", "word_class_sentences": "synth", "CLASS_NAMES": "synth",
    "load_task": "glue", "Task": "glue", "Examples": "glue", "GLUE_TASKS": "glue",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
