"""distilxlsr: distil multilingual wav2vec 2.0-family speech models into half-depth students.

Importing the package changes nothing global. Programs that train or benchmark in-process may
call `distilxlsr.tune_malloc()` once at start (the command line and the benchmarks do): it keeps
freed tensor memory in the process instead of returning it to the OS every step (see _malloc).
"""

from distilxlsr._malloc import tune_malloc

__all__ = ["tune_malloc"]
__version__ = "0.1.0"
