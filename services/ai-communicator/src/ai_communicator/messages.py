"""A message as every channel hands it over, and what handling it can come to: an action's
outcome, or a failure worth trying again.

Its own module so that the channels, the actions and the Jira client all depend on it and never
on each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from multyworkemon_common.errors import UpstreamError


class Failure(Exception):
    """Handling a message failed and it stays to be tried again.

    `outage`: the peer could not be reached or said it is busy; such tries do not count towards
    setting the message aside, so an outage loses nothing. Any other failure counts.
    `retry_after`: the secretary limited this user's rate and said when to send again.
    """

    def __init__(self, message: str, *, outage: bool, retry_after: str | None = None):
        super().__init__(message)
        self.outage = outage
        self.retry_after = retry_after


def upstream_failure(exc: UpstreamError) -> Failure:
    # 503 without an answer: unreachable; 409: the same message is still being processed.
    outage = (exc.answered is None and exc.status == 503) or exc.answered in (409, 429, 503)
    retry_after = (exc.retry_after or "60") if exc.answered == 429 else None
    return Failure(exc.message, outage=outage, retry_after=retry_after)


@dataclass
class ActionOutcome:
    action: str
    status: str  # done | failed
    external_id: str | None
    note: str  # what the user is told about it


@dataclass
class Inbound:
    """A message as every channel hands it over."""

    channel: str  # email | tg | direct
    username: str  # who the channel says the sender is: the e-mail address, the Telegram user id, the proxy's e-mail or anon:<id>
    text: str
    message_id: str | None  # the channel's id; the secretary keys it per sender
    arrived: float  # epoch seconds
    # Sends the text back with a way to rate the answer with this turn id (None: nothing to rate);
    # returns the sent message's id.
    reply: Callable[[str, int | None], Awaitable[str | None]]
    sender_label: str = ""  # how colleagues see the sender (name and address)
    thread: str | None = None  # the channel's discussion thread
    verified: bool = False  # the channel authenticated the sender: actions on their behalf are allowed
    handle: str | None = None  # the Telegram user name
    links_apart: bool = False  # the channel shows the sources as links of its own (the web chat): not in the text too
