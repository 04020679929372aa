"""Outgoing webhooks, signed per the Standard Webhooks spec.

Other domains call ``surge.webhooks.service.emit`` inside their own transactions; a relay
turns the outbox into deliveries and delivery jobs POST them. See docs/webhooks.md.
"""
