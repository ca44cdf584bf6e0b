"""A local server speaking Jira's REST API v2 for issue creation (POST /rest/api/2/issue)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from support.loopback import LoopbackServer

TOKEN = "jira-personal-access-token-for-tests"


@dataclass
class JiraAPI(LoopbackServer):
    project: str = "MW"
    token: str = TOKEN
    issues: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    fail_status: int | None = None  # answer every creation with this status (a broken Jira)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/rest/api/2/issue", self._create)
        app.router.add_get("/rest/api/2/issue/{key}", self._get)

    async def wait_issues(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.issues) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(self.issues) >= count, f"{len(self.issues)} issue(s), expected {count}"
        return self.issues

    async def _create(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"errorMessages": ["You are not authenticated."], "errors": {}}, status=401)
        if self.fail_status:
            return web.json_response({"errorMessages": ["Internal server error"], "errors": {}}, status=self.fail_status)
        try:
            fields = (await request.json())["fields"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"errorMessages": ["Unexpected body: expected {\"fields\": {...}}"], "errors": {}}, status=400)
        errors = {}
        if (fields.get("project") or {}).get("key") != self.project:
            errors["project"] = "valid project is required"
        if not (fields.get("summary") or "").strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(fields["summary"]) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        if not (fields.get("issuetype") or {}).get("name"):
            errors["issuetype"] = "issue type is required"
        if errors:
            return web.json_response({"errorMessages": [], "errors": errors}, status=400)
        number = len(self.issues) + 1
        key = f"{self.project}-{number}"
        self.issues.append({"key": key, "fields": fields})
        return web.json_response({"id": str(10000 + number), "key": key, "self": f"{self.url}/rest/api/2/issue/{10000 + number}"}, status=201)

    async def _get(self, request: web.Request) -> web.Response:
        for issue in self.issues:
            if issue["key"] == request.match_info["key"]:
                return web.json_response({"key": issue["key"], "fields": issue["fields"]})
        return web.json_response({"errorMessages": ["Issue does not exist"], "errors": {}}, status=404)
