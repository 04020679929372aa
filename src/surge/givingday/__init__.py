"""Giving-day pages: the public campaign, fundraiser and team pages donors see (/g/…).

Server-rendered (Jinja2, autoescaped), cached per process for a second, live totals by
Server-Sent Events, and a degrade switch that sheds the walls and leaderboards under load
while the donation form and the total stay. See docs/giving-day.md.
"""
