"""Evaluation: verification and identification protocols."""
