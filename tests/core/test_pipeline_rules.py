"""The secretary's small rules: which action a final answer gets, and who may have actions taken for them."""

import pytest

from ai_secretary.pipeline import final_action
from multyworkemon_common.contract import AnalyzeRequest, DiscussionTurn, PersonInfo, discussion_text, users_words

EMPLOYEE = PersonInfo(username="smirnovanton", department="Аналитика", position="Аналитик", known=True)
STRANGER = PersonInfo(username="email:x@y.example", department="не указано", position="не указана", known=False)


def message(channel: str, verified: bool = True) -> AnalyzeRequest:
    return AnalyzeRequest(channel=channel, username="x", request="r", verified=verified)


@pytest.mark.parametrize(
    ("proposed", "channel", "expected"),
    [
        ("создать jira-task", "tg", "создать jira-task"),
        ("написать в telegram сотруднику", "email", "написать в telegram сотруднику"),
        ("написать в рассылку департамента", "direct", "написать в рассылку департамента"),
        ("ответить сообщением", "email", "ответить на письмо"),
        ("ответить на письмо", "tg", "ответить сообщением"),
        ("уточнить", "direct", "ответить сообщением"),
        ("сделать что-нибудь", "email", "ответить на письмо"),
        (None, "tg", "ответить сообщением"),
    ],
)
def test_final_answer_actions(proposed, channel, expected):
    assert final_action(proposed, message(channel), EMPLOYEE) == (expected, False)


@pytest.mark.parametrize(("verified", "person"), [(False, EMPLOYEE), (True, STRANGER), (False, STRANGER)])
def test_actions_on_someones_behalf_need_an_authenticated_sender_in_the_directory(verified, person):
    assert final_action("создать jira-task", message("email", verified), person) == ("ответить на письмо", True)
    assert final_action("написать в рассылку департамента", message("direct", verified), person) == ("ответить сообщением", True)


def test_the_discussion_travels_as_turns_and_only_the_users_words_are_searched():
    discussion = [
        DiscussionTurn(role="user", text="Нужна аналитика"),
        DiscussionTurn(role="assistant", text="Какая: по картам или кошелькам?"),
        DiscussionTurn(role="user", text="По кошелькам"),
    ]
    assert users_words(discussion, "fallback") == "Нужна аналитика\nПо кошелькам"
    assert users_words([], "Просто запрос") == "Просто запрос"
    assert discussion_text(discussion) == (
        "Пользователь: Нужна аналитика\nMultyWorkemon: Какая: по картам или кошелькам?\nПользователь: По кошелькам"
    )
