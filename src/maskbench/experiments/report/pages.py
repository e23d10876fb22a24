"""`report.md` (figures as files in report_files/) and a self-contained `report.html` (figures inline as
base64, the stylesheet `report.css` embedded), written from the tables, plots and verdicts."""

from __future__ import annotations

import base64
import html
import os
import re
import time
from importlib import resources
from pathlib import Path

from ...config import dumps_toml
from ...io import write_bytes, write_text
from .claims import evaluate_claims
from .collect import Results, collect
from .plots import plots
from .tables import Table, pretrain_table, probe_table, score_tables, timing_table

FILES = "report_files"


def write_report(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write report.md (with PNGs in report_files/) and a self-contained report.html; return their paths."""
    results = collect(out_dir)
    out = results.out
    verdicts = evaluate_claims(results)
    tables = score_tables(results)
    for extra in (probe_table(results), pretrain_table(results)):
        if extra is not None:
            tables.append(extra)
    timing = timing_table(results)
    figures = plots(results)
    images = _inspection_images(results)
    for name, _caption, data in figures + images:
        write_bytes(out / FILES / name, data)
    md = _markdown(results, verdicts, tables, timing, figures, images)
    page = _html(results, verdicts, tables, timing, figures, images)
    write_text(out / "report.md", md)
    write_text(out / "report.html", page)
    return {"markdown": out / "report.md", "html": out / "report.html"}


def _inspection_images(results: Results) -> list[tuple[str, str, bytes]]:
    images = []
    for cell in results.cells:
        if cell.heads_dir is not None and cell.heads.get("png"):
            path = cell.heads_dir / cell.heads["png"]
            if path.is_file():
                images.append((f"heads-{cell.id}.png", f"Head map: {cell.label}", path.read_bytes()))
    return images


def _attention_links(results: Results) -> list[tuple[str, str]]:
    links = []
    for cell in results.cells:
        if cell.attention_dir is not None and cell.attention.get("html"):
            path = cell.attention_dir / cell.attention["html"]
            if path.is_file():
                links.append((cell.label, os.path.relpath(path, results.out)))
    return links


def _summary_lines(results: Results) -> list[str]:
    index = results.index
    failed = [c for c in results.cells if c.status == "failed"]
    if index.get("finished"):
        when = f"wall time of the last run {index.get('wall_s', 0):.0f} s"
    else:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(index.get("started", 0)))
        when = f"started {started}, still running or stopped without a record; finished stages are shown"
    lines = [f"scale **{index.get('scale')}**, {len(results.cells)} cells, status {index.get('status')}, {when}"]
    if "stages_run" in index:
        lines.append(f"{index['stages_run']} stages run, {index.get('stages_reused', 0)} reused from earlier runs, "
                     f"{index.get('stages_failed', 0)} failed")
    if failed:
        lines.append(f"{len(failed)} failed cell(s): " + "; ".join(f"{_md(c.label)}: {_md(c.error)}" for c in failed))
    return lines


def plain_words(verdicts) -> list[str]:
    """The first screen's summary: what the run found and what it cannot show at this scale, in words."""
    found = [v for v in verdicts if v.verdict in ("agrees", "disagrees")]
    unsettled = [v for v in verdicts if v.verdict.startswith("inconclusive")]
    missing = [v for v in verdicts if v.verdict == "no data"]
    lines = []
    if found:
        lines.append("Found: " + "; ".join(
            (f"{v.claim.text}, as claimed" if v.verdict == "agrees" else f"the opposite of \"{v.claim.text}\"")
            for v in found) + ".")
    else:
        lines.append("Found: none of the claims was settled by this run.")
    if unsettled:
        lines.append("Cannot show at this scale: " + "; ".join(
            v.claim.text + (" (both sides at chance: the models did not learn the task)"
                            if v.verdict.endswith("(both at chance)") else " (within seed noise)")
            for v in unsettled) + ".")
    if missing:
        lines.append("No results yet for: " + "; ".join(v.claim.text for v in missing) + ".")
    return lines


def _machine_lines(index: dict) -> list[str]:
    m = index.get("machine", {})
    return [f"CPU: {m.get('cpu', '?')} ({m.get('cores', '?')} cores)",
            f"torch {m.get('torch', '?')}, Python {m.get('python', '?')}, {m.get('platform', '?')}"
            + (f", GPU {m['gpu']}" if m.get("gpu") else "")]


def _md(text) -> str:
    """Text from a spec (description, labels, claims) as Markdown shows it: no raw HTML (`<script>`,
    `<img onerror>`), no links or images of its own."""
    return html.escape(str(text), quote=False).replace("[", "\\[").replace("]", "\\]")


def _md_table(table: Table) -> str:
    lines = [f"### {_md(table.title)}", "", "| " + " | ".join(_md(h).replace("|", "\\|") for h in table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    for i, row in enumerate(table.rows):
        cells = [f"**{_md(v)}**" if (i, j) in table.bold and v else _md(v).replace("|", "\\|") for j, v in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def _markdown(results, verdicts, tables, timing, figures, images) -> str:
    index = results.index
    info = index.get("spec", {}).get("experiment", {})
    parts = [f"# {_md(info.get('name', 'experiment'))}: report", ""]
    if info.get("description"):
        parts += [_md(info["description"]), ""]
    parts += [f"- {line}" for line in _summary_lines(results)] + [""]
    if verdicts:
        parts += ["## In plain words", ""] + [_md(line) for line in plain_words(verdicts)] + [""]
    if info.get("paper") or info.get("findings") or verdicts:
        parts += ["## What the paper found, and what this run shows", ""]
        if info.get("paper"):
            parts += [f"Paper: {_md(info['paper'])}", ""]
        if info.get("findings"):
            parts += [_md(info["findings"].strip()), ""]
        for v in verdicts:
            parts.append(f"- **{_md(v.verdict)}** — {_md(v.claim.text)}: {_md(v.detail)}")
        if verdicts:
            parts += ["", _verdict_note(index)]
        parts.append("")
    parts += ["## Results", ""]
    for table in tables:
        parts += [_md_table(table), ""]
    if figures:
        parts += ["## Plots", ""]
        for name, caption, _data in figures:
            parts += [f"![{_md(caption)}]({FILES}/{name})", ""]
    links = _attention_links(results)
    if images or links:
        parts += ["## Inside the models", ""]
        for name, caption, _data in images:
            parts += [f"![{_md(caption)}]({FILES}/{name})", ""]
        for label, rel in links:
            parts.append(f"- attention view ({_md(label)}): [{rel}]({rel})")
        parts.append("")
    parts += ["## Machine", ""] + [f"- {line}" for line in _machine_lines(index)] + [""]
    parts += [_md_table(timing), ""]
    parts += ["## Resolved configurations", ""]
    for cell in results.cells:
        parts += [f"<details><summary>{_md(cell.label)} ({cell.id})</summary>", "", "```toml",
                  dumps_toml(cell.config).strip(), "```", "", "</details>", ""]
    return "\n".join(parts) + "\n"


def _verdict_note(index: dict) -> str:
    return (f"Verdicts are computed from this run (scale {index.get('scale')}): *agrees* / *disagrees* need a "
            "paired t-test over seeds at p < 0.05 (single deterministic values such as parameter counts are "
            "compared directly); *inconclusive* means the difference is within seed noise. Tiny models "
            "trained for minutes often do not reproduce effects found at the paper's scale.")


def stylesheet() -> str:
    """The report's CSS, an asset file of the package."""
    return resources.files(__package__).joinpath("report.css").read_text(encoding="utf-8")


def _html_table(table: Table) -> str:
    e = html.escape
    out = [f"<h3>{e(table.title)}</h3>", "<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in table.header) + "</tr>"]
    for i, row in enumerate(table.rows):
        failed = "failed" in row[0] and "✗" in row[0]
        cells = []
        for j, value in enumerate(row):
            text = e(value.replace("**", ""))
            if (i, j) in table.bold:
                cells.append(f'<td class="best"><b>{text}</b></td>')
            else:
                cells.append(f"<td>{text}</td>")
        out.append(f'<tr{" class=failed" if failed else ""}>' + "".join(cells) + "</tr>")
    out.append("</table>")
    if table.note:
        out.append(f"<p><small>{e(table.note)}</small></p>")
    return "\n".join(out)


def _html(results, verdicts, tables, timing, figures, images) -> str:
    e = html.escape
    index = results.index
    info = index.get("spec", {}).get("experiment", {})
    title = f"{info.get('name', 'experiment')}: report"
    body = [f"<h1>{e(title)}</h1>"]
    if info.get("description"):
        body.append(f"<p>{e(info['description'])}</p>")
    body.append("<ul>" + "".join(f"<li>{_inline_md(line)}</li>" for line in _summary_lines(results)) + "</ul>")
    if verdicts:
        body.append("<h2>In plain words</h2>" + "".join(f"<p>{e(line)}</p>" for line in plain_words(verdicts)))
    if info.get("paper") or info.get("findings") or verdicts:
        body.append("<h2>What the paper found, and what this run shows</h2>")
        if info.get("paper"):
            body.append(f"<p>Paper: {e(info['paper'])}</p>")
        if info.get("findings"):
            body.append(f"<p>{e(info['findings'].strip())}</p>")
        if verdicts:
            body.append("<ul>")
            for v in verdicts:
                cls = v.verdict.split(" ")[0]
                body.append(f'<li><span class="verdict {cls}">{e(v.verdict)}</span> {e(v.claim.text)}: {e(v.detail)}</li>')
            body.append("</ul>")
            body.append(f"<p><small>{_inline_md(_verdict_note(index))}</small></p>")
    body.append("<h2>Results</h2>")
    body += [_html_table(t) for t in tables]
    if figures:
        body.append("<h2>Plots</h2>")
        body += [_html_figure(caption, data) for _name, caption, data in figures]
    links = _attention_links(results)
    if images or links:
        body.append("<h2>Inside the models</h2>")
        body += [_html_figure(caption, data) for _name, caption, data in images]
        if links:
            body.append("<p>Attention views (separate self-contained pages in this folder): "
                        + ", ".join(f"<code>{e(rel)}</code> ({e(label)})" for label, rel in links) + "</p>")
    body.append("<h2>Machine</h2><ul>" + "".join(f"<li>{e(line)}</li>" for line in _machine_lines(index)) + "</ul>")
    body.append(_html_table(timing))
    body.append("<h2>Resolved configurations</h2>")
    for cell in results.cells:
        body.append(f"<details><summary>{e(cell.label)} ({e(cell.id)})</summary><pre>{e(dumps_toml(cell.config))}</pre></details>")
    body.append(f"<p><small>Generated by maskbench on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.</small></p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{stylesheet()}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline_md(text: str) -> str:
    """Escape, then turn **bold** and *italic* of our own summary lines into tags."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)


def _html_figure(caption: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
