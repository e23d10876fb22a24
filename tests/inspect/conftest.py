"""Tiny real models and a tokenizer for the inspection tests (built once per session, a second or two)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from inspect_helpers import SENTENCES  # noqa: E402  (shared with the tests)

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These models are tiny: on a shared 2-core machine a second thread costs more in waiting than it gives."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    from maskbench.data.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(None, kind="wordpiece", vocab_size=200, out_path=path, texts=SENTENCES, min_frequency=1)
    return path


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path):
    from maskbench.data.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_path)


def _encoder_folder(root: Path, tokenizer_path: Path, seed: int, **overrides) -> Path:
    import torch

    from maskbench.models import EncoderConfig, EncoderForPretraining, save_model

    cfg = dict(vocab_size=200, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=64)
    cfg.update(overrides)
    model = EncoderForPretraining(EncoderConfig(**cfg), None, torch.Generator().manual_seed(seed))
    save_model(model, root)
    shutil.copy(tokenizer_path, root / "tokenizer.json")
    return root


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory, tokenizer_path) -> Path:
    return _encoder_folder(tmp_path_factory.mktemp("enc") / "model", tokenizer_path, seed=1)


@pytest.fixture(scope="session")
def encoder_dir_b(tmp_path_factory, tokenizer_path) -> Path:
    return _encoder_folder(tmp_path_factory.mktemp("enc_b") / "model", tokenizer_path, seed=2, embedding_size=16,
                           share="all")


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory, tokenizer_path) -> Path:
    import torch

    from maskbench.models import EncoderDecoderConfig, EncoderDecoderModel, save_model

    root = tmp_path_factory.mktemp("t5") / "model"
    cfg = EncoderDecoderConfig(vocab_size=200, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, eos_id=3)
    save_model(EncoderDecoderModel(cfg, torch.Generator().manual_seed(3)), root)
    shutil.copy(tokenizer_path, root / "tokenizer.json")
    return root


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through the system chromedriver (never selenium-manager, never the network)."""
    if not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)):
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
