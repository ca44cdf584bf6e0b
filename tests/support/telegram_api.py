"""A local server speaking the Telegram Bot API wire format, for the real aiogram client.

It keeps the update queue as Telegram does: getUpdates long-polls, and an offset confirms (drops)
every update below it. It records what the bot sent (sendMessage, sendChatAction) and notices
two getUpdates at once, which Telegram answers with 409 Conflict.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from support.loopback import LoopbackServer

BOT_ID = 7000001
TOKEN = f"{BOT_ID}:AAtest-token-for-the-local-bot-api"


@dataclass
class TelegramAPI(LoopbackServer):
    token: str = TOKEN
    updates: list[dict[str, Any]] = field(default_factory=list)  # not yet confirmed
    sent: list[dict[str, Any]] = field(default_factory=list)  # sendMessage calls, in order
    chat_actions: list[tuple[int, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # every method called, in order
    confirmed: list[int] = field(default_factory=list)  # update ids confirmed by an offset
    conflicts: int = 0  # getUpdates calls made while another was waiting
    blocked_chats: set[int] = field(default_factory=set)  # sendMessage answers 403 there
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)  # every user message, by update id
    callback_answers: list[dict[str, Any]] = field(default_factory=list)  # answerCallbackQuery calls, in order
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _message_ids: itertools.count = field(default_factory=lambda: itertools.count(100))
    _new: asyncio.Event = field(default_factory=asyncio.Event)
    _polling: int = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)

    # What users do.
    def user_says(self, text: str, *, chat_id: int, username: str | None = None, first_name: str = "Тест") -> int:
        update_id = next(self._ids)
        user = {"id": chat_id, "is_bot": False, "first_name": first_name, **({"username": username} if username else {})}
        message: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()), "text": text,
            "chat": {"id": chat_id, "type": "private", "first_name": first_name, **({"username": username} if username else {})},
            "from": user,
        }
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        self.updates.append({"update_id": update_id, "message": message})
        self.messages[update_id] = message
        self._new.set()
        return update_id

    def user_presses(self, sent: dict[str, Any], data: str, *, user_id: int, username: str | None = None) -> int:
        """A user presses an inline button (callback data `data`) under a message the bot sent."""
        update_id = next(self._ids)
        user = {"id": user_id, "is_bot": False, "first_name": "Тест", **({"username": username} if username else {})}
        message = {
            "message_id": sent["message_id"], "date": int(time.time()), "text": sent["text"],
            "chat": {"id": sent["chat_id"], "type": "private"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "MultyWorkemon"},
        }
        query = {"id": f"cq{update_id}", "from": user, "message": message, "chat_instance": str(sent["chat_id"]), "data": data}
        self.updates.append({"update_id": update_id, "callback_query": query})
        self._new.set()
        return update_id

    async def wait_callback_answers(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.callback_answers) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"answered {self.callback_answers}, expected {count} callback answer(s)")
            await asyncio.sleep(0.05)
        return self.callback_answers

    def to(self, chat_id: int) -> list[str]:
        return [m["text"] for m in self.sent if m["chat_id"] == chat_id]

    def replies_to(self, chat_id: int) -> list[int]:
        """The update ids of the user messages the bot's messages to this chat replied to, in order."""
        by_message = {m["message_id"]: update_id for update_id, m in self.messages.items()}
        return [by_message.get(m["reply_to"]) for m in self.sent if m["chat_id"] == chat_id]

    async def wait_confirmed(self, update_ids: list[int], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not set(update_ids) <= set(self.confirmed):
            if time.monotonic() > deadline:
                raise AssertionError(f"confirmed {self.confirmed}, expected {update_ids} among them")
            await asyncio.sleep(0.05)

    async def wait_sent(self, chat_id: int, count: int = 1, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.to(chat_id)) >= count:
                return self.to(chat_id)
            await asyncio.sleep(0.05)
        raise AssertionError(f"chat {chat_id} got {self.to(chat_id)}, expected {count} message(s)")

    # The Bot API.
    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"].lower()
        params = dict(await request.post()) if request.method == "POST" else dict(request.query)
        if request.content_type == "application/json":
            params = await request.json()
        self.calls.append(method)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        return await handler(params)

    async def _m_getme(self, params) -> web.Response:
        return _ok({"id": BOT_ID, "is_bot": True, "first_name": "MultyWorkemon", "username": "multyworkemon_test_bot"})

    async def _m_deletewebhook(self, params) -> web.Response:
        return _ok(True)

    async def _m_getupdates(self, params) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        if offset:
            self.confirmed += [u["update_id"] for u in self.updates if u["update_id"] < offset]
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if self._polling:
            self.conflicts += 1
            return _error(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running")
        self._polling += 1
        try:
            deadline = time.monotonic() + timeout
            while not self.updates and time.monotonic() < deadline:
                self._new.clear()
                try:
                    await asyncio.wait_for(self._new.wait(), timeout=max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
            return _ok(self.updates[:limit])
        finally:
            self._polling -= 1

    async def _m_sendmessage(self, params) -> web.Response:
        chat_id = int(params["chat_id"])
        text = str(params.get("text") or "")
        if not text:
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        if chat_id in self.blocked_chats:
            return _error(403, "Forbidden: bot was blocked by the user")
        reply_to = params.get("reply_to_message_id")
        if reply_to is None and params.get("reply_parameters"):
            reply_to = json.loads(params["reply_parameters"]).get("message_id")
        message_id = next(self._message_ids)
        markup = params.get("reply_markup")
        markup = json.loads(markup) if isinstance(markup, str) else markup
        self.sent.append({
            "chat_id": chat_id, "text": text, "reply_to": int(reply_to) if reply_to else None, "message_id": message_id,
            "reply_markup": markup,
        })
        return _ok({
            "message_id": message_id, "date": int(time.time()), "text": text,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "MultyWorkemon", "username": "multyworkemon_test_bot"},
        })

    async def _m_answercallbackquery(self, params) -> web.Response:
        self.callback_answers.append({"id": params.get("callback_query_id"), "text": params.get("text")})
        return _ok(True)

    async def _m_sendchataction(self, params) -> web.Response:
        self.chat_actions.append((int(params["chat_id"]), str(params.get("action"))))
        return _ok(True)


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(code: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)
