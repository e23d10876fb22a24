"""One self-contained HTML file for the attention views: JavaScript, CSS and data inline, nothing fetched.

The JavaScript and CSS are real files in `assets/` (readable, lintable) and are inlined at render time.
The data travels as JSON in a `<script type="application/json">` block with `<`, `>` and `&` written as
`\\u003c` etc., so no token text can close the block; the page inserts all text with `textContent`, so
text is never parsed as markup. A Content-Security-Policy allows exactly the inlined script and style
(by hash) and no network at all — a page that works offline because it cannot do anything else.

Size: attention probabilities are quantised to one byte per cell (round(p * 255), error <= 0.002),
queries and keys to int8 with one float32 scale per vector, and each array is zlib-deflated when that
helps (the page inflates it with the browser's `DecompressionStream`), then base64-encoded.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import zlib
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import MaskbenchError
from ..io import write_text
# `data` below is an `inspect.attention.AttentionData` (`s` one of its `AttentionSet`s), left unannotated: attention
# imports this module for `AttentionData.to_html`, so the arrow goes that one way only.

#: The views one page can hold, in the order they appear.
VIEWS = ("head", "model", "neuron")


def parse_views(views: Sequence[str] | str) -> tuple[str, ...]:
    """`"all"`, `"head"`, `"head,model"` or a list → the views in display order."""
    if isinstance(views, str):
        views = [v.strip() for v in views.split(",") if v.strip()]
    chosen = set()
    for v in views:
        if v == "all":
            chosen.update(VIEWS)
        elif v in VIEWS:
            chosen.add(v)
        else:
            from ..config import nearest

            hint = nearest(v, (*VIEWS, "all"))
            tail = f"; did you mean '{hint}'?" if hint else ""
            raise MaskbenchError(f"unknown view {v!r}: choose head, model, neuron or all{tail}")
    if not chosen:
        raise MaskbenchError("no view chosen: choose head, model, neuron or all")
    return tuple(v for v in VIEWS if v in chosen)


def _asset(name: str) -> str:
    return resources.files("maskbench.inspect").joinpath("assets", name).read_text(encoding="utf-8")


def _pack(array: np.ndarray, compress: bool) -> dict:
    raw = np.ascontiguousarray(array).tobytes()
    dtype = {np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8", np.dtype("<f4"): "float32"}[array.dtype]
    compression = "none"
    if compress:
        packed = zlib.compress(raw, 3)   # level 6 is 3x slower for 10% less
        if len(packed) < len(raw):
            raw, compression = packed, "deflate"
    return {"dtype": dtype, "compression": compression, "data": base64.b64encode(raw).decode("ascii")}


def quantize_probabilities(attention: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] → uint8 (p * 255, rounded)."""
    return np.clip(np.rint(np.asarray(attention, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def quantize_vectors(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float vectors [..., d] → (int8 values, float32 scale per vector) with x ≈ values * scale."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scale = np.abs(vectors).max(axis=-1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype("<f4")
    values = np.clip(np.rint(vectors / scale[..., None]), -127, 127).astype(np.int8)
    return values, scale


def _set_payload(s, with_qk: bool, compress: bool) -> dict:
    out = {
        "name": s.name, "label": s.label, "layers": s.num_layers, "heads": s.num_heads,
        "queryTokens": s.query_tokens, "keyTokens": s.key_tokens,
        "querySegments": s.query_segments.tolist(), "keySegments": s.key_segments.tolist(),
        "causal": bool(s.causal), "scale": float(s.scale), "note": s.note,
        "attention": _pack(quantize_probabilities(s.attention), compress),
        "headDim": s.head_dim or 0, "queries": None, "keys": None, "allowed": None, "bias": None,
    }
    if s.allowed is not None:
        out["allowed"] = _pack(s.allowed.astype(np.uint8), compress)
    if with_qk:
        for key, arr in (("queries", s.queries), ("keys", s.keys)):
            values, scales = quantize_vectors(arr)
            out[key] = {"values": _pack(values, compress), "scales": _pack(scales, compress)}
        if s.bias is not None:
            out["bias"] = _pack(s.bias.astype("<f4"), compress)
    return out


def payload(data, views: Sequence[str] | str = "all", compress: bool = True) -> dict:
    """The JSON object the page reads (exposed for tests and for other front ends)."""
    chosen = parse_views(views)
    with_qk = "neuron" in chosen
    if with_qk and not data.has_qk:
        raise MaskbenchError("the neuron view needs queries and keys: extract with attention(..., qk=True) "
                             "or choose --view head,model")
    return {"version": 1, "title": data.title, "subtitle": data.subtitle, "views": list(chosen),
            "sets": [_set_payload(s, with_qk, compress) for s in data.sets]}


def script_json(obj) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` survives, so `</script>` cannot appear."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_html(data, views: Sequence[str] | str = "all", *, compress: bool = True) -> str:
    """The complete page as a string: head, model and/or neuron views of every attention set in `data`."""
    script = _asset("views.js")
    style = _asset("views.css")
    for name, text in (("views.js", script), ("views.css", style)):
        if any(tag in text.lower() for tag in ("<script", "</script", "</style", "<!--")):
            raise MaskbenchError(f"assets/{name} contains a script/style tag or '<!--' and cannot be inlined safely")
    body = script_json(payload(data, views, compress))
    csp = (f"default-src 'none'; script-src {_csp_hash(script)}; style-src {_csp_hash(style)}; "
           "img-src data: blob:; connect-src data: blob:; base-uri 'none'; form-action 'none'")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{html.escape(csp, quote=True)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(data.title)} - maskbench attention</title>\n"
        f"<style>{style}</style>\n</head>\n<body>\n"
        "<div id=\"mb-root\"><noscript>The attention views need JavaScript.</noscript></div>\n"
        f"<script type=\"application/json\" id=\"mb-data\">{body}</script>\n"
        f"<script>{script}</script>\n</body>\n</html>\n"
    )


def write_html(data, path: str | os.PathLike, views: Sequence[str] | str = "all",
               compress: bool = True) -> Path:
    """Render and write the page atomically; returns the path."""
    path = Path(path)
    write_text(path, render_html(data, views, compress=compress))
    return path
