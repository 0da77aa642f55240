"""Evaluation: scoring against labels (benchmark), speed, export and the bf16 check."""
