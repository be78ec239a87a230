"""The ONE delivery layer every chat platform shares: from partial answer texts to
platform messages, within the platform's limits (see ``target.PlatformLimits``).

A platform supplies its limits, one ``DeliveryTarget`` per chat and a ``Renderer``;
the bot process keeps one ``DeliveryScheduler`` and makes a ``DeliverySink`` (the
chat service's ``ReplySink``) per answer::

    LIMITS = PlatformLimits(max_length=4096, measure=utf16_len, chat_ops=1,
                            chat_period=1.0, group_ops=20, group_period=60.0,
                            global_ops=30, global_period=1.0)
    scheduler = DeliveryScheduler(LIMITS)          # once, closed at shutdown

    async def on_message(msg: IncomingMessage, chat: MyTarget) -> None:
        async with DeliverySink(scheduler, chat, MY_RENDERER, stream=True,
                                edit_interval=None) as sink:
            await chat_service.handle(msg, sink)    # update/complete/error
"""

from adapters.delivery.scheduler import DeliveryClosed, DeliveryScheduler
from adapters.delivery.sink import DeliverySink
from adapters.delivery.splitter import split, split_first, utf16_len
from adapters.delivery.target import (
    DeliveryError,
    DeliveryTarget,
    DraftsUnsupported,
    FormattingRejected,
    NotModified,
    PlatformLimits,
    Rendered,
    Renderer,
    RetryAfter,
)

__all__ = [
    "DeliveryClosed",
    "DeliveryError",
    "DeliveryScheduler",
    "DeliverySink",
    "DeliveryTarget",
    "DraftsUnsupported",
    "FormattingRejected",
    "NotModified",
    "PlatformLimits",
    "Rendered",
    "Renderer",
    "RetryAfter",
    "split",
    "split_first",
    "utf16_len",
]
