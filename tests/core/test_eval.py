"""`make eval` in CI: the answer-quality set on the offline model stays at least as good as measured.

Measured on the 44 cases of eval/cases.yaml: 47.7% right before the offline model's fixes of issue
15.3, 70.5% after (every action right; what is left is the knowledge base's ranking of sources).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# eval/run.py is a script (`make eval`), not a package: loaded under a name of its own.
_spec = importlib.util.spec_from_file_location("eval_run", Path(__file__).resolve().parents[2] / "eval" / "run.py")
eval_run = sys.modules["eval_run"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_run)
ACTIONS, accuracy, evaluate, load_cases, report = eval_run.ACTIONS, eval_run.accuracy, eval_run.evaluate, eval_run.load_cases, eval_run.report

FLOOR = 0.68  # 70.5% measured, less one case of margin
ACTION_FLOOR = 0.95  # 100% measured


def test_the_set_is_realistic_and_covers_the_classes():
    cases = load_cases()
    classes = {case["class"] for case in cases}
    assert len(cases) >= 40 and {"data access", "reports", "broken dashboards", "card limits", "jira", "not covered", "clarification"} <= classes
    assert any(len(case["turns"]) > 1 for case in cases), "multi-turn clarifications"
    english = [case for case in cases if all(ord(ch) < 128 for ch in "".join(case["turns"]))]
    assert len(english) >= 8 and all(case["action"] in ACTIONS for case in cases)


async def test_offline_model_accuracy_stays_above_the_floor(database_url):
    outcomes = await evaluate(database_url, {"llm_provider": "offline"})
    print(report(outcomes, "offline", show_failures=True))
    assert accuracy(outcomes)["all"] >= FLOOR
    assert sum(o.action_ok for o in outcomes) / len(outcomes) >= ACTION_FLOOR
    # The named failures: a question about Jira is answered, a clear task without a domain
    # word is a task, and the option "пополнения и списания" cites the operations cube first.
    by_text = {" / ".join(o.case["turns"]): o for o in outcomes}
    assert by_text["Как поставить задачу в Jira команде данных, какой проект выбрать?"].action == "ответить сообщением"
    assert by_text["Сделайте, пожалуйста, новую выгрузку для финансового контроля: ежедневный файл с комиссиями"].action == "создать jira-task"
    picked = by_text["Я хочу получать аналитику о операциях наших кошельков / пополнения и списания"]
    assert picked.first_source.endswith("Wallet+Operations+Cube")
    for outcome in outcomes:  # no excerpt pasted twice
        sentences = [s for s in outcome.answer.split(". ") if len(s) > 40]
        assert len(sentences) == len(set(sentences)), outcome.answer
