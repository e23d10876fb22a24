"""Fine-tuning on GLUE-format tasks: vanilla, Child-Tuning-F/-D, L2-SP and Mixout, over seeds.

`finetune(config, out_dir)` runs every (method, seed) of a `FinetuneConfig` and returns the summary
(mean ± std per method, paired t-test against vanilla). Names are imported lazily so that
`import maskbench.finetune` stays cheap.
"""

from __future__ import annotations


from ..lazy import lazy_exports

_EXPORTS = {
    "finetune": "seeds", "fingerprint": "seeds",
    "FinetuneConfig": "config", "ChildTuningConfig": "config", "L2SPConfig": "config", "MixoutConfig": "config",
    "METHODS": "config", "default_lr": "config", "SIZE_DEFAULTS": "config", "size_defaults": "config",
    "resolve_hyperparameters": "config",
    "ChildTuningF": "child_tuning", "ChildTuningD": "child_tuning", "fisher_information": "child_tuning",
    "top_fraction_masks": "child_tuning",
    "L2SP": "regularizers", "apply_mixout": "regularizers", "remove_mixout": "regularizers",
    "reinit_top_layers": "regularizers",
    "prepare": "loop", "train_seed": "loop", "train_step": "loop", "attach_method": "loop", "MethodHooks": "loop",
    "TaskHead": "loop", "CLASSIFICATION": "loop", "finetune_optimization": "loop",
    "summarize": "summary", "paired_test": "summary",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
