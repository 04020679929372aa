"""Segments: saved rules over contacts, their activity and donations (see rules.py)."""
