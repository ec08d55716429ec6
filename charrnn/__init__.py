"""charrnn: character-level RNN, GRU and LSTM networks in NumPy (language models, classifiers,
taggers, encoder-decoders with attention), with exact, checkable gradients."""

__version__ = "0.1.0"
