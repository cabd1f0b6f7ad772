"""Stands in for Cython's ``cython`` module where Cython is not installed: the modules written
for Cython's pure-Python mode (``_picows_read.py``) then run as plain Python."""

__all__ = ["compiled"]

compiled = False
