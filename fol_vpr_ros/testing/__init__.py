"""Helpers that write real test data (bags) for tests and the demo."""
