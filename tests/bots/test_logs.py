from __future__ import annotations

import logging

import pytest

from bots.logs import MASK, RedactSecrets


def test_secrets_are_masked_in_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("parley.test.redact")
    redactor = RedactSecrets(["sk-live-abcdef", "123456:tg-token"])
    logger.addFilter(redactor)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("calling https://api.telegram.org/bot%s/getMe", "123456:tg-token")
            try:
                raise RuntimeError("bad key sk-live-abcdef")
            except RuntimeError:
                logger.exception("failed")
    finally:
        logger.removeFilter(redactor)
    text = caplog.text
    assert "sk-live-abcdef" not in text
    assert "tg-token" not in text
    assert text.count(MASK) >= 2


def test_short_values_are_not_treated_as_secrets() -> None:
    # Masking "a" would shred every log line; a real secret is never that short.
    assert RedactSecrets(["a"]).redact("a cat") == "a cat"
