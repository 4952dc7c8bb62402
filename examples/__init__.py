"""Runnable example applications of eventfold: ``python -m examples.shop``."""
