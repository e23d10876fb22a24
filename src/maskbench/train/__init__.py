"""Pretraining: the loop, optimisers, schedules, checkpoints that resume to the bit, DDP/FSDP2.

```python
from maskbench.train import load_pretrain_config, pretrain
config = load_pretrain_config("configs/bert-tiny-15.toml", ["data.shards=shards/", "budget.steps=200"])
summary = pretrain(config, "runs/tiny-15")          # or resume=True to continue a run
```
"""

from ..lazy import lazy_exports

# Submodules import torch; they load on first use so that `maskbench --help` stays fast.
_EXPORTS = {
    "FORMAT_VERSION": "config",
    "PretrainConfig": "config",
    "load_pretrain_config": "config",
    "parse_duration": "config",
    "TrainingDiverged": "loop",
    "Trainer": "loop",
    "TrainState": "state",
    "WindowStats": "state",
    "Optimization": "optim",
    "build_optimization": "optim",
    "build_optimizer": "optim",
    "Schedule": "optim",
    "pretrain": "loop",
    "read_metrics": "loop",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
