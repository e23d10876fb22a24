"""Looking inside models: attention views (one offline HTML file), head patterns, layer-wise probes.

    from maskbench.inspect import attention, render_html, classify_heads, probe
    data = attention(model, tokenizer, "The cat sat.", pair="It purred.")   # numpy arrays
    open("attention.html", "w").write(render_html(data, "all"))             # or show `data` in a notebook
"""

from .attention import AttentionData, AttentionSet, attention
from .heads import HeadThresholds, PATTERNS, classify_heads, head_patterns, pattern_scores
from .html import render_html, write_html
from .probes import ProbeConfig, probe

__all__ = [
    "AttentionData", "AttentionSet", "attention", "render_html", "write_html",
    "HeadThresholds", "PATTERNS", "classify_heads", "head_patterns", "pattern_scores",
    "ProbeConfig", "probe",
]
