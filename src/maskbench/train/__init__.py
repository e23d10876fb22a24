"""Pretraining: the loop, optimisers, schedules, checkpoints that resume to the bit, DDP/FSDP2.

```python
from maskbench.train import load_pretrain_config, pretrain
config = load_pretrain_config("configs/bert-tiny-15.toml", ["data.shards=shards/", "budget.steps=200"])
summary = pretrain(config, "runs/tiny-15")          # or resume=True to continue a run
```
"""

from .config import FORMAT_VERSION, PretrainConfig, load_pretrain_config, parse_duration
from .loop import TrainingDiverged, pretrain, read_metrics

__all__ = ["PretrainConfig", "load_pretrain_config", "pretrain", "read_metrics", "parse_duration",
           "TrainingDiverged", "FORMAT_VERSION"]
