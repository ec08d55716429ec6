"""Weights to and from PyTorch: the language model (lm) and the encoder families (encoded), as safetensors."""
