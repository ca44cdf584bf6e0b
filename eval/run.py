"""`make eval`: answer quality on a fixed set of requests (eval/cases.yaml), per class.

The real stack answers them: PostgreSQL (embedded, or TEST_DATABASE_URL), the guesser, the analyst
with the sample knowledge base `make run` loads, and the secretary, on the offline model unless
LLM_PROVIDER (and the other LLM_* settings) name another. Each case is one thread of the web chat
from a known, verified employee; it is right when the last answer's action is the expected one and
its first source is the expected document (no source when the base does not cover the request).

    uv run --frozen python eval/run.py [--show-failures]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]
os.environ.setdefault("SERVICE_TOKEN", "eval-service-token")

from support.postgres import PostgresServer  # noqa: E402
from support.stack import KNOWLEDGE, start_stack  # noqa: E402

from multyworkemon_common.contract import (  # noqa: E402
    ACTION_CLARIFY, ACTION_DEPARTMENT_MAILING, ACTION_JIRA, ACTION_REPLY_MESSAGE, ACTION_TELEGRAM_EMPLOYEE, AnalysisResponse,
    AnalyzeRequest,
)

CASES = Path(__file__).with_name("cases.yaml")
ACTIONS = {
    "reply": ACTION_REPLY_MESSAGE, "clarify": ACTION_CLARIFY, "jira": ACTION_JIRA,
    "colleague": ACTION_TELEGRAM_EMPLOYEE, "mailing": ACTION_DEPARTMENT_MAILING,
}
USER = "smirnovanton@example.com"  # in services/ai-secretary/users.example.yaml


@dataclass
class Outcome:
    case: dict
    action: str
    first_source: str | None
    answer: str

    @property
    def action_ok(self) -> bool:
        return self.action == ACTIONS[self.case["action"]]

    @property
    def source_ok(self) -> bool:
        expected = self.case["source"]
        if expected is None:
            return self.first_source is None
        # One document, or several that are each a right first source.
        return any((self.first_source or "").endswith("/" + name) for name in ([expected] if isinstance(expected, str) else expected))

    @property
    def ok(self) -> bool:
        return self.action_ok and self.source_ok


def load_cases() -> list[dict]:
    return yaml.safe_load(CASES.read_text(encoding="utf-8"))["cases"]


async def ask(session: aiohttp.ClientSession, secretary: str, case: dict, n: int) -> Outcome:
    answer = None
    for i, text in enumerate(case["turns"]):
        request = AnalyzeRequest(
            channel="direct", username=USER, request=text, message_id=f"eval-{n}-{i}", thread=f"eval-thread-{n}", verified=True,
        )
        async with session.post(f"{secretary}/analyze-request", json=request.model_dump(exclude_none=True)) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"case {n}: {response.status} {body}")
        answer = AnalysisResponse.model_validate(body)
    return Outcome(case, answer.action, answer.sources[0].url if answer.sources else None, answer.response)


async def evaluate(database_url: str, llm: dict | None = None) -> list[Outcome]:
    """Every case against a fresh stack on `database_url`; the outcomes in the order of the set."""
    stack = await start_stack(
        database_url, llm=llm, analyst_settings={"knowledge_dir": str(KNOWLEDGE)},
        # The set is one person's many requests: no rate limit in the way.
        secretary={"rate_limit_per_minute": 0},
    )
    headers = {"X-Service-Token": os.environ["SERVICE_TOKEN"]}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            return [await ask(session, stack.secretary, case, n) for n, case in enumerate(load_cases())]
    finally:
        await stack.stop()


def accuracy(outcomes: list[Outcome]) -> dict[str, float]:
    """The share of right answers per class, and overall ("all")."""
    by_class: dict[str, list[bool]] = defaultdict(list)
    for outcome in outcomes:
        by_class[outcome.case["class"]].append(outcome.ok)
        by_class["all"].append(outcome.ok)
    return {name: sum(oks) / len(oks) for name, oks in by_class.items()}


def report(outcomes: list[Outcome], provider: str, show_failures: bool) -> str:
    lines = [f"Answer quality on {len(outcomes)} requests, model: {provider}", f"{'class':<20} {'right':>7} {'action':>7} {'source':>7}"]
    classes = list(dict.fromkeys(o.case["class"] for o in outcomes))
    for name in [*classes, "all"]:
        chosen = [o for o in outcomes if name in ("all", o.case["class"])]
        share = lambda pick: f"{sum(map(pick, chosen))}/{len(chosen)}"  # noqa: E731
        lines.append(f"{name:<20} {share(lambda o: o.ok):>7} {share(lambda o: o.action_ok):>7} {share(lambda o: o.source_ok):>7}")
    lines.append(f"accuracy: {accuracy(outcomes)['all']:.1%}")
    if show_failures:
        for o in outcomes:
            if not o.ok:
                lines.append(f"- [{o.case['class']}] {' / '.join(o.case['turns'])}: action {o.action} "
                             f"(want {ACTIONS[o.case['action']]}), first source {o.first_source} (want {o.case['source']})")
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-failures", action="store_true", help="list every case answered wrong")
    args = parser.parse_args()
    provider = os.environ.get("LLM_PROVIDER", "offline")
    postgres = PostgresServer()
    try:
        url = await postgres.create_database()
        try:
            outcomes = await evaluate(url, {"llm_provider": provider})
        finally:
            await postgres.drop_database(url)
    finally:
        postgres.stop()
    print(report(outcomes, f"{provider} {os.environ.get('LLM_MODEL', '')}".strip(), args.show_failures))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
