"""Donations: idempotent intake, exactly-once charges, receipts and sharded campaign totals.

See docs/donations.md.
"""
