"""The report's figures as PNG bytes (matplotlib, Agg backend): score against each numeric axis, loss
curves, parameters against score, per-layer probes, training vs validation loss by data size."""

from __future__ import annotations

import io
import statistics
from collections import defaultdict

from .collect import Results, cell_scores, loss_curve, unique
from .stats import mean_std

def _figure():
    import matplotlib  # lazily: matplotlib costs a second to import and only plots need it

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # lazy: optional dependency (or slow), only this path needs it

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def plots(results: Results) -> list[tuple[str, str, bytes]]:
    """(file name, caption, PNG bytes) for each plot the results support."""
    out = []
    for key in _numeric_axis_keys(results):
        png = _plot_score_vs(results, key)
        if png:
            out.append((f"score-vs-{key.replace('.', '-')}.png", f"Downstream score vs {key}", png))
    png = _plot_loss_curves(results)
    if png:
        out.append(("loss-curves.png", "Pretraining loss curves", png))
    png = _plot_params_vs_score(results)
    if png:
        out.append(("parameters-vs-score.png", "Parameters vs downstream score", png))
    png = _plot_loss_gap(results)
    if png:
        out.append(("loss-gap-vs-data-size.png", "Training vs validation loss by pretraining data size "
                    "(a widening gap is memorisation, T5 Table 9)", png))
    for task in unique(t for c in results.cells for t in c.probes):
        png = _plot_probe(results, task)
        if png:
            out.append((f"probe-{task}.png", f"Per-layer probe accuracy: {task}", png))
    return out


def _plot_loss_gap(results: Results) -> bytes | None:
    """Final training and validation loss against the number of distinct pretraining tokens (log scale),
    each point labelled with how often the data was repeated; drawn when cells differ in data size."""
    keys = ("data_tokens", "train_loss", "val_loss")
    points = sorted((float(c.pretrain["data_tokens"]), float(c.pretrain["train_loss"]), float(c.pretrain["val_loss"]),
                     float(c.pretrain.get("repetitions", float("nan"))))
                    for c in results.cells if all(isinstance(c.pretrain.get(k), (int, float)) for k in keys))
    if len({p[0] for p in points}) < 2:
        return None
    plt, fig, ax = _figure()
    xs = [p[0] for p in points]
    ax.plot(xs, [p[1] for p in points], marker="o", label="training loss (last logged window)")
    ax.plot(xs, [p[2] for p in points], marker="s", label="validation loss")
    for x, _train, val, reps in points:
        ax.annotate(f"×{reps:.3g}", (x, val), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("distinct pretraining tokens (data.max_tokens; ×N = repetitions)")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def _numeric_axis_keys(results: Results) -> list[str]:
    keys = unique(k for c in results.cells for k in c.assignment)
    numeric = []
    for key in keys:
        values = [c.assignment[key] for c in results.cells if key in c.assignment]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(set(values)) >= 3:
            numeric.append(key)
    return numeric


def _plot_score_vs(results: Results, key: str) -> bytes | None:
    """One line per (series, other axes' values, task, method): a cell shared by several series appears
    in each of them, so every series' line is complete."""
    series_axes = {s.get("name"): s.get("axes", []) for s in results.index.get("spec", {}).get("series", [])}
    lines = defaultdict(list)
    for name, axes in series_axes.items():
        if not any(key in axis.get("values", {}) for axis in axes):
            continue
        others = [a.get("name") for a in axes if key not in a.get("values", {})]
        for cell in results.cells:
            if name not in cell.series or key not in cell.assignment:
                continue
            for (task, method), seeds in cell.scores.items():
                mean, std = mean_std(list(seeds.values()))
                label = " · ".join([name] + [cell.labels.get(o, "") for o in others] + [task, method])
                lines[label].append((float(cell.assignment[key]), mean, std))
    lines = {k: sorted(v) for k, v in lines.items() if len(v) >= 2}
    if not lines:
        return None
    plt, fig, ax = _figure()
    for name, points in lines.items():
        xs, ys, es = zip(*points)
        ax.errorbar(xs, [100 * y for y in ys], yerr=[100 * e for e in es], marker="o", capsize=3, label=name)
    ax.set_xlabel(key)
    ax.set_ylabel("score ×100 (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def _plot_loss_curves(results: Results) -> bytes | None:
    drawn = loss_curves_figure(results)
    return _png(*drawn[:2]) if drawn else None


def series_colours(plt, count: int) -> list:
    """`count` distinct colours: the qualitative tab10 / tab20 palettes, evenly spaced samples of a
    continuous map beyond 20 series (a palette used modulo its size would give two cells one colour)."""
    if count <= 20:
        palette = plt.get_cmap("tab10" if count <= 10 else "tab20")
        return [palette(i) for i in range(count)]
    return [plt.get_cmap("turbo")(i / (count - 1)) for i in range(count)]


def loss_curves_figure(results: Results):
    """(plt, figure, axes) of every cell's training (solid) and validation (dashed) loss, or None.

    One legend entry and one colour per cell, the legend outside the axes (in as many columns as it
    needs), so it never covers a curve however many cells there are.
    """
    curves = []
    for cell in results.cells:
        if cell.pretrain and cell.pretrain_dir is not None:
            for name, points in loss_curve(cell.pretrain_dir, cell.pretrain).items():
                if len(points) >= 2 and name in ("loss", "train loss", "train_loss", "val_loss", "validation loss",
                                                 "eval loss", "val loss", "eval_loss"):
                    curves.append((cell.label, name, points))
    if not curves:
        return None
    plt, fig, ax = _figure()
    labels = unique(label for label, _name, _points in curves)
    colours = series_colours(plt, len(labels))
    for label, name, points in curves:
        xs, ys = zip(*points)
        validation = "val" in name or "eval" in name
        ax.plot(xs, ys, color=colours[labels.index(label)], linestyle="--" if validation else "-",
                marker="." if len(xs) < 20 else None, label=label if not validation else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (solid: training, dashed: validation)")
    ax.grid(alpha=0.3)
    columns = 1 + len(labels) // 18
    fig.set_size_inches(6.4 + 2.2 * columns, 4.0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncol=columns)
    return plt, fig, ax


def _plot_params_vs_score(results: Results) -> bytes | None:
    points = []
    for cell in results.cells:
        params = cell.pretrain.get("parameters")
        scores = list(cell_scores(cell).values())
        if isinstance(params, (int, float)) and scores:
            points.append((float(params), statistics.fmean(scores), cell.label))
    if len({p for p, _s, _l in points}) < 2:
        return None
    plt, fig, ax = _figure()
    for params, score, label in points:
        ax.scatter([params / 1e6], [100 * score])
        ax.annotate(label, (params / 1e6, 100 * score), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("mean downstream score ×100")
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def _plot_probe(results: Results, task: str) -> bytes | None:
    lines = [(c.label, c.probes[task]) for c in results.cells if task in c.probes and c.probes[task]]
    if not lines:
        return None
    plt, fig, ax = _figure()
    for label, accs in lines:
        ax.plot(range(len(accs)), [100 * a for a in accs], marker="o", label=label)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("probe accuracy ×100")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(plt, fig)
