"""Experiments: specs with axes over any config key, resumable cells, reports, the four studies' presets, the demo.

    from maskbench.experiments import load_spec, run_experiment, write_report
    index = run_experiment(load_spec("mask-rate"), "runs/mask-rate", scale="tiny")

Names are imported lazily so `import maskbench.experiments` (and `maskbench --help`) stays fast.
"""

from __future__ import annotations


from ..lazy import lazy_exports

_EXPORTS = {
    "ExperimentSpec": "spec", "AxisSpec": "spec", "SeriesSpec": "spec", "ScaleSpec": "spec", "ClaimSpec": "spec",
    "Cell": "spec", "load_spec": "spec", "parse_spec": "spec", "list_presets": "spec", "config_hash": "spec",
    "StageDef": "cells", "StageContext": "cells", "StageStore": "cells",
    "run_experiment": "runner", "machine_info": "runner",
    "write_report": "report", "collect": "report", "evaluate_claim": "report", "terminal_table": "report",
    "run_demo": "demo", "STAGES": "stages", "validate_config": "stages",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
