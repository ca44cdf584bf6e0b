"""Telegram (aiogram 3): long polling, /start and /help, a typing indicator, long answers split.

An update is acknowledged (the next getUpdates offset moves past it) only once it is handled:
a failing message is retried in place, an outage without limit, any other failure up to
MAX_ATTEMPTS times, then the user gets an apology and the bot moves on.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandStart
from aiogram.types import Message, Update
from aiogram.utils.chat_action import ChatActionSender

from multyworkemon_common.logging import get_logger

from ..handling import APOLOGY, ChannelMetrics, MessageHandler, RetryBook
from ..messages import Failure, Inbound
from ..settings import CommunicatorSettings

log = get_logger("ai_communicator.telegram")
CHANNEL = "tg"
LIMIT = 4096  # Telegram's longest message

WELCOME = (
    "Здравствуйте! Я MultyWorkemon, помощник по внутренним запросам. Напишите, что вам нужно: "
    "данные, отчёт, доступ, доработку или объяснение, как что-то устроено. Если деталей не хватит, я уточню."
)
HELP = (
    "Просто опишите запрос обычным сообщением, например: «Нужна выгрузка авторизаций по кошелькам за октябрь».\n"
    "Я отвечу, что и где сделать, задам уточняющий вопрос, если нужно, а при необходимости заведу задачу в Jira "
    "или передам запрос ответственному сотруднику.\n/start — приветствие, /help — эта подсказка."
)
TEXT_ONLY = "Пока я понимаю только текстовые сообщения. Опишите, пожалуйста, запрос текстом."
NOT_ALLOWED = "Этот бот доступен только сотрудникам из списка допущенных. Обратитесь к администратору."


def make_bot(settings: CommunicatorSettings) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(settings.telegram_bot_token.get_secret_value(), session=session)


def split_text(text: str, limit: int = LIMIT) -> list[str]:
    """Pieces no longer than Telegram allows, cut at a paragraph, line or word where possible."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces or [""]


async def send_text(bot: Bot, chat_id: int | str, text: str, reply_to: int | None = None) -> str:
    """Send (split when long); the id of the first message sent, as `chat:message`."""
    first = None
    try:
        for piece in split_text(text):
            sent = await bot.send_message(chat_id, piece, reply_to_message_id=reply_to if first is None else None)
            first = first or f"{sent.chat.id}:{sent.message_id}"
    except (TelegramNetworkError, TelegramServerError, TelegramRetryAfter) as exc:
        raise Failure(f"Telegram unavailable: {exc}", outage=True) from exc
    except TelegramAPIError as exc:
        raise Failure(f"Telegram refused the message: {exc}", outage=False) from exc
    return first or ""


class TelegramChannel:
    def __init__(self, settings: CommunicatorSettings, bot: Bot, handler: MessageHandler, metrics: ChannelMetrics):
        self.settings = settings
        self.bot = bot
        self.handler = handler
        self.metrics = metrics
        self.connected = False
        self.allowed = settings.allowed_telegram_users()
        self.dispatcher = Dispatcher()
        router = Router(name="multyworkemon")
        router.message.register(self._start, CommandStart())
        router.message.register(self._help, Command("help"))
        router.message.register(self._text, F.text)
        router.message.register(self._other)
        self.dispatcher.include_router(router)

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.connected.set({"channel": CHANNEL}, 1 if value else 0)

    async def run(self) -> None:
        """Poll until cancelled; reconnect after any failure of the Bot API."""
        delay = 1.0
        while True:
            try:
                me = await self.bot.get_me()
                # getUpdates does not work while a webhook is set.
                await self.bot.delete_webhook(drop_pending_updates=False)
                self._set_connected(True)
                delay = 1.0
                log.info("Telegram bot connected", labels={"bot": me.username or str(me.id)})
                await self._poll()
            except TelegramUnauthorizedError:
                log.error("Telegram rejected the bot token; check TELEGRAM_BOT_TOKEN")
                delay = 60.0
            except TelegramAPIError as exc:
                log.warning("Telegram Bot API failed; reconnecting", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._set_connected(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _poll(self) -> None:
        offset = None
        timeout = self.settings.telegram_poll_timeout
        while True:
            updates = await self.bot.get_updates(offset=offset, timeout=timeout, allowed_updates=["message"], request_timeout=timeout + 15)
            if not updates:
                continue
            # Chats in parallel, each chat's messages in order (a clarification answers the question before it).
            by_chat: dict[int, list[Update]] = defaultdict(list)
            for update in updates:
                by_chat[update.message.chat.id if update.message else 0].append(update)
            await asyncio.gather(*(self._handle_in_order(chat_updates) for chat_updates in by_chat.values()))
            # The next getUpdates with this offset acknowledges the batch, now that all of it is handled.
            offset = updates[-1].update_id + 1

    async def _handle_in_order(self, updates: list[Update]) -> None:
        for update in updates:
            try:
                await self.dispatcher.feed_update(self.bot, update)
            except TelegramAPIError as exc:  # a greeting or a hint that could not be sent: nothing to retry
                log.warning("could not answer a Telegram command", error=str(exc), labels={"update_id": str(update.update_id)})

    def _allowed(self, message: Message) -> bool:
        user = message.from_user
        if not self.allowed:
            return True
        return user is not None and ({str(user.id), (user.username or "").lower()} & self.allowed) != set()

    async def _start(self, message: Message) -> None:
        await message.answer(WELCOME if self._allowed(message) else NOT_ALLOWED)

    async def _help(self, message: Message) -> None:
        await message.answer(HELP if self._allowed(message) else NOT_ALLOWED)

    async def _other(self, message: Message) -> None:
        await message.answer(TEXT_ONLY if self._allowed(message) else NOT_ALLOWED)

    async def _text(self, message: Message) -> None:
        if not self._allowed(message):
            await message.answer(NOT_ALLOWED)
            return
        user = message.from_user
        chat_id = message.chat.id
        name = (user.username if user else None) or str(user.id if user else chat_id)
        inbound = Inbound(
            channel=CHANNEL, username=name, text=message.text or "", message_id=f"{chat_id}:{message.message_id}",
            arrived=message.date.timestamp(), reply=lambda text: send_text(self.bot, chat_id, text, message.message_id),
            sender_label=f"{user.full_name} (@{user.username})" if user and user.username else (user.full_name if user else name),
        )
        retries = RetryBook(self.settings.max_attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds)
        key = inbound.message_id
        while True:
            counter = self.metrics.retried if retries.seen(key) else self.metrics.received
            counter.inc({"channel": CHANNEL})
            try:
                async with ChatActionSender.typing(bot=self.bot, chat_id=chat_id, interval=4.0):
                    handled = await self.handler.attempt(inbound)
            except Failure as failure:
                self.metrics.failed.inc({"channel": CHANNEL})
                if retries.failed(key, failure):
                    await self._give_up(chat_id, message, failure)
                    return
                log.warning("Telegram message not handled; will retry", error=str(failure), labels={"outage": str(failure.outage)})
                await asyncio.sleep(retries.seconds_to_next() or 0)
                continue
            if not handled.repeated:
                self.metrics.answered(CHANNEL, inbound.arrived)
            log.info("Telegram message answered", labels={"action": handled.answer.action, "turn_id": str(handled.answer.turn_id)})
            return

    async def _give_up(self, chat_id: int, message: Message, failure: Failure) -> None:
        self.metrics.poison.inc({"channel": CHANNEL})
        log.error("Telegram message failed every try; apologised and moved on", error=str(failure))
        try:
            await send_text(self.bot, chat_id, APOLOGY, message.message_id)
        except Failure as exc:
            log.warning("could not send the apology", error=str(exc))
