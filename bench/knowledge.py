"""`make bench-kb`: the knowledge base at 1k, 10k and 100k documents: load time, search p50/p99, quality.

For each size: the 18 sample pages plus synthetic noise pages (tests/support/knowledge_noise.py:
300 words each drawn from the samples' own words) are written to .run/bench-kb/<size>/ once, loaded
into a fresh database of an embedded PostgreSQL with the project's own loader (timed, then loaded
again unchanged, timed, and again after every file was touched: new mtimes, the same bytes, as a
fresh checkout leaves them), and searched with the quality test's requests (tests/knowledge/
test_search_quality.py), one after the other, several rounds after a warm-up round. Printed per
size: load and re-load times, search p50/p99/max, and the quality test's first-hit accuracy there;
at the largest size, the same with the search's candidate cuts set otherwise (the options measured).

    uv run --frozen python bench/knowledge.py [--sizes 1000 10000 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]

from run_local import RUN_DIR  # noqa: E402
from support.knowledge_noise import write_pages  # noqa: E402
from support.postgres import PostgresServer  # noqa: E402

from ai_systemanalitic import knowledge as search_module  # noqa: E402
from ai_systemanalitic.app import AnalystSettings, knowledge_base, load_knowledge, migrate  # noqa: E402
from knowledge.test_search_quality import TABLE, THRESHOLD  # noqa: E402
from multyworkemon_common.database import Database  # noqa: E402

SAMPLES = ROOT / "services/ai-systemanalitic/knowledge"
SIZES = (1_000, 10_000, 100_000)
TARGETS = {"p50 ms": 20.0, "p99 ms": 60.0, "load s": 300.0}  # at 100,000 documents (issue 13)


async def postgres_processes(url: str) -> list[psutil.Process]:
    """The server's processes alive now: the postmaster (a backend's parent) and its children."""
    connection = await asyncpg.connect(url)
    try:
        postmaster = psutil.Process(await connection.fetchval("SELECT pg_backend_pid()")).parent()
    finally:
        await connection.close()
    return [postmaster] + postmaster.children(recursive=True)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def row(r: dict) -> str:
    return (f"| {r['size'] + 18:,} | {r['load s']:.1f} | {r['load cpu s']:.0f} | {r['reload s']:.2f} | {r['touched s']:.2f} | {r['searches']} | "
            f"{r['p50 ms']:.1f} | {r['p99 ms']:.1f} | {r['max ms']:.1f} | {r['quality']:.0%} |")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


HEADER = ("\n| documents | load s | load CPU s | re-load unchanged s | re-load touched s | searches | p50 ms | p99 ms | max ms | "
          "first-hit quality |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


async def searches(knowledge, rounds: int, table: list = TABLE) -> tuple[int, list[float]]:
    """First hits of the table, and the times (ms) of `rounds` rounds of its requests."""
    hits = 0
    for request, expected in table:
        found = await knowledge.search(request)
        hits += (found[0].url if found else None) == expected
    times: list[float] = []
    for _ in range(rounds):
        for request, _expected in table:
            started = time.perf_counter()
            await knowledge.search(request)
            times.append((time.perf_counter() - started) * 1000)
    return hits, times


# The search's two cuts (knowledge.py), and what they give at this size: the shipped values first.
# (name, candidates per set, documents of rare words, requests of the table: "no cut" takes seconds each)
OPTIONS = [
    ("shipped: 40 candidates per set, rare words up to 2,000 documents", 40, 2_000, len(TABLE)),
    ("no cut: every document holding a distinctive word is ranked, as before (first 12 requests)", 10**9, 10**9, 12),
    ("title and tag candidates only (no rare words)", 40, 0, len(TABLE)),
    ("20 candidates per set, 500 documents of rare words", 20, 500, len(TABLE)),
    ("80 candidates per set, 8,000 documents of rare words", 80, 8_000, len(TABLE)),
]


async def compare_options(knowledge, size: int) -> None:
    print(f"\nOptions at {size + 18:,} documents (one round of the quality table each):\n", flush=True)
    print("| option | p50 ms | p99 ms | max ms | first-hit quality |\n| --- | ---: | ---: | ---: | ---: |", flush=True)
    shipped = (search_module.CANDIDATES, search_module.RARE_WORDS_BUDGET)
    try:
        for name, candidates, budget, requests in OPTIONS:
            search_module.CANDIDATES, search_module.RARE_WORDS_BUDGET = candidates, budget
            hits, times = await searches(knowledge, 1, TABLE[:requests])
            print(f"| {name} | {statistics.median(times):.1f} | {percentile(times, 0.99):.1f} | {max(times):.1f} | "
                  f"{hits}/{requests} |", flush=True)
    finally:
        search_module.CANDIDATES, search_module.RARE_WORDS_BUDGET = shipped


async def measure(server: PostgresServer, size: int, rounds: int, options: bool = False) -> dict:
    folder = RUN_DIR / "bench-kb" / str(size)
    if not (folder / f"noise-{size - 1:06d}.md").exists():
        print(f"writing {size} noise pages to {folder}", flush=True)
        write_pages(SAMPLES, folder, size)
    url = await server.create_database()
    settings = AnalystSettings(database_url=url, database_timeout=120)  # the "no cut" option takes seconds
    await migrate(settings)
    database = Database(settings)
    try:
        knowledge = knowledge_base(settings, database)
        cpu = cpu_seconds([psutil.Process()] + await postgres_processes(url))
        started = time.perf_counter()
        report = await load_knowledge(knowledge, folder)
        load_s = time.perf_counter() - started
        # CPU seconds of this process and of PostgreSQL: what the load costs whatever else runs on the machine.
        load_cpu = cpu_seconds([psutil.Process()] + await postgres_processes(url)) - cpu
        print(f"{size}: loaded in {load_s:.1f} s, {load_cpu:.0f} CPU s ({report})", flush=True)
        started = time.perf_counter()
        report = await load_knowledge(knowledge, folder)
        reload_s = time.perf_counter() - started
        print(f"{size}: re-loaded unchanged in {reload_s:.2f} s ({report})", flush=True)
        # A minute ago: out of the loader's racy window, so the new mtimes are recorded as a checkout's would be.
        touched = time.time_ns() - 60 * 10**9
        for path in folder.glob("*.md"):
            os.utime(path, ns=(touched, touched))
        started = time.perf_counter()
        report = await load_knowledge(knowledge, folder)
        touched_s = time.perf_counter() - started
        print(f"{size}: re-loaded touched in {touched_s:.2f} s ({report})", flush=True)
        pool = await database.pool()
        await pool.execute("VACUUM ANALYZE")  # as autovacuum would after a load; the bench does not wait for it
        hits, times = await searches(knowledge, rounds)
        result = {
            "size": size, "load s": load_s, "load cpu s": load_cpu, "reload s": reload_s, "touched s": touched_s, "searches": len(times),
            "p50 ms": statistics.median(times), "p99 ms": percentile(times, 0.99), "max ms": max(times),
            "quality": hits / len(TABLE),
        }
        print(row(result), flush=True)
        if options:
            await compare_options(knowledge, size)
        return result
    finally:
        await database.close()
        await server.drop_database(url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="noise pages added to the 18 samples")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the quality table's requests timed per size")
    parser.add_argument("--options", action=argparse.BooleanOptionalAction, default=True,
                        help="at the largest size, also time the search with other candidate cuts")
    args = parser.parse_args()
    print(f"bench-kb: {psutil.cpu_count()} cores (shared: read the figures with the machine's load in mind), "
          f"load average {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}", flush=True)
    server = PostgresServer()
    try:
        results = [await measure(server, size, args.rounds, args.options and size == max(args.sizes)) for size in args.sizes]
    finally:
        server.stop()
    print(HEADER)
    for r in results:
        print(row(r))
    largest = max(results, key=lambda r: r["size"])
    print(f"\nTargets at {largest['size'] + 18:,} documents (issue 13: measured at 100,018):\n")
    print("| target | met | measured |")
    print("| --- | --- | --- |")
    for name, limit in TARGETS.items():
        print(f"| {name} <= {limit:g} | {'yes' if largest[name] <= limit else 'NO'} | {largest[name]:.1f} |")
    print(f"| quality >= {THRESHOLD:.0%} | {'yes' if largest['quality'] >= THRESHOLD else 'NO'} | {largest['quality']:.0%} |")


if __name__ == "__main__":
    asyncio.run(main())
