"""distilxlsr: distil multilingual wav2vec 2.0-family speech models into half-depth students."""

from distilxlsr._malloc import tune_malloc

__version__ = "0.1.0"

# Large per-step tensors otherwise make glibc unmap and re-fault memory every step (see _malloc).
tune_malloc()
