"""maskbench: pretrain, fine-tune and look inside BERT-family language models under any corruption policy.

The Python API mirrors the CLI; see README.md for a tour.
"""

__version__ = "0.1.0"

from .errors import ConfigError, DataError, MaskbenchError  # noqa: E402,F401
