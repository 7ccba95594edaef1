"""distilxlsr: distil multilingual wav2vec 2.0-family speech models into half-depth students."""

__version__ = "0.1.0"
