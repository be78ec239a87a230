"""Telegram's text formatting as the Bot API server applies it, for the fake Bot API.

Written after tdlib's ``td/telegram/MessageEntity.cpp`` (``parse_html``,
``parse_markdown``, ``parse_markdown_v2``, ``fix_formatted_text``) and the Bot API
server's ``Client.cpp`` (``get_formatted_text``), so that a text the real server
refuses is refused here with the same words, and a text it accepts comes out with the
same text and entities:

- ``parse_html`` / ``parse_markdown`` / ``parse_markdown_v2`` strip the markup and give
  Bot API entities (offsets and lengths in UTF-16 code units), or raise ``ParseError``
  with tdlib's message ("Unsupported start tag \\"br\\" at byte offset 5", "Character
  '.' is reserved and must be escaped with the preceding '\\\\'", "Can't find end of the
  entity starting at byte offset 3", ...). Byte offsets are UTF-8 offsets in the
  original text, as tdlib reports them.
- ``entities_from_json`` checks an explicit ``entities`` list (``EntityError``); types
  Telegram detects by itself (mention, url, bot_command, ...) are dropped, as the
  server drops them, and found again by ``finalize``.
- ``finalize`` does what ``fix_formatted_text`` does to every message: checks that
  entities lie inside the text (``FormatError``), turns control characters into spaces,
  drops ``\\r`` and U+2028..U+202E, trims spaces and newlines at both ends (entities
  follow), drops whitespace-only entities, and adds the entities Telegram detects
  itself. It is simpler than tdlib in places, named where they are.

Kept apart from the server module so the two stay small; nothing here touches the
network. Why our own code and not a library: no Python package reproduces Telegram's
acceptance rules and error texts, which are what the fake exists to check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "EntityError",
    "FormatError",
    "ParseError",
    "check_link",
    "entities_from_json",
    "finalize",
    "find_entities",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "utf16_len",
]

Entity = dict[str, Any]

# tdlib's is_space; the C strings end in NUL, which counts as a space there.
_SPACE = " \t\r\n\v\f\0"
_END = "\0"

# Entity types of the Bot API that a client may send, and those the server detects by
# itself (sent ones are ignored and detected again).
SENDABLE_TYPES = frozenset(
    {
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "code",
        "pre",
        "text_link",
        "text_mention",
        "custom_emoji",
        "blockquote",
        "expandable_blockquote",
    }
)
DETECTED_TYPES = frozenset(
    {
        "mention",
        "hashtag",
        "cashtag",
        "bot_command",
        "url",
        "email",
        "phone_number",
        "bank_card_number",
    }
)
# Bold & co. may overlap anything; the others ("continuous") may not overlap each other.
SPLITTABLE_TYPES = frozenset({"bold", "italic", "underline", "strikethrough", "spoiler"})
BLOCKQUOTE_TYPES = frozenset({"blockquote", "expandable_blockquote"})
HIDDEN_DATA_TYPES = frozenset({"text_link", "text_mention", "custom_emoji"})

# tdlib's MessageEntity::get_type_priority: the order of entities sharing offset and length.
_PRIORITY = {
    "mention": 50,
    "hashtag": 50,
    "bot_command": 50,
    "url": 50,
    "email": 50,
    "bold": 90,
    "italic": 91,
    "code": 20,
    "pre": 11,
    "text_link": 49,
    "text_mention": 49,
    "cashtag": 50,
    "phone_number": 50,
    "underline": 92,
    "strikethrough": 93,
    "blockquote": 0,
    "expandable_blockquote": 0,
    "bank_card_number": 50,
    "spoiler": 94,
    "custom_emoji": 99,
}

# tdlib's names, which its error messages use ("Can't find end of Bold entity ...").
_TD_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "pre_code": "PreCode",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "blockquote": "BlockQuote",
}


class ParseError(ValueError):
    """A parse_mode text Telegram refuses; the server says "can't parse entities: <this>"."""


class EntityError(ValueError):
    """A bad explicit entity; the server says "can't parse MessageEntity: <this>"."""


class FormatError(ValueError):
    """fix_formatted_text refused the text; the server lowercases the first letter."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's offsets and limits."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _w(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


def entity(kind: str, offset: int, length: int, **extra: Any) -> Entity:
    return {"type": kind, "offset": offset, "length": length, **extra}


def _priority(e: Entity) -> int:
    if e["type"] == "pre" and e.get("language"):
        return 10
    return _PRIORITY.get(e["type"], 50)


def sort_entities(entities: list[Entity]) -> list[Entity]:
    """tdlib's order: by offset, longer first, then by type priority."""
    return sorted(entities, key=lambda e: (e["offset"], -e["length"], _priority(e)))


def link_user_id(url: str) -> int | None:
    """The user id of a ``tg://user?id=N`` link (a text_mention), else None."""
    match = re.fullmatch(r"(?i)tg://user\?id=(\d{1,15})", url.strip())
    return int(match.group(1)) if match else None


def check_link(url: str) -> str | None:
    """LinkManager::get_checked_link, simplified: the URL a text_link gets, or None
    (the entity is then dropped silently, as Telegram does). Bare domains get
    ``http://``; an http(s) URL without a path gets a trailing ``/``."""
    url = url.strip()
    if not url or any(c.isspace() for c in url):
        return None
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
    if scheme:
        name = scheme.group(1).lower()
        if name in ("tg", "ton"):
            return url
        if name not in ("http", "https", "ftp"):
            return None
        rest = url[scheme.end() :]
        if not rest.startswith("//") or len(rest) <= 2:
            return None
        if not re.search(r"[/?#]", rest[2:]):
            url += "/"
        return url
    if re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(:\d{1,5})?([/?#]\S*)?", url):
        return "http://" + url + ("" if re.search(r"[/?#]", url) else "/")
    return None


def _link_entity(offset: int, length: int, url: str) -> Entity | None:
    user_id = link_user_id(url)
    if user_id is not None:
        return entity("text_mention", offset, length, user={"id": user_id})
    checked = check_link(url)
    return entity("text_link", offset, length, url=checked) if checked else None


# -- HTML -------------------------------------------------------------------------------

_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)


def _decode_html_entity(text: str, pos: int) -> tuple[int, int]:
    """(code point, position after it) of the entity at ``text[pos] == '&'``; code 0 =
    not an entity (the ``&`` is then literal)."""
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else _END

    end = pos + 1
    code = 0
    if at(pos + 1) == "#":
        end += 1
        if at(pos + 2) == "x":
            end += 1
            while at(end) in "0123456789abcdefABCDEF" and at(end) != _END:
                code = code * 16 + int(text[end], 16)
                end += 1
        else:
            while at(end).isascii() and at(end).isdigit():
                code = code * 10 + int(text[end])
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while at(end).isascii() and at(end).isalpha():
            end += 1
        code = {"lt": 0x3C, "gt": 0x3E, "amp": 0x26, "quot": 0x22}.get(text[pos + 1 : end], 0)
        if code == 0:
            return 0, pos
    return code, end + 1 if at(end) == ";" else end


def parse_html(text: str) -> tuple[str, list[Entity]]:
    """Telegram's HTML parse mode (tdlib ``parse_html``)."""
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else _END

    out: list[str] = []
    entities: list[Entity] = []
    u16 = 0
    # (tag name, argument, utf-16 offset, index into out, expandable)
    nested: list[tuple[str, str, int, int, bool]] = []
    surrogate = False
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            code, after = _decode_html_entity(text, i)
            if code:
                if 0xD800 <= code <= 0xDFFF:
                    surrogate = True
                u16 += 2 if code > 0xFFFF else 1
                out.append(chr(code))
                i = after
                continue
        if c != "<":
            u16 += _w(c)
            out.append(c)
            i += 1
            continue
        begin = i
        i += 1
        if at(i) != "/":
            while at(i) not in _SPACE and at(i) != ">":
                i += 1
            if i >= n:
                raise ParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
            tag = text[begin + 1 : i].lower()
            if tag not in _HTML_TAGS:
                raise ParseError(
                    f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                )
            argument = ""
            expandable = False
            while at(i) != ">":
                while i < n and at(i) in _SPACE:
                    i += 1
                if at(i) == ">":
                    break
                name_begin = i
                while at(i) not in _SPACE and at(i) not in "=>":
                    i += 1
                attribute = text[name_begin:i]
                if not attribute:
                    raise ParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset '
                        f"{_byte_offset(text, begin)}"
                    )
                while i < n and at(i) in _SPACE:
                    i += 1
                if tag == "blockquote" and attribute == "expandable" and at(i) != "=":
                    # Newer tdlib: a bare `expandable` attribute (Bot API 7.3).
                    expandable = True
                    continue
                if at(i) != "=":
                    raise ParseError(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {_byte_offset(text, begin)}'
                    )
                i += 1
                while i < n and at(i) in _SPACE:
                    i += 1
                if i >= n:
                    raise ParseError(
                        f'Unclosed start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                    )
                if at(i) not in "'\"":
                    token_begin = i
                    while at(i).isascii() and (at(i).isalnum() or at(i) in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if at(i) not in _SPACE and at(i) != ">":
                        raise ParseError(
                            "Unexpected end of name token at byte offset "
                            f"{_byte_offset(text, token_begin)}"
                        )
                else:
                    quote = text[i]
                    i += 1
                    chars: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&":
                            code, after = _decode_html_entity(text, i)
                            if code:
                                chars.append(chr(code))
                                i = after
                                continue
                        chars.append(text[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(chars)
                if i >= n:
                    raise ParseError(
                        f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                    )
                if (
                    (tag == "a" and attribute == "href")
                    or (tag == "tg-emoji" and attribute == "emoji-id")
                    or (tag == "code" and attribute == "class" and value.startswith("language-"))
                    or (tag == "span" and attribute == "class" and value.startswith("tg-"))
                ):
                    argument = value
                    if tag == "code":
                        argument = value[len("language-") :]
                    elif tag == "span":
                        argument = value[len("tg-") :]
            if tag == "span" and argument != "spoiler":
                raise ParseError(
                    'Tag "span" must have class "tg-spoiler" at byte offset '
                    f"{_byte_offset(text, begin)}"
                )
            nested.append((tag, argument, u16, len(out), expandable))
        else:
            if not nested:
                raise ParseError(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            while at(i) not in _SPACE and at(i) != ">":
                i += 1
            end_tag = text[begin + 2 : i].lower()
            while i < n and at(i) in _SPACE:
                i += 1
            if at(i) != ">":
                raise ParseError(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            tag, argument, offset, out_begin, expandable = nested[-1]
            if end_tag and end_tag != tag:
                raise ParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{tag}>", found "</{end_tag}>"'
                )
            if u16 > offset:
                length = u16 - offset
                last = entities[-1] if entities else None
                same_span = last is not None and (last["offset"], last["length"]) == (
                    offset,
                    length,
                )
                if tag in ("i", "em"):
                    entities.append(entity("italic", offset, length))
                elif tag in ("b", "strong"):
                    entities.append(entity("bold", offset, length))
                elif tag in ("s", "strike", "del"):
                    entities.append(entity("strikethrough", offset, length))
                elif tag in ("u", "ins"):
                    entities.append(entity("underline", offset, length))
                elif tag in ("tg-spoiler", "span"):
                    entities.append(entity("spoiler", offset, length))
                elif tag == "tg-emoji":
                    if not argument.isdigit() or int(argument) == 0:
                        raise ParseError("Invalid custom emoji identifier specified")
                    entities.append(
                        entity("custom_emoji", offset, length, custom_emoji_id=argument)
                    )
                elif tag == "a":
                    link = _link_entity(offset, length, argument or "".join(out[out_begin:]))
                    if link is not None:
                        entities.append(link)
                elif tag == "pre":
                    if (
                        same_span
                        and last is not None
                        and last["type"] == "code"
                        and last.get("_lang")
                    ):
                        last["type"] = "pre"
                        last["language"] = last.pop("_lang")
                    else:
                        entities.append(entity("pre", offset, length))
                elif tag == "code":
                    if same_span and last is not None and last["type"] == "pre" and argument:
                        last["language"] = argument
                    else:
                        entities.append(entity("code", offset, length, _lang=argument))
                else:  # blockquote
                    kind = "expandable_blockquote" if expandable else "blockquote"
                    entities.append(entity(kind, offset, length))
            nested.pop()
        i += 1
    if nested:
        raise ParseError(f"Can't find end tag corresponding to start tag {nested[-1][0]}")
    for e in entities:
        e.pop("_lang", None)
    if surrogate:
        raise ParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, check for "
            "unmatched surrogate code units"
        )
    return "".join(out), sort_entities(entities)


# -- Markdown (legacy) ---------------------------------------------------------------------


def _skip_pre_language(text: str, i: int) -> tuple[int, str]:
    """After an opening ```: the language word if one follows, then one newline skipped."""
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else _END

    language = ""
    end = i
    while at(end) not in _SPACE and at(end) != "`":
        end += 1
    if i != end and end < n and text[end] != "`":
        language = text[i:end]
        i = end
    if at(i) in "\r\n":
        i += 2 if at(i + 1) in "\r\n" and at(i) != at(i + 1) else 1
    return i, language


def parse_markdown(text: str) -> tuple[str, list[Entity]]:
    """Telegram's legacy Markdown parse mode (tdlib ``parse_markdown``): *bold*,
    _italic_, `code`, ```pre```, [text](url); no nesting; ``\\`` escapes ``_*`[``."""
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else _END

    out: list[str] = []
    entities: list[Entity] = []
    u16 = 0
    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and at(i + 1) in "_*`[" and at(i + 1) != _END:
            out.append(text[i + 1])
            u16 += 1
            i += 2
            continue
        if c not in "_*`[":
            out.append(c)
            u16 += _w(c)
            i += 1
            continue
        begin = i
        end_char = "]" if c == "[" else c
        is_pre = False
        language = ""
        i += 1
        if c == "`" and at(i) == "`" and at(i + 1) == "`":
            is_pre = True
            i, language = _skip_pre_language(text, i + 2)
        offset = u16
        content_begin = i
        while i < n and (
            text[i] != end_char or (is_pre and not (at(i + 1) == "`" and at(i + 2) == "`"))
        ):
            out.append(text[i])
            u16 += _w(text[i])
            i += 1
        if i == n:
            raise ParseError(
                f"Can't find end of the entity starting at byte offset {_byte_offset(text, begin)}"
            )
        if offset != u16:
            length = u16 - offset
            if c == "_":
                entities.append(entity("italic", offset, length))
            elif c == "*":
                entities.append(entity("bold", offset, length))
            elif c == "[":
                if at(i + 1) != "(":
                    url = text[content_begin:i]
                else:
                    i += 2
                    url_begin = i
                    while i < n and text[i] != ")":
                        i += 1
                    url = text[url_begin:i]
                link = _link_entity(offset, length, url)
                if link is not None:
                    entities.append(link)
            elif is_pre:
                extra = {"language": language} if language else {}
                entities.append(entity("pre", offset, length, **extra))
            else:
                entities.append(entity("code", offset, length))
        if is_pre:
            i += 2
        i += 1
    return "".join(out), sort_entities(entities)


# -- MarkdownV2 ----------------------------------------------------------------------------

_V2_RESERVED = "_*[]()~`>#+-=|{}.!\n"


def _reserved(char: str) -> ParseError:
    return ParseError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")


def parse_markdown_v2(text: str) -> tuple[str, list[Entity]]:
    """Telegram's MarkdownV2 parse mode (tdlib ``parse_markdown_v2``): every character
    of ``_*[]()~`>#+-=|{}.!`` outside an entity must be escaped with ``\\``."""
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else _END

    out: list[str] = []
    entities: list[Entity] = []
    u16 = 0
    # [tdlib type name, argument, utf-16 offset, char index in text, index into out]
    nested: list[list[Any]] = []
    have_blockquote = False

    def read_url(i: int) -> tuple[str, int]:
        chars: list[str] = []
        while i < n and text[i] != ")":
            if text[i] == "\\" and 0 < ord(at(i + 1)) <= 126:
                chars.append(text[i + 1])
                i += 2
                continue
            chars.append(text[i])
            i += 1
        return "".join(chars), i

    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and 0 < ord(at(i + 1)) <= 126:
            out.append(text[i + 1])
            u16 += 1
            i += 2
            continue
        reserved = _V2_RESERVED
        if nested and nested[-1][0] in ("code", "pre", "pre_code"):
            reserved = "`"
        if c not in reserved:
            out.append(c)
            u16 += _w(c)
            i += 1
            continue
        is_end = False
        if nested:
            kind = nested[-1][0]
            is_end = (have_blockquote and c == "\n" and (i + 1 == n or text[i + 1] != ">")) or {
                "bold": c == "*",
                "italic": c == "_" and at(i + 1) != "_",
                "code": c == "`",
                "pre": c == "`" and at(i + 1) == "`" and at(i + 2) == "`",
                "pre_code": c == "`" and at(i + 1) == "`" and at(i + 2) == "`",
                "text_link": c == "]",
                "underline": c == "_" and at(i + 1) == "_",
                "strikethrough": c == "~",
                "spoiler": c == "|" and at(i + 1) == "|",
                "custom_emoji": c == "]",
                "blockquote": False,
            }[kind]
        if not is_end:
            start = i
            argument = ""
            kind = ""
            if c == "_":
                if at(i + 1) == "_":
                    kind = "underline"
                    i += 1
                else:
                    kind = "italic"
            elif c == "*":
                kind = "bold"
            elif c == "~":
                kind = "strikethrough"
            elif c == "|":
                if at(i + 1) != "|":
                    raise _reserved(c)
                i += 1
                kind = "spoiler"
            elif c == "[":
                kind = "text_link"
            elif c == "`":
                if at(i + 1) == "`" and at(i + 2) == "`":
                    i, argument = _skip_pre_language(text, i + 3)
                    kind = "pre_code" if argument else "pre"
                    i -= 1
                else:
                    kind = "code"
            elif c == "!":
                if at(i + 1) != "[":
                    raise _reserved(c)
                i += 1
                kind = "custom_emoji"
            elif c == "\n":
                u16 += 1
                out.append("\n")
                if i + 1 < n and text[i + 1] == ">":
                    i += 1
                    if not have_blockquote:
                        kind = "blockquote"
                        have_blockquote = True
            elif c == ">" and i == 0:
                kind = "blockquote"
                have_blockquote = True
            else:
                raise _reserved(c)
            if kind:
                nested.append([kind, argument, u16, start, len(out)])
        else:
            kind, argument, offset, start, out_begin = nested[-1]
            if c == "\n" and kind != "blockquote":
                raise ParseError(
                    f"Can't find end of {_TD_NAMES[kind]} entity at byte offset "
                    f"{_byte_offset(text, start)}"
                )
            skip = u16 == offset
            made: Entity | None = None
            if kind in ("underline", "spoiler"):
                i += 1
            elif kind in ("pre", "pre_code"):
                i += 2
            elif kind == "text_link":
                if at(i + 1) != "(":
                    url = "".join(out[out_begin:])
                else:
                    url_begin = i + 2
                    url, i = read_url(i + 2)
                    if at(i) != ")":
                        where = _byte_offset(text, url_begin)
                        raise ParseError(f"Can't find end of a URL at byte offset {where}")
                made = _link_entity(offset, u16 - offset, url)
                if made is None:
                    skip = True
            elif kind == "custom_emoji":
                if at(i + 1) != "(":
                    raise ParseError("Custom emoji entity must contain a tg://emoji URL")
                url_begin = i + 2
                url, i = read_url(i + 2)
                if at(i) != ")":
                    raise ParseError(
                        "Can't find end of a custom emoji URL at byte offset "
                        f"{_byte_offset(text, url_begin)}"
                    )
                emoji = re.fullmatch(r"(?i)tg://emoji\?id=(\d+)", url)
                if emoji is None or int(emoji.group(1)) == 0:
                    raise ParseError("Custom emoji URL must have an emoji identifier")
                argument = emoji.group(1)
            elif kind == "blockquote":
                have_blockquote = False
                out.append(text[i])
                u16 += 1
            if not skip:
                length = u16 - offset
                if made is not None:
                    entities.append(made)
                elif kind == "pre_code":
                    entities.append(entity("pre", offset, length, language=argument))
                elif kind == "custom_emoji":
                    entities.append(entity(kind, offset, length, custom_emoji_id=argument))
                else:
                    entities.append(entity(kind, offset, length))
            nested.pop()
        i += 1
    if have_blockquote and nested and nested[-1][0] == "blockquote":
        offset = nested[-1][2]
        if u16 != offset:
            entities.append(entity("blockquote", offset, u16 - offset))
        nested.pop()
    if nested:
        kind, _, _, start, _ = nested[-1]
        raise ParseError(
            f"Can't find end of {_TD_NAMES[kind]} entity at byte offset {_byte_offset(text, start)}"
        )
    return "".join(out), sort_entities(entities)


# -- explicit entities ---------------------------------------------------------------------


def entities_from_json(value: Any) -> list[Entity]:
    """The Bot API's reading of an ``entities`` parameter (``Client::get_text_entity``).
    Unparsable JSON or a non-list is ignored, as the server ignores it."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    result: list[Entity] = []
    for item in value:
        if not isinstance(item, dict):
            raise EntityError("expected an Object")
        for key in ("offset", "length"):
            if not isinstance(item.get(key), int) or isinstance(item.get(key), bool):
                raise EntityError(f'Field "{key}" must be of type Number')
        kind = item.get("type")
        if not isinstance(kind, str):
            raise EntityError('Field "type" must be of type String')
        if not kind:
            raise EntityError("Type is not specified")
        if kind in DETECTED_TYPES:
            continue
        if kind not in SENDABLE_TYPES:
            raise EntityError("Unsupported type specified")
        made = entity(kind, item["offset"], item["length"])
        if kind == "pre" and isinstance(item.get("language"), str) and item["language"]:
            made["language"] = item["language"]
        elif kind == "text_link":
            if not isinstance(item.get("url"), str):
                raise EntityError('Field "url" must be of type String')
            made["url"] = item["url"]
        elif kind == "text_mention":
            user = item.get("user")
            if not isinstance(user, dict) or not isinstance(user.get("id"), int):
                raise EntityError('Field "user" must be of type Object')
            made["user"] = {"id": user["id"]}
        elif kind == "custom_emoji":
            if not isinstance(item.get("custom_emoji_id"), str):
                raise EntityError('Field "custom_emoji_id" must be of type String')
            made["custom_emoji_id"] = item["custom_emoji_id"]
        result.append(made)
    return result


# -- detected entities ---------------------------------------------------------------------


def _is_word(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


def _is_hashtag_letter(ch: str) -> bool:
    return ch in "_\u200c\u00b7" or "\u0d80" <= ch <= "\u0dff" or ch.isalnum()


_MENTION = re.compile(r"@[A-Za-z0-9_]{2,32}(?![A-Za-z0-9_])")
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,64}(@[A-Za-z0-9_]+)?")
_CASHTAG = re.compile(r"\$(1INCH|[A-Z]{1,8})")
_URL = re.compile(r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"]+")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def find_entities(text: str) -> list[Entity]:
    """The entities Telegram finds by itself: mentions, bot commands, hashtags,
    cashtags, URLs, e-mail addresses (tdlib ``find_entities``). URLs need a scheme or
    ``www.`` here; tdlib also knows bare domains by their TLD."""
    spans: list[tuple[int, int, str]] = []  # char indexes
    for m in _MENTION.finditer(text):
        if m.start() and _is_word(text[m.start() - 1]):
            continue
        if m.end() < len(text) and _is_word(text[m.end()]):
            continue
        spans.append((m.start(), m.end(), "mention"))
    for m in _COMMAND.finditer(text):
        before = text[m.start() - 1] if m.start() else ""
        if before and (_is_word(before) or before in "/<>"):
            continue
        if m.group(1) is not None and not 3 <= len(m.group(1)) - 1 <= 32:
            continue
        after = text[m.end()] if m.end() < len(text) else ""
        if after and (_is_word(after) or after in "/<>"):
            continue
        spans.append((m.start(), m.end(), "bot_command"))
    i = text.find("#")
    while i != -1:
        if not (i and _is_hashtag_letter(text[i - 1])):
            j = i + 1
            while j < len(text) and _is_hashtag_letter(text[j]):
                j += 1
            body = text[i + 1 : j]
            if body and (j == len(text) or text[j] != "#") and any(ch.isalpha() for ch in body):
                spans.append((i, min(j, i + 257), "hashtag"))
        i = text.find("#", i + 1)
    for m in _CASHTAG.finditer(text):
        before = text[m.start() - 1] if m.start() else ""
        after = text[m.end()] if m.end() < len(text) else ""
        if (before and (_is_hashtag_letter(before) or before == "$")) or (
            after and (_is_hashtag_letter(after) or after == "$")
        ):
            continue
        spans.append((m.start(), m.end(), "cashtag"))
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:!?)]}'":
            end -= 1
        spans.append((m.start(), end, "url"))
    for m in _EMAIL.finditer(text):
        spans.append((m.start(), m.end(), "email"))
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    prefix = _u16_prefix(text)
    found: list[Entity] = []
    last_end = -1
    for start, end, kind in spans:
        if start < last_end:  # overlaps an earlier find (an e-mail's @domain, a URL's path)
            continue
        found.append(entity(kind, prefix[start], prefix[end] - prefix[start]))
        last_end = end
    return found


# -- fix_formatted_text --------------------------------------------------------------------


def _u16_prefix(text: str) -> list[int]:
    """prefix[i] = UTF-16 offset of text[i]; prefix[len(text)] = the length."""
    prefix = [0] * (len(text) + 1)
    total = 0
    for index, ch in enumerate(text):
        prefix[index] = total
        total += _w(ch)
    prefix[len(text)] = total
    return prefix


def _check_bounds(text: str, entities: list[Entity], prefix: list[int]) -> None:
    """clean_input_string_with_entities' checks: entities inside the text, on whole
    characters."""
    total = prefix[-1]
    starts = set(prefix)
    for e in sort_entities(entities):
        offset, end = e["offset"], e["offset"] + e["length"]
        if offset <= total and offset not in starts:
            raise FormatError(
                "Entity begins in a middle of a UTF-16 symbol at byte offset "
                f"{_byte_offset(text, prefix.index(offset - 1) + 1)}"
            )
        if offset <= total and end <= total and end not in starts:
            raise FormatError(
                f"Entity beginning at UTF-16 offset {offset} ends in a middle of a UTF-16 "
                f"symbol at byte offset {_byte_offset(text, prefix.index(end - 1) + 1)}"
            )
    for e in sort_entities(entities):
        if e["offset"] > total:
            raise FormatError(
                f"Entity begins after the end of the text at UTF-16 offset {e['offset']}"
            )
    for e in sort_entities(entities):
        if e["offset"] + e["length"] > total:
            raise FormatError(
                f"Entity beginning at UTF-16 offset {e['offset']} ends after the end of the "
                f"text at UTF-16 offset {e['offset'] + e['length']}"
            )


def _rewrite(
    text: str, entities: list[Entity], change: Callable[[str], str | None]
) -> tuple[str, list[Entity]]:
    """Replace (or drop, on None) characters, moving entity bounds with them."""
    old = _u16_prefix(text)
    new_chars: list[str] = []
    mapping: dict[int, int] = {}
    position = 0
    for index, ch in enumerate(text):
        mapping[old[index]] = position
        replaced = change(ch)
        if replaced is not None:
            new_chars.append(replaced)
            position += utf16_len(replaced)
    mapping[old[-1]] = position
    moved = []
    for e in entities:
        start = mapping[e["offset"]]
        end = mapping[e["offset"] + e["length"]]
        if end > start:
            moved.append({**e, "offset": start, "length": end - start})
    return "".join(new_chars), moved


_NEEDS_CLEANING = re.compile("[\x00-\x09\x0b-\x1f\u2028-\u202e\u0333\u033f\u030a]")


def _clean_char(ch: str) -> str | None:
    code = ord(ch)
    if ch == "\r" or 0x2028 <= code <= 0x202E or code in (0x0333, 0x033F, 0x030A):
        return None
    if code < 32 and ch != "\n":
        return " "
    return ch


def _overlaps(a: Entity, b: Entity) -> bool:
    return bool(a["offset"] < b["offset"] + b["length"] and b["offset"] < a["offset"] + a["length"])


def finalize(text: str, entities: list[Entity], *, allow_empty: bool) -> tuple[str, list[Entity]]:
    """fix_formatted_text: the text and entities as Telegram stores them. Raises
    FormatError("Message must be non-empty") for a text with nothing but whitespace
    unless ``allow_empty``."""
    for e in entities:
        if not 0 <= e["offset"] <= 1_000_000:
            raise FormatError(f"Receive an entity with incorrect offset {e['offset']}")
        if not 0 <= e["length"] <= 1_000_000:
            raise FormatError(f"Receive an entity with incorrect length {e['length']}")
    entities = [e for e in entities if e["length"] > 0]
    _check_bounds(text, entities, _u16_prefix(text))
    if _NEEDS_CLEANING.search(text):
        text, entities = _rewrite(text, entities, _clean_char)

    # Entities lose leading whitespace; whitespace-only ones go (hidden-data ones stay).
    prefix = _u16_prefix(text)
    index_of = {u: k for k, u in enumerate(prefix)}
    kept: list[Entity] = []
    for e in entities:
        if e["type"] not in HIDDEN_DATA_TYPES:
            start, end = index_of[e["offset"]], index_of[e["offset"] + e["length"]]
            while start < end and text[start] in " \n":
                start += 1
            if start == end:
                continue
            e = {**e, "offset": prefix[start], "length": prefix[end] - prefix[start]}
        kept.append(e)
    entities = kept

    stripped_right = text.rstrip(" \n")
    if not stripped_right:
        if allow_empty:
            return "", []
        raise FormatError("Message must be non-empty")
    limit = utf16_len(stripped_right)
    entities = [e for e in entities if e["offset"] < limit]
    entities = [{**e, "length": min(e["length"], limit - e["offset"])} for e in entities]
    text = stripped_right
    first_entity = min((e["offset"] for e in entities), default=limit)
    lead = 0
    while lead < first_entity and text[lead] in " \n":  # all ASCII: units = chars
        lead += 1
    if lead:
        text = text[lead:]
        entities = [{**e, "offset": e["offset"] - lead} for e in entities]

    blocking = [e for e in entities if e["type"] not in SPLITTABLE_TYPES | BLOCKQUOTE_TYPES]
    for found in find_entities(text):
        if not any(_overlaps(found, e) for e in blocking):
            entities.append(found)
    return text, sort_entities(entities)
