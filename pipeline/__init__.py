"""Sprout pipeline: from a taxonomy to a trained student and a report."""

__version__ = "0.1.0"
