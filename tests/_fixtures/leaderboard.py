"""Shared pytest fixtures of the leaderboard area."""
