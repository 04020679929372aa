"""Surge: a self-hosted platform for high-volume campaigns."""

__version__ = "0.1.0"
