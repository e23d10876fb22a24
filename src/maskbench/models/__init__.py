"""Models: BERT/ALBERT encoder, T5-style encoder–decoder, heads, named sizes, checkpoints, HF interop."""

from .checkpoint import load_model, save_model
from .encoder import EncoderConfig, EncoderModel, EncoderOutput
from .encoder_decoder import EncoderDecoderConfig, EncoderDecoderModel
from .heads import EncoderForPretraining, EncoderForSequenceClassification
from .sizes import NAMED_SIZES, count_parameters, named_config

__all__ = [
    "EncoderConfig", "EncoderModel", "EncoderOutput", "EncoderForPretraining", "EncoderForSequenceClassification",
    "EncoderDecoderConfig", "EncoderDecoderModel", "NAMED_SIZES", "named_config", "count_parameters",
    "save_model", "load_model",
]
