"""Sources in a chat request: the question searched for, the budget kept, the instruction, the citations."""

from __future__ import annotations

from qwendesk.daemon.documents import prompt
from qwendesk.daemon.documents.chunking import count_tokens


def hit(path: str, text: str, **extra) -> dict:
    return {
        "collection": "notes",
        "path": path,
        "page": None,
        "heading": None,
        "text": text,
        "score": 0.5,
        **extra,
    }


KEYS = hit(
    "ops/keys.md",
    "Rotate the backup keys with `vault rotate`, then restart the agent.",
    heading="Backup > Keys",
)
PDF = hit("manual.pdf", "The agent reads its keys at start-up.", page=3)


def test_the_question_is_the_last_user_text() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "why?"}],
        },
    ]
    assert prompt.question_of(messages) == "why?"
    assert prompt.question_of([{"role": "system", "content": "s"}]) is None
    assert prompt.question_of("not a list") is None


def test_sources_go_before_the_question_numbered_with_an_instruction_and_citations() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I rotate keys?"},
    ]
    out = prompt.add_sources(messages, [KEYS, PDF], budget=2000)
    assert messages[1]["content"] == "How do I rotate keys?"  # the request's own list is untouched
    system, user = out.messages
    assert system["content"].startswith("Be brief.\n\n") and "[1]" in system["content"]
    assert user["content"].startswith("Sources:\n\n[1] ops/keys.md — Backup > Keys\nRotate the backup keys")
    assert "[2] manual.pdf, page 3\nThe agent reads" in user["content"]
    assert user["content"].endswith("\n\nQuestion: How do I rotate keys?")
    assert [c["index"] for c in out.citations] == [1, 2] and out.dropped == 0
    assert out.citations[0] == {
        "index": 1, "collection": "notes", "path": "ops/keys.md", "page": None, "heading": "Backup > Keys",
        "text": KEYS["text"], "score": 0.5,
    }  # fmt: skip
    assert out.citations[1]["page"] == 3


def test_a_system_message_is_added_when_there_is_none_and_parts_keep_their_images() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
    messages = [{"role": "user", "content": [image, {"type": "text", "text": "what is this?"}]}]
    out = prompt.add_sources(messages, [KEYS], budget=2000)
    assert out.messages[0] == {"role": "system", "content": prompt.INSTRUCTION}
    parts = out.messages[1]["content"]
    assert (
        parts[0]["type"] == "text"
        and parts[0]["text"].startswith("Sources:")
        and parts[1:] == [image, messages[0]["content"][1]]
    )


def test_only_what_fits_the_budget_is_sent_the_last_one_cut() -> None:
    long = hit("long.txt", " ".join(["word"] * 600))
    fits = prompt.add_sources([{"role": "user", "content": "q"}], [KEYS, long, PDF], budget=400)
    assert [c["path"] for c in fits.citations] == ["ops/keys.md", "long.txt"] and fits.dropped == 1
    sent = fits.messages[1]["content"]
    assert "…" in sent and "manual.pdf" not in sent
    assert count_tokens(sent) * prompt.SAFETY < 400
    assert fits.citations[1]["text"] == long["text"]  # the citation keeps the whole passage

    none = prompt.add_sources([{"role": "user", "content": "q"}], [KEYS], budget=50)
    assert none.citations == [] and none.dropped == 1
    assert none.messages == [{"role": "system", "content": prompt.NO_ROOM}, {"role": "user", "content": "q"}]


def test_no_match_says_the_documents_do_not_cover_it() -> None:
    out = prompt.add_sources([{"role": "user", "content": "q"}], [], budget=4000)
    assert out.messages[0]["content"] == prompt.NO_SOURCES and out.messages[1]["content"] == "q"


def test_the_answer_keeps_its_room() -> None:
    assert prompt.answer_reserve({"max_tokens": 300}, 4096) == 300
    assert prompt.answer_reserve({"max_completion_tokens": 200, "max_tokens": 300}, 4096) == 200
    assert prompt.answer_reserve({}, 4096) == 1024 and prompt.answer_reserve({}, 2048) == 512
    many = [{"role": "user", "content": "word " * 100}] * 3
    assert prompt.estimate(many) > 3 * 100


def test_a_chunk_that_is_only_its_heading_is_not_a_source() -> None:
    title = hit("guide.md", "# Backup", heading="Backup")
    out = prompt.add_sources([{"role": "user", "content": "q"}], [title, KEYS], budget=2000)
    assert [c["path"] for c in out.citations] == ["ops/keys.md"] and out.dropped == 0
    assert not prompt.heading_only(hit("a.md", "Backup: run it daily.", heading="Backup"))
