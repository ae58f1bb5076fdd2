"""Seeded planted-fact pages: real chat text with short facts (names, numbers, dates, codes) every few words.

The filler is the bundled sample conversation (real human chats from chitchat-dataset, MIT), laid end to end as
one long paragraph so that pages are full. Every fact has its own question about a person named in it, so a reply
can be scored by exact match of the answer string; answers are random codes, numbers and dates that the filler
never contains, so finding one in a reply can only mean the page was read.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from typing import Callable

from PIL import Image

from optical_memory.core.types import Page, Role, Turn
from optical_memory.core.validation import validate_int
from optical_memory.renderers import PageRenderer, RenderStyle

_FIRST = ("Amelia", "Tomasz", "Priya", "Kwame", "Ingrid", "Mateo", "Yuki", "Farah", "Elias", "Noor", "Dmitri", "Lucia",
          "Oren", "Saskia", "Ravi", "Leilani")
_LAST = ("Okafor", "Lindqvist", "Raghunathan", "Castellano", "Brennan", "Achterberg", "Moreau", "Haddad", "Novak",
         "Takahashi", "Oyelaran", "Szabo", "Quispe", "Vasquez", "Erdogan", "Halvorsen")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

# (kind, sentence, question, answer maker): {who} is the person the fact is about, {answer} what is recalled.
_TEMPLATES: tuple[tuple[str, str, str, Callable[[random.Random], str]], ...] = (
    ("code", "The locker code for {who} is {answer}.", "What is the locker code for {who}?",
     lambda rng: "".join(rng.choice(_LETTERS) for _ in range(4)) + "-" + str(rng.randint(1000, 9999))),
    ("number", "{who} lives in apartment {answer}.", "Which apartment does {who} live in?",
     lambda rng: str(rng.randint(1000, 99999))),
    ("date", "{who} arrives on {answer}.", "When does {who} arrive?",
     lambda rng: f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}, {rng.randint(2026, 2034)}"),
    ("name", "The dentist of {who} is Dr. {answer}.", "Who is the dentist of {who}?",
     lambda rng: f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"),
)


@dataclass(frozen=True)
class Fact:
    """A planted fact: what the page says, the question asked about it, and the exact answer scored."""

    kind: str
    sentence: str
    question: str
    answer: str


@dataclass(frozen=True)
class CalibrationPage:
    """A full page at one density, its master image and the facts whose whole sentence it shows."""

    density_font_px: int
    page: Page
    image: Image.Image
    facts: tuple[Fact, ...]


def _filler() -> list[str]:
    path = resources.files("optical_memory") / "data" / "sample_conversation.jsonl"
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            words.extend(json.loads(line)["content"].split())
    return words


def planted_pages(
    style: RenderStyle, font_px: int, *, pages: int, seed: int = 0, words_between_facts: int = 60
) -> list[CalibrationPage]:
    """The first ``pages`` full pages of filler with a fact every ``words_between_facts`` words, at ``font_px``.

    The same arguments give the same pages, pixels and facts in any process, so replies cached for one run are the
    replies of the next.
    """
    pages = validate_int(pages, field_name="pages", minimum=1)
    words_between_facts = validate_int(words_between_facts, field_name="words_between_facts", minimum=5)
    rng = random.Random(f"calibrate:{seed}:{font_px}")
    filler = _filler()
    people = [f"{first} {last}" for first in _FIRST for last in _LAST]
    rng.shuffle(people)
    renderer = PageRenderer(style.with_density(font_px))
    parts: list[str] = []
    facts: list[Fact] = []
    layouts: list = []
    # Grow the text 16 facts at a time until it fills ``pages`` full pages (laying out is cheap, drawing is not).
    while len(layouts) < pages:
        if len(facts) > 64 * pages * len(people):
            raise ValueError(f"pages: {pages} full pages at {font_px} px need more filler than the sample holds")
        for _ in range(16):
            start = (len(facts) * words_between_facts) % len(filler)
            parts.extend(filler[start:start + words_between_facts])
            kind, sentence, question, make = _TEMPLATES[len(facts) % len(_TEMPLATES)]
            who = people[len(facts) % len(people)]
            answer = make(rng)
            facts.append(Fact(kind, sentence.format(who=who, answer=answer), question.format(who=who), answer))
            parts.append(facts[-1].sentence)
        text = " ".join(parts)
        layouts = [layout for layout in renderer.paginate([Turn(0, Role.USER, text, 0.0)]) if layout.full][:pages]
    return [
        CalibrationPage(font_px, layout.page, renderer.draw(layout),
                        tuple(fact for fact in facts if fact.sentence in layout.page.text))
        for layout in layouts
    ]
