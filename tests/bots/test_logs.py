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


def test_short_secrets_are_masked_only_where_they_stand_alone() -> None:
    # Local servers often take keys like "ollama" or "key": mask the key, not the words.
    redact = RedactSecrets(["key", "ollama"]).redact
    assert redact("api-key=key, keys, monkey") == "api-key=********, keys, monkey"
    assert redact("Bearer ollama to /ollama-proxy/v1") == "Bearer ******** to /ollama-proxy/v1"
    assert RedactSecrets(["sk-long-secret"]).redact("xsk-long-secretx") == "x********x"


def test_without_tracebacks_an_exception_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """What a terminal command shows below -vv: the sentence, not the stack."""
    logger = logging.getLogger("parley.test.oneline")
    redactor = RedactSecrets(["sk-live-abcdef"], tracebacks=False)
    logger.addFilter(redactor)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            try:
                raise OSError("disk full sk-live-abcdef\n[SQL: INSERT ... 'the user text']")
            except OSError:
                logger.exception("could not save")
    finally:
        logger.removeFilter(redactor)
    assert caplog.records[0].exc_info is None
    assert caplog.text.strip().endswith("could not save (OSError: disk full ********)")
    assert "Traceback" not in caplog.text and "user text" not in caplog.text
