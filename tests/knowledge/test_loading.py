"""Loading a folder of Markdown documents: at start, by command, again after edits (added, changed, deleted)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ai_systemanalitic.app import load_knowledge
from ai_systemanalitic.documents import Document, KnowledgeFolderError, parse_markdown, read_folder
from support.client import get

from .conftest import SAMPLES, open_knowledge

WIKI = "https://wiki.example.internal/display/TEST"


def write_doc(folder: Path, name: str, title: str, url: str, text: str, tags: str = "[test]") -> None:
    folder.joinpath(name).parent.mkdir(parents=True, exist_ok=True)
    folder.joinpath(name).write_text(f"---\ntitle: \"{title}\"\nurl: {url}\ntags: {tags}\n---\n# {title}\n\n{text}\n", encoding="utf-8")


@pytest.fixture
def folder(tmp_path) -> Path:
    docs = tmp_path / "kb"
    write_doc(docs, "treasury.md", "Казначейство: ликвидность", f"{WIKI}/Treasury", "Позиция ликвидности на конец дня и прогноз остатков на счетах.")
    write_doc(docs, "hr/vacations.md", "Отпуска сотрудников", f"{WIKI}/Vacations", "Как оформить отпуск в кадровом портале.")
    write_doc(docs, "loyalty.md", "Программа лояльности", f"{WIKI}/Loyalty", "Кэшбэк баллами за оплаты кошельком.")
    return docs


async def test_reloading_applies_added_changed_and_deleted_files(knowledge, folder):
    first = await load_knowledge(knowledge, folder)
    assert (len(first.added), first.updated, first.removed, first.unchanged) == (3, [], [], 0)
    assert (await knowledge.search("кэшбэк баллами"))[0].url == f"{WIKI}/Loyalty"

    write_doc(folder, "loyalty.md", "Программа лояльности", f"{WIKI}/Loyalty", "Партнёрские скидки по подписке вместо кэшбэка.")
    (folder / "hr/vacations.md").unlink()
    write_doc(folder, "cashback.md", "Кэшбэк за оплаты", f"{WIKI}/Cashback", "Правила начисления кэшбэка баллами за оплаты кошельком.")
    second = await load_knowledge(knowledge, folder)
    assert second.added == [f"{WIKI}/Cashback"]
    assert second.updated == [f"{WIKI}/Loyalty"]
    assert second.removed == [f"{WIKI}/Vacations"]
    assert second.unchanged == 1

    assert (await knowledge.search("кэшбэк баллами"))[0].url == f"{WIKI}/Cashback", "the changed text is what is searched"
    assert (await knowledge.search("партнерские скидки по подпизке"))[0].url == f"{WIKI}/Loyalty", "new words, typo included"
    assert await knowledge.search("оформить отпуск") == [], "a deleted file's document is gone"
    total, items = await knowledge.list(50, 0)
    assert total == 3 and {i["path"] for i in items} == {"treasury.md", "loyalty.md", "cashback.md"}

    third = await load_knowledge(knowledge, folder)
    assert not third.changed and third.unchanged == 3, "loading the same folder again changes nothing"


def age(path: Path, seconds: int = 3600) -> None:
    """Set the mtime of a file, or of every file under a folder, this long ago: out of a load's racy window."""
    then = time.time_ns() - seconds * 1_000_000_000
    for file in [path] if path.is_file() else path.rglob("*.md"):
        os.utime(file, ns=(then, then))


def same_size_edit(path: Path, old: str, new: str) -> None:
    """Replace words by others of the same length in bytes, and put the file's mtime back."""
    stat = path.stat()
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


async def row_versions(knowledge) -> dict[str, str]:
    """The transaction that last wrote each row of the documents and of the files read (xmin)."""
    rows = await (await knowledge.database.pool()).fetch(
        "SELECT 'document ' || url AS row, xmin::text FROM knowledge_documents UNION ALL SELECT 'file ' || path, xmin::text FROM knowledge_files",
    )
    return {row["row"]: row["xmin"] for row in rows}


async def test_an_unchanged_reload_reads_no_file_and_writes_nothing(knowledge, folder):
    age(folder)
    await load_knowledge(knowledge, folder)
    before = await row_versions(knowledge)
    assert sorted(row for row in before if row.startswith("file ")) == ["file hr/vacations.md", "file loyalty.md", "file treasury.md"]

    # Other bytes of the same size under the same mtime: only reading the file would tell.
    same_size_edit(folder / "loyalty.md", "Кэшбэк", "Скидки")
    report = await load_knowledge(knowledge, folder)
    assert (report.changed, report.unchanged) == (False, 3)
    assert await row_versions(knowledge) == before, "nothing was written"
    assert (await knowledge.search("кэшбэк баллами"))[0].url == f"{WIKI}/Loyalty", "the file was not read"

    os.utime(folder / "loyalty.md")  # any save or touch gives a new mtime
    report = await load_knowledge(knowledge, folder)
    assert (report.updated, report.unchanged) == ([f"{WIKI}/Loyalty"], 2)
    assert (await knowledge.search("скидки баллами"))[0].url == f"{WIKI}/Loyalty"


async def test_a_same_size_edit_keeping_the_mtime_is_seen_within_the_racy_window(knowledge, folder):
    # Just written: two saves within the file system's timestamp granularity may leave one mtime,
    # so the load records no stat of these files and reads them again next time.
    await load_knowledge(knowledge, folder)
    same_size_edit(folder / "loyalty.md", "Кэшбэк", "Скидки")
    report = await load_knowledge(knowledge, folder)
    assert (report.updated, report.unchanged) == ([f"{WIKI}/Loyalty"], 2)
    assert (await knowledge.search("скидки баллами"))[0].url == f"{WIKI}/Loyalty"


async def test_a_touched_but_identical_file_only_gets_its_stat_renewed(knowledge, folder):
    age(folder)
    await load_knowledge(knowledge, folder)
    before = await row_versions(knowledge)
    age(folder / "treasury.md", 1800)  # as a checkout or a copy does: a new mtime, the same bytes
    report = await load_knowledge(knowledge, folder)
    assert (report.changed, report.unchanged) == (False, 3)
    after = await row_versions(knowledge)
    assert {row for row in before if before[row] != after[row]} == {"file treasury.md"}, "no document was written"
    report = await load_knowledge(knowledge, folder)
    assert (report.changed, report.unchanged) == (False, 3)
    assert await row_versions(knowledge) == after, "the renewed stat is trusted"


async def test_removed_and_moved_files(knowledge, folder):
    age(folder)
    await load_knowledge(knowledge, folder)
    (folder / "hr/vacations.md").unlink()
    (folder / "promo").mkdir()
    (folder / "loyalty.md").rename(folder / "promo/loyalty.md")  # same URL, another path
    report = await load_knowledge(knowledge, folder)
    assert (report.added, report.updated, report.removed, report.unchanged) == ([], [f"{WIKI}/Loyalty"], [f"{WIKI}/Vacations"], 1)
    assert sorted(row for row in await row_versions(knowledge) if row.startswith("file ")) == [
        "file promo/loyalty.md", "file treasury.md",
    ], "the files of documents no longer there are forgotten"
    report = await load_knowledge(knowledge, folder)
    assert (report.changed, report.unchanged) == (False, 2)


async def test_documents_added_through_the_api_survive_a_folder_load(knowledge, folder):
    await knowledge.put(Document.build(url=f"{WIKI}/Manual", title="Ручной документ", body="Добавлен через API администратора."))
    await load_knowledge(knowledge, folder)
    report = await load_knowledge(knowledge, folder)
    assert report.removed == []
    assert (await knowledge.search("добавлен через API администратора"))[0].url == f"{WIKI}/Manual"


async def test_a_bad_file_stops_the_load_and_changes_nothing(knowledge, folder):
    await load_knowledge(knowledge, folder)
    (folder / "no-front-matter.md").write_text("# Просто заметка\n\nБез заголовка.\n", encoding="utf-8")
    (folder / "bad-yaml.md").write_text("---\ntitle: Двоеточие: без кавычек\nurl: https://x.example/a\n---\nтекст\n", encoding="utf-8")
    write_doc(folder, "no-url.md", "Без адреса", "", "Текст.")
    write_doc(folder, "copy.md", "Копия", f"{WIKI}/Treasury", "Тот же адрес, что у казначейства.")
    (folder / "loyalty.md").unlink()
    with pytest.raises(KnowledgeFolderError) as raised:
        await load_knowledge(knowledge, folder)
    problems = "\n".join(raised.value.problems)
    assert "no-front-matter.md: no front matter" in problems
    assert "bad-yaml.md: the front matter is not valid YAML" in problems
    assert "no-url.md: url is missing" in problems
    assert "url https://wiki.example.internal/display/TEST/Treasury is already used by" in problems
    assert (await knowledge.search("кэшбэк баллами"))[0].url == f"{WIKI}/Loyalty", "nothing was removed either"


def test_a_kubernetes_configmap_mount_is_read_once(tmp_path):
    # A ConfigMap volume holds each key as a symlink into a hidden ..<timestamp> folder.
    mount = tmp_path / "knowledge"
    hidden = mount / "..2024_06_01_10_00_00.123"
    write_doc(hidden, "cube.md", "Куб", f"{WIKI}/Cube", "Текст куба.")
    (mount / "..data").symlink_to(hidden.name)
    (mount / "cube.md").symlink_to(Path("..data") / "cube.md")
    assert [d.path for d in read_folder(mount)] == ["cube.md"]


def test_front_matter_fields():
    document = parse_markdown(
        "\ufeff---\nurl: https://wiki.example.internal/x\ntags: wallets, cube\n---\n# Куб кошельков\n\n"
        "Первый **абзац** про [куб](https://bi.example.internal/cube).\n\nВторой абзац: https://git.example.internal/repo.\n",
        "x.md",
    )
    assert document.title == "Куб кошельков", "the first heading when the front matter has no title"
    assert document.tags == ("wallets", "cube")
    assert document.summary == "Первый абзац про куб (https://bi.example.internal/cube)."
    assert document.links == ("https://bi.example.internal/cube", "https://git.example.internal/repo")
    with pytest.raises(ValueError, match="url must be an http"):
        parse_markdown("---\ntitle: T\nurl: wiki/page\n---\ntext\n")


def test_the_sample_set_loads():
    documents = read_folder(SAMPLES)
    assert all(d.url.startswith("https://wiki.example.internal/") and d.tags and d.summary for d in documents)


def _command(*args: str, database_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ai_systemanalitic", *args], env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True, text=True, timeout=120,
    )


async def test_the_commands_migrate_and_load_knowledge(database_url, folder):
    done = _command("migrate", database_url=database_url)
    assert done.returncode == 0 and "applied 4 migration(s): 001_knowledge_base, 002_inline_similarity, 003_scalable_search, 004_file_stats" in done.stdout, done.stderr
    done = _command("load-knowledge", str(folder), database_url=database_url)
    assert done.returncode == 0 and "knowledge base: 3 added, 0 updated, 0 removed, 0 unchanged" in done.stdout, done.stderr
    (folder / "loyalty.md").unlink()
    done = _command("load-knowledge", str(folder), database_url=database_url)
    assert "0 added, 0 updated, 1 removed, 2 unchanged" in done.stdout, done.stderr
    (folder / "broken.md").write_text("no front matter\n", encoding="utf-8")
    done = _command("load-knowledge", str(folder), database_url=database_url)
    assert done.returncode != 0 and "knowledge base unchanged" in done.stderr and "broken.md: no front matter" in done.stderr
    done = _command("load-knowledge", database_url=database_url)
    assert done.returncode != 0 and "usage:" in done.stderr
    knowledge, database = await open_knowledge(database_url)
    try:
        assert (await knowledge.list(10, 0))[0] == 2
    finally:
        await database.close()


async def test_knowledge_dir_is_loaded_at_start_before_ready(database_url, folder, start_analyst):
    analyst = await start_analyst(database_url=database_url, knowledge_dir=str(folder))
    status, body, _ = await get(f"{analyst.url}/health/ready")
    assert status == 200 and body["checks"]["knowledge"]["detail"].endswith("3 added, 0 updated, 0 removed, 0 unchanged")
    status, body, _ = await get(f"{analyst.url}/knowledge/search", {"q": "прогноз остатков на счетах"})
    assert status == 200 and body["items"][0]["url"] == f"{WIKI}/Treasury"

    # A restart after the folder changed (a new ConfigMap) applies the change.
    write_doc(folder, "treasury.md", "Казначейство: ликвидность", f"{WIKI}/Treasury", "Платёжный календарь казначейства.")
    again = await start_analyst(database_url=database_url, knowledge_dir=str(folder))
    status, body, _ = await get(f"{again.url}/health/ready")
    assert body["checks"]["knowledge"]["detail"].endswith("0 added, 1 updated, 0 removed, 2 unchanged")


async def test_a_bad_folder_at_start_keeps_serving_what_the_base_has(database_url, folder, start_analyst):
    await start_analyst(database_url=database_url, knowledge_dir=str(folder))
    (folder / "broken.md").write_text("no front matter\n", encoding="utf-8")
    analyst = await start_analyst(database_url=database_url, knowledge_dir=str(folder))
    status, body, _ = await get(f"{analyst.url}/health/ready")
    assert status == 200 and "not loaded: broken.md: no front matter" in body["checks"]["knowledge"]["detail"]
    status, body, _ = await get(f"{analyst.url}/knowledge/search", {"q": "кэшбэк"})
    assert body["items"][0]["url"] == f"{WIKI}/Loyalty"
