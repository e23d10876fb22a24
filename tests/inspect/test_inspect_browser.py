"""The views in a real browser: headless Chromium via the system chromedriver (marked `browser`)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from maskbench.inspect import attention, render_html

from inspect_helpers import HOSTILE, random_attention_data

pytestmark = pytest.mark.browser


def _open(browser, tmp_path, page: str, name: str = "page.html"):
    path = tmp_path / name
    path.write_text(page, encoding="utf-8")
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(path.as_uri())
    deadline = time.monotonic() + 10
    state = None
    while time.monotonic() < deadline:
        state = browser.execute_script("return document.getElementById('mb-root').dataset.ready || null")
        if state:
            break
        time.sleep(0.02)
    assert state == "1", browser.execute_script("return document.getElementById('mb-root').textContent")
    return path


def _severe(browser) -> list:
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _js(browser, code: str, *args):
    return browser.execute_script(code, *args)


def _painted_pixels(browser, selector: str) -> int:
    return _js(browser, """
        const c = document.querySelector(arguments[0]);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;""", selector)


def test_views_load_without_errors_and_draw_every_element(browser, tmp_path):
    data = random_attention_data(layers=3, heads=4, length=12, d=8, pair_at=7)
    _open(browser, tmp_path, render_html(data))
    assert _severe(browser) == []
    counts = _js(browser, """return [
        document.querySelectorAll('.mb-left .mb-token').length, document.querySelectorAll('.mb-right .mb-token').length,
        document.querySelectorAll('.mb-thumb').length, document.querySelectorAll('.mb-swatch').length,
        document.querySelectorAll('.mb-neuron-key').length]""")
    assert counts == [12, 12, 12, 4, 12]
    assert _painted_pixels(browser, ".mb-lines") > 500
    assert _painted_pixels(browser, ".mb-thumb") > 50
    assert _painted_pixels(browser, ".mb-k") > 50


def test_screenshot_of_the_head_view_is_not_blank(browser, tmp_path):
    from PIL import Image

    _open(browser, tmp_path, render_html(random_attention_data(length=10)))
    png = browser.find_element("css selector", ".mb-head-body").screenshot_as_png
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    assert pixels.std() > 10 and (pixels < 240).mean() > 0.05, ((pixels < 240).mean(), pixels.shape)


def test_clicking_a_thumbnail_switches_layer_and_head_everywhere(browser, tmp_path):
    _open(browser, tmp_path, render_html(random_attention_data(layers=3, heads=4)))
    browser.find_element("css selector", '.mb-thumb[data-layer="2"][data-head="1"]').click()
    state = _js(browser, """const r = document.getElementById('mb-root'); return [
        r.dataset.layer, r.dataset.heads, document.querySelector('.mb-layer-select').value,
        document.querySelector('.mb-neuron-head-select').value,
        Array.from(document.querySelectorAll('.mb-swatch')).map(b => b.classList.contains('mb-off')),
        document.querySelector('.mb-focus-caption').textContent,
        document.querySelectorAll('.mb-thumb.mb-selected').length,
        document.querySelector('.mb-thumb.mb-selected').dataset.head]""")
    assert state[:4] == ["2", "1", "2", "1"]
    assert state[4] == [True, False, True, True]
    assert "layer 2" in state[5] and "head 1" in state[5]
    assert state[6:] == [1, "1"]
    assert _painted_pixels(browser, ".mb-focus-canvas") > 10
    assert _severe(browser) == []


def test_hover_isolates_a_tokens_lines_and_the_sentence_filter_hides_tokens(browser, tmp_path):
    _open(browser, tmp_path, render_html(random_attention_data(length=10, pair_at=6)))
    everything = _painted_pixels(browser, ".mb-lines")
    _js(browser, "document.querySelectorAll('.mb-left .mb-token')[3].dispatchEvent(new MouseEvent('mouseenter'))")
    one = _painted_pixels(browser, ".mb-lines")
    shaded = _js(browser, "return Array.from(document.querySelectorAll('.mb-right .mb-token')).filter(t => t.style.backgroundColor).length")
    assert 0 < one < everything and shaded > 0
    _js(browser, "const s = document.querySelector('.mb-filter-select'); s.value = 'ab'; s.dispatchEvent(new Event('change'))")
    sides = _js(browser, "return [document.querySelectorAll('.mb-left .mb-token').length, document.querySelectorAll('.mb-right .mb-token').length]")
    assert sides == [6, 4]


def test_neuron_view_rebuilds_the_models_probabilities(browser, tmp_path):
    _open(browser, tmp_path, render_html(random_attention_data(length=9, d=16)))
    _js(browser, "document.querySelectorAll('.mb-left .mb-token')[4].click()")
    rows = _js(browser, """return Array.from(document.querySelectorAll('.mb-prob-text')).map(e => +e.textContent)""")
    model = _js(browser, """const g = document.querySelector('.mb-neuron-grid');
        return Array.from(g.children).filter(e => e.style.gridColumn.startsWith('7')).map(e => +e.textContent)""")
    assert len(rows) == len(model) == 9
    assert abs(sum(rows) - 1) < 0.01
    assert np.abs(np.array(rows) - np.array(model)).max() < 0.02   # int8 q/k and uint8 attention
    assert _js(browser, "return document.querySelector('.mb-neuron-query-select').value") == "4"


def test_hostile_text_runs_nothing_and_displays_literally(browser, tmp_path):
    tokens = HOSTILE + ["plain"]
    data = random_attention_data(tokens=tokens, title=HOSTILE[0] + HOSTILE[1])
    _open(browser, tmp_path, render_html(data))
    assert _js(browser, "return typeof window.__pwned") == "undefined"
    shown = _js(browser, "return Array.from(document.querySelectorAll('.mb-left .mb-token')).map(t => t.textContent)")
    assert shown == tokens
    assert _js(browser, "return document.querySelector('.mb-title').textContent") == HOSTILE[0] + HOSTILE[1]
    assert _js(browser, "return document.querySelectorAll('img').length") == 0
    assert _severe(browser) == []


def test_real_encoder_with_hostile_input_text(browser, tmp_path, encoder_dir, tokenizer):
    from maskbench.models import load_model

    text = "the cat </script><script>window.__pwned=1</script> sat"
    data = attention(load_model(encoder_dir), tokenizer, text, pair="<b>dog</b> & \"mat\"")
    _open(browser, tmp_path, render_html(data))
    assert _js(browser, "return typeof window.__pwned") == "undefined"
    assert _js(browser, "return document.querySelector('.mb-title').textContent") == data.title
    assert _js(browser, "return document.querySelectorAll('.mb-left .mb-token').length") == len(data.sets[0].query_tokens)
    assert _severe(browser) == []


def test_encoder_decoder_page_switches_between_its_three_attentions(browser, tmp_path, t5_dir, tokenizer):
    from maskbench.models import load_model

    data = attention(load_model(t5_dir), tokenizer, "the cat sat on the mat .", pair="a dog ran")
    enc, dec = len(data["encoder"].query_tokens), len(data["decoder"].query_tokens)
    _open(browser, tmp_path, render_html(data))
    assert _js(browser, "return document.querySelectorAll('.mb-set-select option').length") == 3
    _js(browser, "const s = document.querySelector('.mb-set-select'); s.value = '2'; s.dispatchEvent(new Event('change'))")
    sides = _js(browser, "return [document.querySelectorAll('.mb-left .mb-token').length, document.querySelectorAll('.mb-right .mb-token').length, document.querySelectorAll('.mb-thumb').length]")
    assert sides == [dec, enc, 2 * 4]
    assert _severe(browser) == []


def test_uncompressed_page_draws_too(browser, tmp_path):
    data = random_attention_data(layers=2, heads=2, length=7)
    page = render_html(data, "all", compress=False)
    assert '"compression":"deflate"' not in page
    _open(browser, tmp_path, page)
    assert _js(browser, "return document.querySelectorAll('.mb-thumb').length") == 4
    assert _painted_pixels(browser, ".mb-lines") > 100
    assert _severe(browser) == []


def test_notebook_output_renders_twice_on_one_page(browser, tmp_path):
    data = random_attention_data(layers=2, heads=2, length=6, tokens=HOSTILE + ["x"])
    host = "<!DOCTYPE html><html><body>" + data._repr_html_() + data._repr_html_() + "</body></html>"
    (tmp_path / "nb.html").write_text(host, encoding="utf-8")
    browser.get((tmp_path / "nb.html").as_uri())
    frames = browser.find_elements("css selector", "iframe")
    assert len(frames) == 2
    for frame in frames:
        browser.switch_to.frame(frame)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _js(browser, "return document.getElementById('mb-root') && document.getElementById('mb-root').dataset.ready"):
            time.sleep(0.02)
        assert _js(browser, "return document.getElementById('mb-root').dataset.ready") == "1"
        assert _js(browser, "return Array.from(document.querySelectorAll('.mb-left .mb-token')).map(t => t.textContent)") == HOSTILE + ["x"]
        browser.switch_to.default_content()
    assert _js(browser, "return typeof window.__pwned") == "undefined"
    assert _severe(browser) == []
