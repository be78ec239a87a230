"""Discord's limits, as data for the shared delivery layer.

From Discord's documentation: message content up to 2000 characters (counted in code
points, i.e. ``len``); message creates and edits share a per-channel bucket of about
5 per 5 s; every bot request together is limited to 50 per second. There is no
per-guild budget like Telegram's per-group one.
"""

from __future__ import annotations

from adapters.delivery.target import PlatformLimits

MAX_CONTENT = 2000

DISCORD_LIMITS = PlatformLimits(
    max_length=MAX_CONTENT,
    measure=len,
    chat_ops=5,
    chat_period=5.0,
    group_ops=None,
    global_ops=50,
    global_period=1.0,
    # 5 edits per 5 s is the whole bucket: a little slower leaves room for the sends
    # that start the next pieces of a long answer.
    edit_interval=1.2,
    typing_interval=8.0,  # "typing…" shows for ~10 s or until the bot's next message
    typing_spends_global=True,  # POST /channels/{id}/typing is a request like any other
)
