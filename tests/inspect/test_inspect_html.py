"""The page: safe JSON embedding, quantisation bounds, CSP, views, and the size of a BERT-base view."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.errors import MaskbenchError
from maskbench.inspect.html import (payload, parse_views, quantize_probabilities, quantize_vectors, render_html,
                                    script_json)

from inspect_helpers import HOSTILE, random_attention_data


@given(st.recursive(st.text(), lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                    max_leaves=12))
@settings(max_examples=150, deadline=None)
def test_script_json_never_contains_markup_characters_and_round_trips(obj):
    text = script_json(obj)
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text) == obj


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_probabilities_quantise_to_within_half_a_step(values):
    q = quantize_probabilities(np.array(values))
    assert q.dtype == np.uint8
    assert np.abs(q / 255.0 - np.array(values)).max() <= 0.5 / 255 + 1e-6


@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=64))
def test_vectors_quantise_within_half_a_step_of_their_own_scale(values):
    x = np.array(values, dtype=np.float32)[None]
    v, scale = quantize_vectors(x)
    assert v.dtype == np.int8 and scale.dtype == np.float32
    assert np.abs(v * scale[:, None] - x).max() <= 0.5 * scale[0] * 1.001 + 1e-6


def _decode(spec):
    raw = base64.b64decode(spec["data"])
    if spec["compression"] == "deflate":
        raw = zlib.decompress(raw)
    return np.frombuffer(raw, dtype={"uint8": np.uint8, "int8": np.int8, "float32": "<f4"}[spec["dtype"]])


@pytest.mark.parametrize("compress", [True, False])
def test_payload_arrays_decode_to_the_quantised_values(compress):
    data = random_attention_data()
    p = payload(data, "all", compress=compress)
    s, src = p["sets"][0], data.sets[0]
    assert np.array_equal(_decode(s["attention"]), quantize_probabilities(src.attention).ravel())
    values, scales = quantize_vectors(src.queries)
    assert np.array_equal(_decode(s["queries"]["values"]), values.ravel())
    assert np.array_equal(_decode(s["queries"]["scales"]), scales.ravel())
    assert s["queryTokens"] == src.query_tokens and p["views"] == ["head", "model", "neuron"]


def test_page_is_self_contained_and_its_csp_allows_exactly_the_inlined_script():
    page = render_html(random_attention_data())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1))
    assert f"'sha256-{digest}'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_hostile_tokens_and_title_never_appear_raw_in_the_page():
    data = random_attention_data(tokens=HOSTILE * 2, title=HOSTILE[0])
    page = render_html(data)
    assert page.count("<script") == 2 and page.count("</script>") == 2
    for text in HOSTILE[:2]:
        assert text not in page
    assert "<title>&lt;/script&gt;" in page


def test_notebook_repr_is_an_escaped_iframe():
    data = random_attention_data(tokens=HOSTILE * 2, title="<b>x</b>")
    out = data._repr_html_()
    assert out.startswith("<iframe srcdoc=\"") and out.count("<") == 1 + out.count("</iframe>")


def test_views_parse_and_reject_unknown_names():
    assert parse_views("all") == ("head", "model", "neuron")
    assert parse_views("model,head") == ("head", "model")
    with pytest.raises(MaskbenchError, match="did you mean 'neuron'"):
        parse_views("nueron")


def test_neuron_view_without_queries_is_refused_in_one_line():
    data = random_attention_data(qk=False)
    assert "neuron" not in payload(data, "head,model")["views"]
    with pytest.raises(MaskbenchError, match="neuron view needs queries and keys"):
        render_html(data, "neuron")


def test_bert_base_view_of_128_tokens_fits_in_5_mb():
    data = random_attention_data(layers=12, heads=12, length=128, d=64, seed=1)
    size = len(render_html(data, "all").encode())
    assert size <= 5_000_000, size
