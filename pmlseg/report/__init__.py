"""Reviewer's report: report.html (self-contained), report.pdf, decisions round-trip (review.py)."""
