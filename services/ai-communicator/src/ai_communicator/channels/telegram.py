"""Telegram (aiogram 3): long polling, /start, /help and /new, a typing indicator, long answers split.

Each chat has its own worker that handles the chat's updates in order (a clarification answers the
question before it) and owns their retries: a failing message is retried in place, an outage
without limit, any other failure up to MAX_ATTEMPTS times, then the user gets an apology and the
worker moves on. Polling goes on meanwhile, so one chat's retries hold up no other chat.

Nothing is lost on a restart: the getUpdates offset only ever moves up to the oldest update not yet
handled, so Telegram keeps (and sends again) every update from there on. Those sent again that were
handled already are skipped here, or, after a restart, answered from the secretary's stored turn
without a second reply. A chat with TELEGRAM_CHAT_QUEUE messages waiting gets further ones declined
with a notice, so one chat cannot fill the window of 100 updates Telegram hands out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress

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
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from aiogram.utils.chat_action import ChatActionSender

from multyworkemon_common.context import trace
from multyworkemon_common.contract import FeedbackRequest
from multyworkemon_common.errors import UpstreamError
from multyworkemon_common.logging import get_logger

from ..handling import APOLOGY, ChannelMetrics, MessageHandler, RetryBook
from ..messages import Failure, Inbound
from ..settings import CommunicatorSettings

log = get_logger("ai_communicator.telegram")
CHANNEL = "tg"
LIMIT = 4096  # Telegram's longest message
RECHECK_SECONDS = 1.0  # how soon to ask for new updates while earlier ones are still being handled

WELCOME = (
    "Здравствуйте! Я MultyWorkemon, помощник по внутренним запросам. Напишите, что вам нужно: "
    "данные, отчёт, доступ, доработку или объяснение, как что-то устроено. Если деталей не хватит, я уточню."
)
HELP = (
    "Просто опишите запрос обычным сообщением, например: «Нужна выгрузка авторизаций по кошелькам за октябрь».\n"
    "Я отвечу, что и где сделать, задам уточняющий вопрос, если нужно, а при необходимости заведу задачу в Jira "
    "или передам запрос ответственному сотруднику.\n"
    "/new — начать новый разговор (незаконченный прежний я закрою), /start — приветствие, /help — эта подсказка."
)
TEXT_ONLY = "Пока я понимаю только текстовые сообщения. Опишите, пожалуйста, запрос текстом."
NOT_ALLOWED = "Этот бот доступен только сотрудникам из списка допущенных. Обратитесь к администратору."
NEW_DONE = "Начинаем новый разговор: прежний закрыт, следующее сообщение я пойму как новый запрос."
NEW_FAILED = "Не получилось начать новый разговор: сервис сейчас недоступен. Попробуйте ещё раз чуть позже."
RATED = "Спасибо за оценку!"
NOT_RATED = "Оценку не удалось сохранить. Попробуйте ещё раз чуть позже."
FEEDBACK = "fb"  # callback data: fb:<turn id>:<up|down>
BUSY = (
    "Я ещё не ответил на ваши предыдущие сообщения, поэтому это сообщение не принял. "
    "Дождитесь ответов и отправьте его ещё раз."
)


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


def feedback_keyboard(turn_id: int) -> InlineKeyboardMarkup:
    """👍/👎 under an answer; pressing one sends a callback query naming the turn."""
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text="👍 Помогло", callback_data=f"{FEEDBACK}:{turn_id}:up"),
        InlineKeyboardButton(text="👎 Не помогло", callback_data=f"{FEEDBACK}:{turn_id}:down"),
    ]])


async def send_text(bot: Bot, chat_id: int | str, text: str, reply_to: int | None = None, rated_turn: int | None = None) -> str:
    """Send (split when long), the last piece with 👍/👎 when there is a turn to rate; the id of the
    first message sent, as `chat:message`."""
    first = None
    pieces = split_text(text)
    try:
        for n, piece in enumerate(pieces, start=1):
            markup = feedback_keyboard(rated_turn) if rated_turn is not None and n == len(pieces) else None
            sent = await bot.send_message(chat_id, piece, reply_to_message_id=reply_to if first is None else None, reply_markup=markup)
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
        router.message.register(self._new, Command("new"))
        router.message.register(self._text, F.text)
        router.message.register(self._other)
        router.callback_query.register(self._rate, F.data.startswith(f"{FEEDBACK}:"))
        self.dispatcher.include_router(router)
        # Updates taken from Telegram, per chat in arrival order; each chat with updates has a worker.
        self._chats: dict[int, deque[Update]] = {}
        self._workers: set[asyncio.Task] = set()
        self._open: set[int] = set()  # update ids taken, not yet handled
        self._handled: set[int] = set()  # handled but above the oldest open one: Telegram sends them again
        self._next: int | None = None  # past the newest update seen
        self._progress = asyncio.Event()  # a worker finished an update

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.connected.set({"channel": CHANNEL}, 1 if value else 0)

    async def run(self) -> None:
        """Poll until cancelled; reconnect after any failure of the Bot API (the chats' workers go on)."""
        delay = 1.0
        try:
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
        finally:
            await self._stop_chats()

    async def _poll(self) -> None:
        timeout = self.settings.telegram_poll_timeout
        while True:
            # Telegram drops every update below the offset: only those handled, up to the oldest open one.
            offset = min(self._open) if self._open else self._next
            self._handled = {update_id for update_id in self._handled if offset is None or update_id >= offset}
            self._progress.clear()
            updates = await self.bot.get_updates(offset=offset, timeout=timeout, allowed_updates=["message", "callback_query"], request_timeout=timeout + 15)
            fresh = [u for u in updates if u.update_id not in self._open and u.update_id not in self._handled]
            for update in fresh:
                await self._take(update)
            if updates:
                self._next = max(self._next or 0, updates[-1].update_id + 1)
            if updates and not fresh:
                # Only updates still being handled came back (an open one is always sent again, so this
                # does not long-poll): ask again once one is handled, or in a moment for new ones.
                with suppress(TimeoutError):
                    async with asyncio.timeout(RECHECK_SECONDS):
                        await self._progress.wait()

    async def _take(self, update: Update) -> None:
        # A button pressed is its user's update: it waits behind that user's messages.
        chat_id = update.message.chat.id if update.message else (update.callback_query.from_user.id if update.callback_query else 0)
        waiting = self._chats.get(chat_id)
        if waiting is not None and len(waiting) >= self.settings.telegram_chat_queue:
            self._handled.add(update.update_id)
            await self._decline(update)
            return
        self._open.add(update.update_id)
        if waiting is None:
            waiting = self._chats[chat_id] = deque()
            worker = asyncio.create_task(self._work(chat_id, waiting), name=f"telegram-chat-{chat_id}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        waiting.append(update)

    async def _work(self, chat_id: int, waiting: deque[Update]) -> None:
        """Handle one chat's updates in order, each to the end (retries included), then go away."""
        try:
            while waiting:
                update = waiting[0]
                await self._handle(update)
                waiting.popleft()
                self._open.discard(update.update_id)
                self._handled.add(update.update_id)
                self._progress.set()
        finally:
            # No await since the queue was found empty: nothing can have been added meanwhile.
            if self._chats.get(chat_id) is waiting:
                del self._chats[chat_id]

    async def _handle(self, update: Update) -> None:
        with trace():
            try:
                await self.dispatcher.feed_update(self.bot, update)
            except TelegramAPIError as exc:  # a greeting or a hint that could not be sent: nothing to retry
                log.warning("could not answer a Telegram command", error=str(exc), labels={"update_id": str(update.update_id)})
            except Exception:  # noqa: BLE001 - a bug must not wedge the chat (messages themselves are retried in _text)
                log.exception("a Telegram update failed; moving on", labels={"update_id": str(update.update_id)})

    async def _decline(self, update: Update) -> None:
        with trace():
            log.warning("a chat has too many messages waiting; declined one", labels={"update_id": str(update.update_id)})
            if update.message is not None:
                with suppress(Failure):
                    await send_text(self.bot, update.message.chat.id, BUSY, update.message.message_id)

    async def _stop_chats(self) -> None:
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        # Whatever was not handled stays with Telegram, which sends it again to whoever polls next.
        self._chats.clear()
        self._open.clear()
        self._handled.clear()
        self._next = None

    def _allowed(self, message: Message) -> bool:
        user = message.from_user
        if not self.allowed:
            return True
        return user is not None and ({str(user.id), (user.username or "").lower()} & self.allowed) != set()

    @staticmethod
    def _sender(message: Message) -> tuple[str, str | None, bool]:
        """(user id, @handle without the @, verified): Telegram vouches for the user id, so the
        secretary matches people by id or by the directory's telegram_username, never by name."""
        user = message.from_user
        if user is None or user.is_bot or message.sender_chat is not None:  # posted as a chat: no person behind it
            return str(message.chat.id), None, False
        return str(user.id), user.username, True

    async def _start(self, message: Message) -> None:
        await message.answer(WELCOME if self._allowed(message) else NOT_ALLOWED)

    async def _help(self, message: Message) -> None:
        await message.answer(HELP if self._allowed(message) else NOT_ALLOWED)

    async def _other(self, message: Message) -> None:
        await message.answer(TEXT_ONLY if self._allowed(message) else NOT_ALLOWED)

    async def _new(self, message: Message) -> None:
        if not self._allowed(message):
            await message.answer(NOT_ALLOWED)
            return
        username, _, _ = self._sender(message)
        try:
            await self.handler.secretary.close_thread(CHANNEL, username, f"tg:{message.chat.id}")
        except UpstreamError as exc:
            log.warning("could not close a Telegram conversation", error=exc.message)
            await message.answer(NEW_FAILED)
            return
        await message.answer(NEW_DONE)

    async def _rate(self, query: CallbackQuery) -> None:
        """👍/👎 pressed: the rating is stored for the user who pressed, only if the answer was theirs."""
        _, turn, rating = (query.data or "").split(":", 2)
        user = query.from_user
        if not turn.isdigit() or rating not in ("up", "down") or user.is_bot:
            await query.answer()
            return
        try:
            request = FeedbackRequest(channel=CHANNEL, username=str(user.id), handle=user.username, rating=rating, turn_id=int(turn))
            result = await self.handler.secretary.rate(request)
        except (UpstreamError, ValueError) as exc:
            log.warning("could not store Telegram feedback", error=str(exc))
            result = None
        await query.answer(RATED if result is not None else NOT_RATED)

    async def _text(self, message: Message) -> None:
        if not self._allowed(message):
            await message.answer(NOT_ALLOWED)
            return
        user = message.from_user
        chat_id = message.chat.id
        username, handle, verified = self._sender(message)
        inbound = Inbound(
            channel=CHANNEL, username=username, text=message.text or "", message_id=f"{chat_id}:{message.message_id}",
            arrived=message.date.timestamp(), reply=lambda text, turn: send_text(self.bot, chat_id, text, message.message_id, turn),
            sender_label=f"{user.full_name} (@{user.username})" if user and user.username else (user.full_name if user else username),
            thread=f"tg:{chat_id}", verified=verified, handle=handle,
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
