"""Corruption objectives: pure functions (batch of token ids, `torch.Generator`, parameters) → inputs + targets.

```python
from maskbench.objectives import build_objective
obj = build_objective("mlm", vocab_size=V, mask_id=4, special_ids=[0, 1, 2, 3, 4], mask_rate=0.4)
out = obj({"input_ids": ids, "attention_mask": am}, generator=g)   # input_ids, attention_mask, labels
```

Each objective is a dataclass of its parameters (validated in `__post_init__`), callable on a batch. The
registry below maps TOML names (`[objective] name = "..."`) to those classes; `list_objectives()` describes
them and `build_objective_for_tokenizer` fills the token-id wiring from a tokenizer.
"""

from ..lazy import lazy_exports

# The registry imports torch; it is loaded on first use so that `maskbench --help` stays fast.
_EXPORTS = dict.fromkeys({
    "IGNORE_INDEX", "MaskedLM", "SpanCorruption", "compute_input_and_target_lengths", "WIRING_FIELDS",
    "ParameterInfo", "ObjectiveInfo", "objective_names", "list_objectives", "build_objective",
    "build_objective_for_tokenizer", "objective_params", "objective_from_config", "T5_OBJECTIVES",
}, "registry")
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
