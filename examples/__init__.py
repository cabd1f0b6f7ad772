"""Runnable examples; the tests run each of them (tests/integration/test_examples.py)."""
