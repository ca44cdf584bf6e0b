"""Creating an issue through Jira's REST API (v2: plain-text description, Cloud and Data Center alike)."""

from __future__ import annotations

import asyncio

import aiohttp

from .messages import Failure

OUTAGE_STATUSES = (429, 502, 503, 504)


class Jira:
    def __init__(self, base_url: str, project_key: str, token: str, *, user: str = "", issue_type: str = "Task", timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.project_key = project_key
        self.issue_type = issue_type
        # Cloud: Basic with the account's e-mail and an API token; Data Center: Bearer personal access token.
        self._auth = aiohttp.BasicAuth(user, token) if user else None
        self._headers = {} if user else {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def browse_url(self, key: str) -> str:
        return f"{self.base_url}/browse/{key}"

    async def create_issue(self, summary: str, description: str, labels: list[str]) -> str:
        """The new issue's key; Failure (an outage or an answered error) otherwise."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, auth=self._auth, headers=self._headers)
        fields = {
            "project": {"key": self.project_key},
            "issuetype": {"name": self.issue_type},
            "summary": summary,
            "description": description,
            "labels": labels,
        }
        try:
            async with self._session.post(f"{self.base_url}/rest/api/2/issue", json={"fields": fields}) as response:
                body = await response.json(content_type=None) if response.content_length != 0 else None
                status = response.status
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise Failure(f"Jira unreachable: {type(exc).__name__}", outage=True) from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise Failure(f"Jira answered badly: {type(exc).__name__}", outage=False) from exc
        if status == 201 and isinstance(body, dict) and body.get("key"):
            return str(body["key"])
        raise Failure(f"Jira answered {status}: {_jira_errors(body)}", outage=status in OUTAGE_STATUSES)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _jira_errors(body) -> str:
    if not isinstance(body, dict):
        return "no detail"
    messages = list(body.get("errorMessages") or []) + [f"{k}: {v}" for k, v in (body.get("errors") or {}).items()]
    return "; ".join(messages) or "no detail"
