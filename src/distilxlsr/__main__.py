"""Entry point for `python -m distilxlsr` and `accelerate launch -m distilxlsr`."""

from distilxlsr.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
