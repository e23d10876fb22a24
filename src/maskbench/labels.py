"""The label of a position with nothing to predict, shared by objectives, models, training and fine-tuning."""

IGNORE_INDEX = -100  # PyTorch's cross_entropy default `ignore_index`, and Hugging Face's
