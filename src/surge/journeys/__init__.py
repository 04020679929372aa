"""Journeys: automations that enrol contacts on a trigger and walk them through steps."""
