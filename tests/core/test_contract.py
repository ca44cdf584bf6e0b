"""Each service's own OpenAPI document held against the seed's contract (docs/contract/seed-README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "docs/contract/seed-README.md"
SHARED_SEED = ROOT.parent / "shared/seeds/MultyWorkemon-README.md"


def seed_section(start: str, end: str | None) -> str:
    text = SEED.read_text(encoding="utf-8")
    body = text[text.index(start):]
    return body[: body.index(end)] if end else body


def seed_parameters(section: str) -> dict[str, bool]:
    """Parameter names and `required` from a seed fragment (it spells some as `- department: department`)."""
    params: dict[str, bool] = {}
    for match in re.finditer(r"-\s+(?:name|department|position|context):\s+(\S+)(.*?)(?=\n\s+-\s+\w+:|\n\s+responses:)", section, re.S):
        params[match.group(1).strip('"')] = "required: true" in match.group(2)
    return params


def seed_enum(section: str, field: str) -> list[str]:
    marker = f"name: {field}" if f"name: {field}" in section else f"{field}:"
    block = section[section.index(marker):]
    inline = re.search(r"enum:\s*\[([^\]]+)\]", block[:600])
    if inline:
        return [v.strip() for v in inline.group(1).split(",")]
    items = block[block.index("enum:"):].splitlines()[1:]
    values = []
    for line in items:
        if not line.strip().startswith("- "):
            break
        values.append(line.strip()[2:].strip())
    return values


def seed_required(section: str, schema: str) -> list[str]:
    block = section[section.index(f"{schema}:"):]
    block = block[block.index("required:"):]
    values = []
    for line in block.splitlines()[1:]:
        if not line.strip().startswith("- "):
            break
        values.append(line.strip()[2:])
    return values


SECRETARY = seed_section("### AI-Secretary", "### AI-Guesser")
GUESSER = seed_section("### AI-Guesser", "### AI-SystemAnalitic")
ANALYST = seed_section("### AI-SystemAnalitic", "## Setup Instructions")


def test_vendored_seed_is_the_shared_one():
    # The copy in the repo is what the tests read; it must not drift from the shared seed.
    if SHARED_SEED.exists():
        assert SEED.read_bytes() == SHARED_SEED.read_bytes()
    assert "analyze-request" in SEED.read_text(encoding="utf-8")


async def _spec(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/oas/spec") as response:
        assert response.status == 200
        return await response.json()


def _schema(spec: dict, ref_holder: dict) -> dict:
    ref = ref_holder["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    return spec["components"]["schemas"][ref]


def _params(operation: dict) -> dict[str, dict]:
    return {p["name"]: p for p in operation.get("parameters", [])}


@pytest.mark.parametrize(
    ("service", "path", "section", "response_schema"),
    [
        ("secretary", "/analyze-request", SECRETARY, "AnalysisResponse"),
        ("guesser", "/get-context", GUESSER, "ContextResponse"),
        ("analyst", "/prepare-analititcs", ANALYST, "ContextResponse"),
    ],
)
async def test_openapi_matches_seed(stack, service, path, section, response_schema):
    spec = await _spec(stack.url(service))
    operation = spec["paths"][path]["get"]
    ours = _params(operation)
    wanted = seed_parameters(section)
    assert wanted, "the seed fragment lists parameters"
    for name, required in wanted.items():
        if name in ("context", "preparedcontext"):
            # The seed names it both ways; both are served, so neither alone can be `required`.
            assert {"context", "preparedcontext"} <= set(ours)
            continue
        assert name in ours, f"{path}: parameter {name} missing"
        assert ours[name]["required"] is required, f"{path}: {name} required should be {required}"
    answer = _schema(spec, operation["responses"]["200"])
    for field in seed_required(section, response_schema):
        assert field in answer["properties"], f"{path}: {field} missing from the answer"
        assert field in answer.get("required", []), f"{path}: {field} should be required"
    for code in ("400",):
        error = _schema(spec, operation["responses"][code])
        assert set(error["properties"]) == {"error", "message", "statusCode"}
    assert "post" in spec["paths"][path], f"{path} also accepts POST"


async def test_secretary_enums_match_seed(stack):
    spec = await _spec(stack.secretary)
    operation = spec["paths"]["/analyze-request"]["get"]
    channel = _params(operation)["channel"]["schema"]
    assert channel["enum"] == seed_enum(SECRETARY, "channel") == ["email", "tg", "direct"]
    answer = _schema(spec, operation["responses"]["200"])
    actions = seed_enum(SECRETARY, "action")
    assert len(actions) == 6
    assert answer["properties"]["action"]["enum"] == actions
    assert "context-response" in answer["properties"]


async def test_analyst_alias_path_is_served(stack):
    spec = await _spec(stack.url("analyst"))
    assert {"/prepare-analititcs", "/prepare-analytics"} <= set(spec["paths"])
