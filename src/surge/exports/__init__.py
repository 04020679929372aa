"""CSV exports of contacts, deliveries, donations and events (see docs/exports.md)."""
