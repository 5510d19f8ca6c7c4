"""Leadflow shared kernel: the one implementation of every cross-cutting mechanism."""

__version__ = "0.1.0"
