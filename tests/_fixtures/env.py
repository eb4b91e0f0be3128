"""Shared pytest fixtures of the env area."""
