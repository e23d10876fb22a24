"""Attention views at BERT-base scale: file size and headless render time for 12 layers x 12 heads x 128 tokens.

    .venv/bin/python benchmarks/bench_inspect.py [--repeats 5]

Three inputs of 128 tokens:
- `bert-base (random init)`: a real maskbench BERT-base encoder with random weights, through
  `maskbench.inspect.attention` (its attention is close to uniform, which compresses well);
- `peaky (synthetic)`: q and k drawn so that each row's softmax is sharp, like a trained model's heads
  (little to compress: the worst case for size);
- the same peaky data without compression (for browsers lacking DecompressionStream).
For each: the HTML size for the head+model views and for all views (with q/k for the neuron view),
the Python time to extract and render, and the time headless Chromium takes from navigation start to
the first frame painted after every view was built (the page measures it itself: two
requestAnimationFrame callbacks after the views are built, so canvas rasterisation is included), the
page script's own time, and the webdriver wall time (navigation + polling), median of --repeats loads.
Targets (issue 8): <= 5 MB and <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def peaky_data(layers=12, heads=12, length=128, d=64, sharpness=3.0, seed=0):
    from maskbench.inspect import AttentionData, AttentionSet

    rng = np.random.default_rng(seed)
    q = rng.normal(size=(layers, heads, length, d)).astype(np.float32)
    k = rng.normal(size=(layers, heads, length, d)).astype(np.float32)
    scale = sharpness / np.sqrt(d)
    s = np.einsum("lhqd,lhkd->lhqk", q, k) * scale
    att = np.exp(s - s.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    tokens = [f"tok{i}" for i in range(length)]
    seg = np.r_[np.zeros(length // 2, np.int8), np.ones(length - length // 2, np.int8)]
    return AttentionData([AttentionSet("encoder", att, tokens, tokens, seg, seg, q, k, scale=float(scale))],
                         title="peaky synthetic")


def bert_base_data():
    import torch

    from maskbench.data.tokenizer import train_tokenizer
    from maskbench.inspect import attention
    from maskbench.models import EncoderConfig, EncoderModel

    words = [f"w{i}" for i in range(400)]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 30)) for _ in range(300)]
    tok = train_tokenizer(None, vocab_size=600, texts=texts, min_frequency=1)
    model = EncoderModel(EncoderConfig(vocab_size=tok.get_vocab_size(), dropout=0.0, attention_dropout=0.0),
                         torch.Generator().manual_seed(0)).eval()
    text = " ".join(rng.choice(words, 70))
    pair = " ".join(rng.choice(words, 70))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        data = attention(model, tok, text, pair=pair, max_length=128)
        times.append(time.perf_counter() - t0)
    return data, statistics.median(times)


def open_browser():
    if not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={tempfile.mkdtemp(prefix='mb-bench-')}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def load_time(driver, path: Path) -> tuple[float, float]:
    """(webdriver wall seconds, browser seconds from navigation start to every view drawn, script ms)."""
    driver.get("about:blank")
    t0 = time.perf_counter()
    driver.get(path.as_uri())
    while True:
        state = driver.execute_script("return document.getElementById('mb-root').dataset.ready || null")
        if state:
            break
        if time.perf_counter() - t0 > 60:
            raise RuntimeError("page did not render within 60 s")
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    if state != "1":
        raise RuntimeError(driver.execute_script("return document.getElementById('mb-root').textContent"))
    root = driver.execute_script("const d = document.getElementById('mb-root').dataset; return [+d.drawnMs, +d.renderMs]")
    return wall, root[0] / 1000.0, root[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from maskbench.inspect import render_html

    bert, extract_s = bert_base_data()
    cases = [("bert-base (random init)", bert, True), ("peaky (synthetic)", peaky_data(), True),
             ("peaky, uncompressed", peaky_data(), False)]
    driver = open_browser()
    tmp = Path(tempfile.mkdtemp(prefix="mb-bench-inspect-"))
    rows = []
    try:
        for name, data, compress in cases:
            for views in ("head,model", "all"):
                t0 = time.perf_counter()
                page = render_html(data, views, compress=compress)
                render_s = time.perf_counter() - t0
                path = tmp / "page.html"
                path.write_text(page, encoding="utf-8")
                size = path.stat().st_size / 1e6
                if driver is not None:
                    times = [load_time(driver, path) for _ in range(args.repeats)]
                    wall = statistics.median(t[0] for t in times)
                    drawn = statistics.median(t[1] for t in times)
                    script = statistics.median(t[2] for t in times)
                    browser = f"{drawn:.2f} | {script:.0f} | {wall:.2f}"
                else:
                    browser = "chromium not installed | - | -"
                rows.append(f"| {name} | {views} | {size:.2f} | {render_s:.2f} | {browser} |")
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)
    s = bert.sets[0]
    print(f"12 layers x 12 heads x {len(s.query_tokens)} tokens; BERT-base extraction (median of 3) {extract_s:.2f} s; "
          f"median of {args.repeats} page loads\n")
    print("| input | views | HTML MB | Python render s | navigation to drawn s | page script ms | webdriver wall s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
