"""Shared pytest fixtures of the codebase area."""
