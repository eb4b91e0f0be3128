"""Shared pytest fixtures of the evaluation area."""
