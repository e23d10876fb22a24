"""Reports: `report.md` and a self-contained `report.html` from an experiment folder.

Everything is computed from the folder (the index, the cells and the stage records), so a report can be
rebuilt at any time, also for an interrupted or partly failed experiment. By concern:
`collect` (folder → results), `stats` (mean ± std, formatting), `claims` (verdicts from a paired test over
seeds), `tables`, `plots` (matplotlib PNGs), `pages` (Markdown and HTML; the stylesheet is `report.css`).
"""

from .claims import Verdict, evaluate_claim, evaluate_claims
from .collect import CellResult, Results, cell_scores, collect, loss_curve
from .pages import FILES, plain_words, write_report
from .plots import plots
from .stats import fmt_mean_std, mean_std
from .tables import Table, plain_table, pretrain_table, probe_table, score_tables, terminal_table, timing_table

__all__ = ["FILES", "CellResult", "Results", "Table", "Verdict", "cell_scores", "collect", "evaluate_claim", "evaluate_claims",
           "fmt_mean_std", "loss_curve", "mean_std", "plots", "plain_words", "pretrain_table", "probe_table", "score_tables",
           "terminal_table", "timing_table", "write_report"]
