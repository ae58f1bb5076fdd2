"""Conversation sources for benchmarks: real human chats, and synthetic long sessions with planted facts.

**Real.** The Chit Chat Challenge corpus (``chitchat-dataset``, MIT, BYU PCC lab): 7,168 human–human chats with
per-utterance timestamps, written by people unrelated to this project. Only chats with two speakers and at least
four messages are used. In each chat the first speaker is ``user`` and the other ``assistant``; a message's
consecutive utterances are joined with spaces (as the corpus's own ``ConversationDataset`` does).

**Splits.** A chat belongs to ``"tune"`` when the first 8 hex digits of SHA-256(chat id) are even, else to
``"report"`` (about half each). Densities and the recall calibration are tuned on ``tune``; benchmark tables report on
``report``. Every ``Conversation`` lists the chat ids it was built from.

**Sessions.** Chats are sampled with a seeded RNG from one split, laid end to end in that order, each keeping its
real internal timing, consecutive chats ``gap_seconds`` apart (default one day: a user who chats daily).

**Planted facts.** ``planted_fact_conversation`` appends short personal facts (a name, a number, a date, a code, a
UUID-like id) to user turns of a real-chat session at seeded positions; each ``PlantedFact`` keeps the sentence, the
question a later turn would ask, and the exact answer string that recall is scored on.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Callable, Iterable, Sequence

from optical_memory.core.tokens import count_tokens
from optical_memory.core.types import Role
from optical_memory.core.validation import validate_int

SPLITS = ("tune", "report")
# Conversations are sized in cl100k tokens, as they were when the committed results were made, so that the same
# seeds keep selecting the same chats whichever consumer later reads them.
SIZING_ENCODING = "cl100k_base"
DAY_SECONDS = 86_400.0
_MIN_MESSAGES = 4


@dataclass(frozen=True)
class ChatTurn:
    """One turn of a benchmark conversation: role, verbatim text, seconds since the epoch."""

    role: Role
    text: str
    timestamp: float


@dataclass(frozen=True)
class PlantedFact:
    """A fact planted in turn ``turn_index``: ``sentence`` is what was said, ``answer`` the exact string to recall."""

    kind: str
    sentence: str
    question: str
    answer: str
    turn_index: int


@dataclass(frozen=True)
class Conversation:
    """A benchmark conversation and where it came from (``source_chat_ids`` in order, ``split``, ``seed``)."""

    id: str
    split: str
    seed: int
    turns: tuple[ChatTurn, ...]
    source_chat_ids: tuple[str, ...]
    facts: tuple[PlantedFact, ...] = field(default=())

    @property
    def text_tokens(self) -> int:
        """cl100k tokens of all turn texts (what keeping the whole conversation as text would cost)."""
        return sum(count_tokens(turn.text, SIZING_ENCODING) for turn in self.turns)


def chat_split(chat_id: str) -> str:
    """``"tune"`` or ``"report"``: a fixed function of the chat id, so splits never depend on sampling order."""
    if not isinstance(chat_id, str) or not chat_id:
        raise ValueError(f"chat_id must be a non-empty string, got {chat_id!r}")
    return SPLITS[int(hashlib.sha256(chat_id.encode()).hexdigest()[:8], 16) % 2]


def _validate_split(split: object) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return str(split)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@lru_cache(maxsize=1)
def _chitchat() -> dict[str, tuple[ChatTurn, ...]]:
    """Every usable chat of the corpus as turns with absolute timestamps, by chat id (loaded once, ~1 s)."""
    import chitchat_dataset

    chats: dict[str, tuple[ChatTurn, ...]] = {}
    for chat_id, chat in sorted(chitchat_dataset.Dataset().items()):
        messages = [message for message in chat["messages"] if message]
        senders = list(dict.fromkeys(utterance["sender"] for message in messages for utterance in message))
        if len(senders) != 2 or len(messages) < _MIN_MESSAGES:
            continue
        turns = []
        for message in messages:
            text = " ".join(u["text"].strip() for u in message if u["text"].strip())
            if text:
                role = Role.USER if message[0]["sender"] == senders[0] else Role.ASSISTANT
                turns.append(ChatTurn(role, text, _seconds(message[0]["timestamp"])))
        if len(turns) >= _MIN_MESSAGES:
            chats[chat_id] = tuple(turns)
    return chats


def chitchat_ids(split: str) -> list[str]:
    """Ids of the usable chats in ``split``, sorted."""
    split = _validate_split(split)
    return [chat_id for chat_id in _chitchat() if chat_split(chat_id) == split]


def _one_turn(chat: Sequence[ChatTurn], role: Role) -> tuple[ChatTurn]:
    """A whole chat as one long turn: its messages joined with spaces, stamped with its first message's time."""
    return (ChatTurn(role, " ".join(turn.text for turn in chat), chat[0].timestamp),)


def _lay_end_to_end(chats: Sequence[Sequence[ChatTurn]], start: float, gap_seconds: float) -> list[ChatTurn]:
    """Chats one after another: each keeps its internal timing, and starts ``gap_seconds`` after the last ended."""
    turns: list[ChatTurn] = []
    clock = start
    for chat in chats:
        offset = clock - chat[0].timestamp
        for turn in chat:
            # Utterance clocks in the corpus occasionally step back a little; a session's clock must not.
            stamp = max(turn.timestamp + offset, turns[-1].timestamp if turns else clock)
            turns.append(replace(turn, timestamp=stamp))
        clock = turns[-1].timestamp + gap_seconds
    return turns


def chitchat_session(
    split: str,
    *,
    min_tokens: int,
    seed: int = 0,
    gap_seconds: float = DAY_SECONDS,
    start: float = _seconds("2018-05-01T09:00:00Z"),
    exclude: Iterable[str] = (),
    one_turn_per_chat: bool = False,
) -> Conversation:
    """One long session of real chats from ``split``: seeded sample, appended until it holds ``min_tokens`` tokens.

    ``one_turn_per_chat`` makes each chat a single long turn (roles alternating chat by chat): real text in full
    paragraphs, the dense pages that long assistant answers make, instead of chat-sized turns that each spend a
    header line.
    """
    split = _validate_split(split)
    min_tokens = validate_int(min_tokens, field_name="min_tokens", minimum=1)
    validate_int(seed, field_name="seed", minimum=-(2**63))
    if not gap_seconds >= 0:
        raise ValueError(f"gap_seconds must be >= 0, got {gap_seconds!r}")
    excluded = set(exclude)
    candidates = [chat_id for chat_id in chitchat_ids(split) if chat_id not in excluded]
    random.Random(f"chitchat-session:{split}:{seed}").shuffle(candidates)
    chats = _chitchat()
    chosen: list[str] = []
    tokens = 0
    for chat_id in candidates:
        chosen.append(chat_id)
        tokens += sum(count_tokens(turn.text, SIZING_ENCODING) for turn in chats[chat_id])
        if tokens >= min_tokens:
            break
    else:
        raise ValueError(f"split {split!r} holds only {tokens} tokens, fewer than min_tokens={min_tokens}")
    selected: list[Sequence[ChatTurn]] = [chats[chat_id] for chat_id in chosen]
    if one_turn_per_chat:
        roles = (Role.USER, Role.ASSISTANT)
        selected = [_one_turn(chat, roles[number % 2]) for number, chat in enumerate(selected)]
    turns = _lay_end_to_end(selected, start, gap_seconds)
    kind = "chitchat-paragraphs" if one_turn_per_chat else "chitchat"
    return Conversation(f"{kind}-{split}-{seed}", split, seed, tuple(turns), tuple(chosen))


def chitchat_sessions(split: str, *, count: int, min_tokens: int, seed: int = 0, **options: float) -> list[Conversation]:
    """``count`` sessions from ``split`` that share no chat (seeds ``seed``, ``seed + 1``, …)."""
    count = validate_int(count, field_name="count", minimum=1)
    sessions: list[Conversation] = []
    used: set[str] = set()
    for offset in range(count):
        session = chitchat_session(split, min_tokens=min_tokens, seed=seed + offset, exclude=used, **options)
        used.update(session.source_chat_ids)
        sessions.append(session)
    return sessions


# -- planted facts ---------------------------------------------------------------------------------------------------

_FIRST = ("Amelia", "Tomasz", "Priya", "Kwame", "Ingrid", "Mateo", "Yuki", "Farah", "Elias", "Noor", "Dmitri", "Lucia")
_LAST = ("Okafor", "Lindqvist", "Raghunathan", "Castellano", "Brennan", "Achterberg", "Moreau", "Haddad", "Novak",
         "Takahashi", "Oyelaran", "Szabo")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_CODE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_HEX = "0123456789abcdef"

# (kind, sentence template, question, answer maker): the answer is what a later question needs, verbatim.
_FactMaker = tuple[str, str, str, Callable[[random.Random], str]]
FACT_TEMPLATES: tuple[_FactMaker, ...] = (
    ("name", "By the way, my new dentist is Dr. {answer}.", "What is the name of my new dentist?",
     lambda rng: f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"),
    ("name", "Oh, and my landlord's name is {answer}, remind me if I forget.", "What is my landlord's name?",
     lambda rng: f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"),
    ("number", "My gym locker number is {answer}.", "What is my gym locker number?",
     lambda rng: str(rng.randint(1000, 99999))),
    ("number", "The flight I booked is number {answer}.", "What is my flight number?",
     lambda rng: f"{rng.choice(('LH', 'KL', 'AF', 'BA', 'UA'))}{rng.randint(100, 9999)}"),
    ("date", "My sister's wedding is on {answer}.", "When is my sister's wedding?",
     lambda rng: f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}, {rng.randint(2019, 2031)}"),
    ("date", "My passport expires on {answer}.", "When does my passport expire?",
     lambda rng: f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2025, 2035)}"),
    ("code", "The wifi password at the cabin is {answer}.", "What is the wifi password at the cabin?",
     lambda rng: "".join(rng.choice(_CODE_LETTERS) for _ in range(4)) + "-" + str(rng.randint(1000, 9999))),
    ("code", "My parcel tracking code is {answer}.", "What is my parcel tracking code?",
     lambda rng: f"TRK{rng.randint(10**7, 10**8 - 1)}{rng.choice(_CODE_LETTERS)}"),
    ("uuid", "My support ticket id is {answer}.", "What is my support ticket id?",
     lambda rng: "-".join("".join(rng.choice(_HEX) for _ in range(n)) for n in (8, 4, 4))),
    ("name", "The vet who saw our cat is called {answer}.", "What is the name of the vet who saw our cat?",
     lambda rng: f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"),
    ("number", "Our new apartment is number {answer}.", "What is our apartment number?",
     lambda rng: str(rng.randint(100, 9999))),
    ("date", "The lease on the car ends {answer}.", "When does the car lease end?",
     lambda rng: f"{rng.randint(2026, 2034)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"),
    ("code", "The gate code at my parents' place is {answer}.", "What is the gate code at my parents' place?",
     lambda rng: f"{rng.randint(10, 99)}{rng.choice(_CODE_LETTERS)}{rng.randint(10, 99)}"),
    ("uuid", "The order id for the new couch is {answer}.", "What is the order id for the new couch?",
     lambda rng: "-".join("".join(rng.choice(_HEX) for _ in range(n)) for n in (8, 4, 4))),
    ("name", "My team lead at the new job is {answer}.", "Who is my team lead at the new job?",
     lambda rng: f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"),
    ("number", "My library card number is {answer}.", "What is my library card number?",
     lambda rng: str(rng.randint(10**6, 10**7 - 1))),
)


def planted_fact_conversation(
    split: str,
    *,
    min_tokens: int,
    facts: int,
    seed: int = 0,
    gap_seconds: float = DAY_SECONDS,
    one_turn_per_chat: bool = False,
) -> Conversation:
    """A real-chat session from ``split`` with ``facts`` planted facts at seeded places.

    In chat-sized turns a fact ends a user turn, on its own line, one fact per turn. With ``one_turn_per_chat`` (long
    paragraphs) a fact is inserted after a word anywhere in the text, so facts land all over a page. Each fact has
    its own question (at most ``len(FACT_TEMPLATES)`` facts), kinds mixed: names, numbers, dates, codes, UUID-like
    ids. Answers are unique and never occur in the filler, so finding one in a reading can only mean the planted
    sentence was read.
    """
    facts = validate_int(facts, field_name="facts", minimum=1)
    if facts > len(FACT_TEMPLATES):
        raise ValueError(f"facts must be at most {len(FACT_TEMPLATES)} (one per question template), got {facts}")
    session = chitchat_session(
        split, min_tokens=min_tokens, seed=seed, gap_seconds=gap_seconds, one_turn_per_chat=one_turn_per_chat
    )
    rng = random.Random(f"planted-facts:{split}:{seed}")
    # A slot is (turn index, character offset) where a fact goes.
    if one_turn_per_chat:
        slots = [(i, offset) for i, turn in enumerate(session.turns) for offset, char in enumerate(turn.text)
                 if char == " "]
    else:
        slots = [(i, len(turn.text)) for i, turn in enumerate(session.turns) if turn.role is Role.USER]
    if len(slots) < facts:
        raise ValueError(f"the session has {len(slots)} places for a fact, fewer than facts={facts}")
    chosen = sorted(rng.sample(slots, facts))
    filler = "\n".join(turn.text for turn in session.turns)
    planted: list[PlantedFact] = []
    answers: set[str] = set()
    insertions: dict[int, list[tuple[int, str]]] = {}
    for (turn_index, offset), (kind, template, question, make) in zip(chosen, rng.sample(FACT_TEMPLATES, facts)):
        answer = make(rng)
        while answer in answers or answer in filler:
            answer = make(rng)
        answers.add(answer)
        sentence = template.format(answer=answer)
        insertions.setdefault(turn_index, []).append((offset, sentence))
        planted.append(PlantedFact(kind, sentence, question, answer, turn_index))
    turns = list(session.turns)
    separator = " " if one_turn_per_chat else "\n"
    for turn_index, inserts in insertions.items():
        text = turns[turn_index].text
        # From the back, so earlier offsets stay valid.
        for offset, sentence in sorted(inserts, reverse=True):
            text = f"{text[:offset]}{separator}{sentence}{text[offset:]}"
        turns[turn_index] = replace(turns[turn_index], text=text)
    return Conversation(f"planted-{session.id}", split, seed, tuple(turns), session.source_chat_ids, tuple(planted))
