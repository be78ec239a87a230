"""Telegram through python-telegram-bot (extra ``telegram``).

Only ``config`` may be imported without the extra installed.
"""
