"""Suppression list: addresses an organisation must not send campaign mail to."""
