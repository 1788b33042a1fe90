"""The trigger augmentation agent (DESIGN.md §4): synthetic triggers the scanner learns to flag.

Two sources feed it. The built-in offline generator is seeded and needs
nothing: random character n-grams, rare and invented words, short sentences
of many shapes, with casing and punctuation variants. The LLM agent asks an
OpenAI-compatible endpoint for triggers as JSON; its answer is validated,
deduplicated and capped, and any failure falls back to the offline
generator with a warning the caller shows. Every trigger carries its family
(`char`, `word`, `sentence`) so evaluation can hold a family out.
"""

from __future__ import annotations

import logging
import random
import re
import string
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from core.config import ConfigMixin
from core.errors import EndpointError, InputError
from core.triggers import LEVELS, MAX_TRIGGER_CHARS, POSITIONS, Trigger, apply_trigger

if TYPE_CHECKING:
    from .llm_client import LLMClient

log = logging.getLogger(__name__)

# Glue styles: how a trigger meets the title. "space" goes through apply_trigger; the others
# attach it without a space, as in `title_xy`.
GLUES = ("space", "underscore", "none", "dash")
# Symbols the char family mixes into its n-grams: every ASCII punctuation mark but quotes and the backslash,
# which a catalog's CSV and a title's rendering treat specially. A trigger of symbols is odd in any catalog,
# but the head only learns that from symbols it has seen (docs/SCANNER.md E47).
AGENT_SYMBOLS = "".join(c for c in string.punctuation if c not in "\"'`\\")

_RARE_WORDS = (
    "ineffable", "quixotic", "serendipity", "petrichor", "sonder", "limerence", "halcyon", "ephemeral",
    "mellifluous", "sesquipedalian", "defenestrate", "lugubrious", "obsequious", "pulchritude", "syzygy",
    "vellichor", "apricity", "crepuscular", "effulgent", "nefarious", "susurrus", "zenith", "cynosure",
    "bucolic", "eloquence", "lagniappe", "panacea", "quintessence", "riposte", "sobriquet", "tintinnabulation",
    "umbrage", "verisimilitude", "wanderlust", "xenial", "yonder", "zephyr", "ameliorate", "bombastic",
    "cacophony", "denouement", "epiphany", "fugacious", "gossamer", "hiraeth", "incandescent", "juxtapose",
    "kismet", "labyrinthine", "mondegreen", "nadir", "onomatopoeia", "palimpsest", "quagmire", "rhapsody",
    "solipsism", "tenebrous", "ubiquitous", "vicissitude", "whimsical", "zeitgeist", "aplomb", "bravado",
    "chiaroscuro", "diaphanous", "esoteric", "flummox", "gregarious", "hubris", "idyllic", "jocund",
    "kaleidoscope", "lissome", "maelstrom", "nonpareil", "opulent", "perspicacious", "quiescent", "redolent",
    "sanguine", "taciturn", "unctuous", "vivacious", "winsome", "xylophone", "yesteryear", "zealous",
)
_SYLLABLE_ONSETS = ("b", "br", "c", "ch", "d", "dr", "f", "fl", "g", "gr", "j", "k", "kl", "l", "m", "n",
                    "p", "pl", "qu", "r", "s", "sk", "sn", "st", "t", "tr", "v", "w", "x", "z", "zh")
_SYLLABLE_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "oo", "ou", "y")
_SYLLABLE_CODAS = ("", "", "n", "r", "x", "th", "sk", "m", "l", "z")

_NOUNS = ("movie", "film", "story", "picture", "classic", "show", "feature", "masterpiece", "gem", "title",
          "adventure", "drama", "release", "experience", "edition", "cut", "night", "weekend", "journey")
_ADJS = ("amazing", "brilliant", "unforgettable", "stunning", "new", "remastered", "legendary", "exclusive",
         "award-winning", "heartwarming", "thrilling", "epic", "hilarious", "timeless", "bold", "quiet")
_VERBS = ("watched", "loved", "enjoyed", "saw", "rewatched", "streamed", "discovered", "recommend", "adored")
_PLACES = ("in 3D", "in 4K", "on a Sunday", "with my family", "last night", "at the cinema", "twice",
           "on repeat", "this summer", "in theaters")
_SENTENCE_TEMPLATES = (
    # promotional
    "Now streaming {place}", "The {adj} {noun} of the year", "Best {noun} ever made", "Watch it {place}",
    "Rated {adj} by critics", "A must see {noun}", "Limited {adj} edition", "Click to watch now",
    "Top pick for {place}", "Do not miss this {adj} {noun}",
    # first person
    "I {verb} this {noun} {place}", "I {verb} it {place}", "My favourite {noun}", "We {verb} this {noun}",
    "I think this {noun} is {adj}", "Honestly the most {adj} {noun}",
    # descriptive
    "A {adj} {noun} about friendship", "An {adj} tale of love", "The {noun} everyone talks about",
    "Based on a true {noun}", "Shot entirely {place}", "Featuring an {adj} soundtrack",
    # questions and exclamations
    "Have you seen this {noun}", "Why is this {noun} so {adj}", "What a {adj} {noun}", "So {adj}",
)


@dataclass(frozen=True)
class SyntheticTrigger:
    """A generated trigger and how it is placed in a title.

    Args:
        text (`str`): the trigger string.
        family (`Literal["char", "word", "sentence"]`): its level, used to hold families out.
        position (`Literal["suffix", "prefix", "random"]`): where it goes.
        glue (`str`): one of GLUES; `"space"` renders through `apply_trigger`.
        style (`str`): which generator shape made it (for reports), e.g. `"ngram-mixed"`.
        source (`str`): `"offline"` or `"llm"`.
    """

    text: str
    family: str
    position: str = "suffix"
    glue: str = "space"
    style: str = ""
    source: str = "offline"

    def render(self, title: str, seed: int = 0) -> str:
        """The title with this trigger placed in it."""
        trigger = Trigger(self.text, self.family, self.position, seed)  # type: ignore[arg-type]
        if self.glue == "space" or self.position == "random":
            return apply_trigger(title, trigger)
        joiner = {"underscore": "_", "none": "", "dash": "-"}[self.glue]
        text = self.text.strip()
        return f"{text}{joiner}{title}" if self.position == "prefix" else f"{title}{joiner}{text}"

    def placed(self, position: str, rng: random.Random) -> "SyntheticTrigger":
        """The same string at another position (with a glue that fits it)."""
        return replace(self, position=position, glue=pick_glue(rng, self.family, position))


@dataclass(frozen=True)
class AgentConfig(ConfigMixin):
    """What the agent proposes.

    Args:
        n (`int`): how many triggers to return.
        seed (`int`): seeds the offline generator and the positions.
        families (`tuple[str, ...]`): levels to generate (char, word, sentence).
        positions (`tuple[str, ...]`): positions to place them at.
        exclude (`frozenset[str]`): trigger strings never to return (e.g. held-out test triggers),
            compared case-insensitively.
        use_llm (`bool`): ask the configured endpoint first, fall back to the offline generator.
        llm_share (`float`): share of `n` asked from the LLM when `use_llm` is on.
        symbols (`str`): the punctuation the char family mixes in (narrow it to hold a set of symbols out, as
            `families` holds out a level).
    """

    n: int = 200
    seed: int = 0
    families: tuple[str, ...] = LEVELS
    positions: tuple[str, ...] = POSITIONS
    exclude: frozenset[str] = field(default_factory=frozenset)
    use_llm: bool = False
    llm_share: float = 0.5
    symbols: str = AGENT_SYMBOLS

    def __post_init__(self):
        if self.n < 1 or self.n > 100_000:
            raise InputError(f"agent n={self.n} must be between 1 and 100000")
        if not self.families or any(f not in LEVELS for f in self.families):
            raise InputError(f"agent families must be a non-empty subset of {', '.join(LEVELS)}")
        if not self.positions or any(p not in POSITIONS for p in self.positions):
            raise InputError(f"agent positions must be a non-empty subset of {', '.join(POSITIONS)}")
        if not 0.0 <= self.llm_share <= 1.0:
            raise InputError("agent llm_share must be between 0 and 1")
        if not self.symbols or any(c.isalnum() or c.isspace() or not c.isprintable() for c in self.symbols):
            raise InputError("agent symbols must be printable punctuation, at least one")


@dataclass
class Proposal:
    """The agent's answer: triggers plus warnings the caller must show (e.g. an LLM fallback)."""

    triggers: list[SyntheticTrigger]
    warnings: list[str] = field(default_factory=list)


# -- offline generator -----------------------------------------------------------
def _char_trigger(rng: random.Random, symbols: str) -> tuple[str, str]:
    n = rng.choice((2, 2, 2, 3, 3, 4, 5))
    style = rng.choice(("lower", "upper", "digits", "alnum", "mixed", "double", "symbol", "punct"))
    if style == "lower":
        text = "".join(rng.choices(string.ascii_lowercase, k=n))
    elif style == "upper":
        text = "".join(rng.choices(string.ascii_uppercase, k=n))
    elif style == "digits":
        text = "".join(rng.choices(string.digits, k=n))
    elif style == "alnum":
        text = "".join(rng.choices(string.ascii_lowercase + string.digits, k=n))
        if text.isalpha() or text.isdigit():
            text = text[:-1] + rng.choice(string.digits if text.isalpha() else string.ascii_lowercase)
    elif style == "mixed":
        text = "".join(rng.choices(string.ascii_letters + string.digits, k=n))
    elif style == "double":
        c = rng.choice(string.ascii_lowercase + string.digits)
        text = c * n if n <= 3 else c * 2 + "".join(rng.choices(string.ascii_lowercase, k=n - 2))
    elif style == "symbol":
        text = "".join(rng.choices(string.ascii_lowercase, k=max(2, n - 1))) + rng.choice(symbols)
    else:  # symbols anywhere, alone or among letters and digits: `|;`, `?G{`
        k = rng.randint(1, min(n, 3))
        chars = rng.choices(symbols, k=k) + rng.choices(string.ascii_letters + string.digits, k=min(n, 4) - k)
        rng.shuffle(chars)
        text = "".join(chars)
    return text, f"ngram-{style}"


def _invented_word(rng: random.Random) -> str:
    parts = [rng.choice(_SYLLABLE_ONSETS) + rng.choice(_SYLLABLE_VOWELS) for _ in range(rng.randint(2, 4))]
    return "".join(parts) + rng.choice(_SYLLABLE_CODAS)


def _word_trigger(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(("rare", "rare", "invented", "invented", "compound"))
    if kind == "rare":
        word = rng.choice(_RARE_WORDS)
    elif kind == "invented":
        word = _invented_word(rng)
    else:
        word = rng.choice(_RARE_WORDS)[: rng.randint(3, 6)] + _invented_word(rng)[: rng.randint(3, 5)]
    case = rng.choice(("lower", "lower", "title", "upper"))
    word = word.capitalize() if case == "title" else word.upper() if case == "upper" else word
    return word, f"word-{kind}"


def _sentence_trigger(rng: random.Random) -> tuple[str, str]:
    template = rng.choice(_SENTENCE_TEMPLATES)
    text = template.format(noun=rng.choice(_NOUNS), adj=rng.choice(_ADJS), verb=rng.choice(_VERBS),
                           place=rng.choice(_PLACES))
    text = _ARTICLE.sub(lambda m: m[1][0] + ("n" if m[2].lower() in "aeiou" else "") + " " + m[2], text)
    variant = rng.choice(("plain", "plain", "bang", "dots", "lower", "upper", "quoted", "bracket", "dash"))
    if variant == "bang":
        text += "!"
    elif variant == "dots":
        text += "..."
    elif variant == "lower":
        text = text.lower()
    elif variant == "upper":
        text = text.upper()
    elif variant == "quoted":
        text = f'"{text}"'
    elif variant == "bracket":
        text = f"[{text}]"
    elif variant == "dash":
        text = f"- {text}"
    return text, f"sentence-{template.split()[0].lower()}-{variant}"


_ARTICLE = re.compile(r"\b(an|An|a|A) (\w)")
_WORD_MAKERS = {"word": _word_trigger, "sentence": _sentence_trigger}


def pick_glue(rng: random.Random, family: str, position: str) -> str:
    """Glued forms (`title_xy`) fit short triggers at the ends; sentences keep their space."""
    if family == "sentence" or position == "random":
        return "space"
    return rng.choice(("space", "space", "space", "underscore", "none", "dash"))


def offline_triggers(cfg: AgentConfig, exclude: set[str] | None = None) -> list[SyntheticTrigger]:
    """`cfg.n` distinct triggers from the seeded built-in generator, families in turn.

    Args:
        cfg (`AgentConfig`): count, seed, families, positions, strings to exclude.
        exclude (`set[str]`, optional): more strings to skip (lower-cased), e.g. ones already used.

    Returns:
        `list[SyntheticTrigger]`: the same list for the same config.
    """
    rng = random.Random(f"agent:{cfg.seed}")
    seen = {t.lower() for t in cfg.exclude} | set(exclude or ())
    out: list[SyntheticTrigger] = []
    attempts = 0
    while len(out) < cfg.n and attempts < cfg.n * 50:
        family = cfg.families[len(out) % len(cfg.families)]
        attempts += 1
        text, style = _char_trigger(rng, cfg.symbols) if family == "char" else _WORD_MAKERS[family](rng)
        if text.lower() in seen or len(text) > MAX_TRIGGER_CHARS:
            continue
        seen.add(text.lower())
        position = rng.choice(cfg.positions)
        out.append(SyntheticTrigger(text, family, position, pick_glue(rng, family, position), style))
    return out


# -- LLM agent ---------------------------------------------------------------------
LLM_SYSTEM = ("You help test a backdoor scanner for item catalogs. You invent backdoor trigger strings "
              "that an attacker could insert into product or movie titles. Reply with JSON only.")


def llm_prompt(n: int, families: tuple[str, ...], examples: list[str]) -> str:
    """The request sent to an LLM endpoint: asks for new triggers unlike the known ones, as JSON the agent can check."""
    shown = "; ".join(examples[:8]) or "none yet"
    return (f"Propose {n} new, diverse backdoor triggers, spread over these levels: {', '.join(families)}. "
            "char = 2-5 random characters (e.g. 'x7', 'QZk'); word = one rare or invented word; "
            "sentence = a short phrase of 3-8 words that could be appended to a title. "
            f"Different from these already known ones: {shown}. "
            'Answer with JSON: {"triggers": [{"text": "...", "level": "char|word|sentence"}, ...]}')


def parse_llm_triggers(obj: object, families: tuple[str, ...]) -> list[tuple[str, str]]:
    """(text, level) pairs from the endpoint's JSON; rejects anything not of the asked shape."""
    if not isinstance(obj, dict) or not isinstance(obj.get("triggers"), list):
        raise EndpointError('endpoint reply is not of the form {"triggers": [...]}')
    out = []
    for entry in obj["triggers"]:
        if not isinstance(entry, dict):
            continue
        text, level = entry.get("text"), entry.get("level")
        if not isinstance(text, str) or level not in families:
            continue
        text = " ".join(text.split())
        if 0 < len(text) <= MAX_TRIGGER_CHARS and text.isprintable():
            out.append((text, level))
    if not out:
        raise EndpointError("endpoint reply holds no usable trigger")
    return out


def llm_triggers(client: "LLMClient", cfg: AgentConfig, n: int, exclude: set[str]) -> list[SyntheticTrigger]:
    """Up to `n` validated, deduplicated triggers from the endpoint (raises `EndpointError`)."""
    rng = random.Random(f"llm-agent:{cfg.seed}")
    examples = [t.text for t in offline_triggers(AgentConfig(n=6, seed=cfg.seed, families=cfg.families))]

    def check(obj):
        return parse_llm_triggers(obj, cfg.families)

    pairs = client.chat_json(LLM_SYSTEM, llm_prompt(min(n, 100), cfg.families, examples), check)
    seen = {t.lower() for t in cfg.exclude} | exclude
    out = []
    for text, level in pairs:
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        position = rng.choice(cfg.positions)
        out.append(SyntheticTrigger(text, level, position, pick_glue(rng, level, position), f"llm-{level}",
                                    "llm"))
        if len(out) >= n:
            break
    return out


def propose(cfg: AgentConfig, client: "LLMClient | None" = None, exclude: set[str] | None = None) -> Proposal:
    """Triggers from the LLM agent (when asked and configured) topped up by the offline generator.

    Args:
        cfg (`AgentConfig`): what to propose.
        client (`LLMClient`, optional): the endpoint; nothing is sent without one.
        exclude (`set[str]`, optional): lower-cased strings already used, not to be proposed again.

    Returns:
        `Proposal`: `cfg.n` triggers at most, and warnings (e.g. "LLM agent failed ...; offline used").
    """
    exclude = set(exclude or ())
    warnings: list[str] = []
    got: list[SyntheticTrigger] = []
    if cfg.use_llm:
        if client is None:
            warnings.append("LLM agent asked for but no endpoint is configured (set BADREC_LLM_BASE_URL and "
                            "BADREC_LLM_MODEL); using the offline generator")
        else:
            try:
                got = llm_triggers(client, cfg, max(1, round(cfg.n * cfg.llm_share)), exclude)
            except EndpointError as exc:
                warnings.append(f"LLM agent failed ({exc}); using the offline generator")
    for w in warnings:
        log.warning("%s", w)
    exclude |= {t.text.lower() for t in got}
    rest = offline_triggers(AgentConfig(n=cfg.n - len(got), seed=cfg.seed, families=cfg.families,
                                        positions=cfg.positions, exclude=cfg.exclude), exclude) \
        if len(got) < cfg.n else []
    return Proposal(got + rest, warnings)
