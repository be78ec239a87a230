"""The ONE delivery layer every chat platform shares: from partial answer texts to
platform messages, within the platform's limits (see ``target.PlatformLimits``).

A platform supplies its limits, one ``DeliveryTarget`` per chat and a ``Renderer``;
the bot process keeps one ``DeliveryScheduler`` and makes a ``DeliverySink`` (the
chat service's ``ReplySink``) per answer.
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
