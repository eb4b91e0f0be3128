"""Shared pytest fixtures of the tasks area."""
