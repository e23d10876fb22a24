"""`--checkpoint bert-base-uncased` or `--checkpoint org/name`: Hugging Face Hub ids through huggingface_hub's cache.

A checkpoint that is not a local path but looks like a Hub id is fetched with `snapshot_download` (only the
config, safetensors weights and tokenizer files) into the usual Hugging Face cache, so a second use and
offline use (`HF_HUB_OFFLINE=1`) read the cached copy. Nothing cached while offline is one line, exit 2.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import CheckpointError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
_FILES = ["config.json", "*.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
          "vocab.txt", "vocab.json", "merges.txt"]


def looks_like_hub_id(text: str) -> bool:
    """`name` or `org/name`, and not a path into a local folder (a mistyped `runs/x` is not a Hub id)."""
    if not _HUB_ID.fullmatch(text) or text.endswith((".json", ".toml", ".safetensors")) or ".." in text:
        return False
    return "/" not in text or not Path(text.split("/")[0]).exists()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def fetch(repo_id: str) -> Path:
    """The local folder of Hub model `repo_id` (downloaded once, then read from the cache)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - the `hf` extra
        raise CheckpointError(f"{repo_id} is not a local folder; reading Hub ids needs huggingface_hub: "
                              "pip install 'maskbench[hf]'") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_FILES))
    except Exception as e:  # huggingface_hub raises many types (offline, 404, gated, network)
        if _offline():
            raise CheckpointError(f"{repo_id} is not a local folder and not in the Hugging Face cache, and "
                                  "HF_HUB_OFFLINE=1 forbids downloading it; run once online or give a folder") from None
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{repo_id} is not a local folder, and fetching it from the Hugging Face Hub "
                              f"failed ({reason})") from None
