"""Shared pytest fixtures of the sandbox area."""
