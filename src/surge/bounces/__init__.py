"""Bounces and complaints that arrive after the send: VERP addresses and the bounce server."""
