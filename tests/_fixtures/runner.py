"""Shared pytest fixtures of the runner area."""
