"""The ChatGPT web protocol backend (type ``chatgpt_web``).

``client`` holds ``ChatGPTAPI``, ``conversation`` the ``ChatGPTConversation`` it hands
out, ``protocol`` the answer stream's two event formats and ``transport`` the HTTP
details (browser headers, error mapping).
"""

from core.backends.chatgpt_web.client import ChatGPTAPI, ModerationResult
from core.backends.chatgpt_web.conversation import ChatGPTConversation

__all__ = ["ChatGPTAPI", "ChatGPTConversation", "ModerationResult"]
