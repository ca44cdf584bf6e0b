"""The secretary's small rules: which action a final answer gets, how a discussion reads."""

import pytest

from ai_secretary.pipeline import discussion_text, normalise_action


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
    assert normalise_action(proposed, channel) == expected


def test_discussion_lists_request_questions_and_answers():
    earlier = [
        {"request": "Нужна аналитика", "question": "Какая?"},
        {"request": "По кошелькам", "question": "Какие операции?"},
    ]
    assert discussion_text(earlier, "Авторизации") == (
        "Исходное обращение: Нужна аналитика\n"
        "Уточняющий вопрос: Какая?\n"
        "Ответ пользователя: По кошелькам\n"
        "Уточняющий вопрос: Какие операции?\n"
        "Ответ пользователя: Авторизации"
    )
    assert discussion_text([], "Просто запрос") == "Просто запрос"
