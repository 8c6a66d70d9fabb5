"""Checks run by make lint (and by the tests)."""
