"""Discord through discord.py (extra ``discord``).

Only ``config`` may be imported without the extra installed.
"""
