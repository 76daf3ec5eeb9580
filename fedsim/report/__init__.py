"""Reporting: console progress and tables (an HTML report comes later)."""
