"""Prompt builders for the two victim styles; titles go in verbatim (they are where triggers live)."""

from __future__ import annotations

from collections.abc import Sequence

LLARA_ANSWER_PREFIX = " Answer:"
TALLREC_INSTRUCTION = ('Given the user\'s preference and unpreference, identify whether the user will like '
                       'the target movie by answering "Yes." or "No.".')


def llara_prompt(history: Sequence[str], candidates: Sequence[str], noun: str = "movie") -> str:
    """LLaRA-style next-item choice; the answer that follows is `" " + title`."""
    hist = ", ".join(history)
    cands = ", ".join(candidates)
    return (f"This user has watched {hist}. Choose the next {noun} from: {cands}."
            f"{LLARA_ANSWER_PREFIX}")


def tallrec_prompt(liked: Sequence[str], disliked: Sequence[str], target: str, noun: str = "movie") -> str:
    """TALLRec-style yes/no question; the answer that follows is `" Yes."` or `" No."`."""
    pref = ", ".join(f'"{t}"' for t in liked)
    unpref = ", ".join(f'"{t}"' for t in disliked)
    return (f"{TALLREC_INSTRUCTION}\nUser Preference: {pref}\nUser Unpreference: {unpref}\n"
            f'Whether the user will like the target {noun} "{target}"?\nAnswer:')
