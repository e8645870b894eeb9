"""The rubric judge's verdict read from its next-token distribution instead of parsed from text.

A small judge rarely writes ``Score: N`` on its own (SmolLM2-135M: 0 of 676 judgements), so the
generate-and-parse judge gives no reward at all. Here the judge's reply is *forced* to begin
(after an optional justification the judge generated itself) with a prefix such as ``Score:``,
and the next token is read: the probability of each point value is the summed probability of its
spellings as one token (``"3"`` and ``" 3"``), and the reward is the expected points under that
distribution renormalised to the valid tokens. Every response gets a verdict by construction,
and two responses whose most likely score is the same still differ in their expected score.
The valid-token mass (how much of the full distribution the score tokens hold) and the argmax
are kept per response: a renormalised expectation over a tiny mass is mostly noise, so the mass
is reported beside every run that uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cream_plugin.errors import ConfigError

MODES = ("generate", "probability", "justify-probability")
"""Judge modes: parse ``Score: N`` from a generated judgement; read the score's next-token
distribution after the forced prefix; or generate a justification, then read it."""


def score_token_ids(tokenizer: Any, points: Sequence[int]) -> list[list[int]]:
    """Per point value, the distinct single-token spellings (``"3"``, ``" 3"``) of it.

    A point value that no spelling encodes as one token raises ConfigError.
    """
    spellings: list[list[int]] = []
    for point in points:
        ids: list[int] = []
        for text in (str(point), " " + str(point)):
            encoded = tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) == 1 and int(encoded[0]) not in ids:
                ids.append(int(encoded[0]))
        if not ids:
            raise ConfigError(f"judge: the score {point} is not a single token of this "
                              "tokenizer (neither as 'N' nor as ' N'); the probability modes "
                              "need single-token scores")
        spellings.append(ids)
    taken = [i for ids in spellings for i in ids]
    if len(set(taken)) != len(taken):
        raise ConfigError("judge: two score values share a token")
    return spellings


@dataclass
class ScoreDistribution:
    """Per judged response: expected points, most likely points, valid-token probability mass."""

    expected: np.ndarray
    argmax: np.ndarray
    mass: np.ndarray


def score_distribution(log_probs: np.ndarray, spellings: Sequence[Sequence[int]],
                       token_ids: Sequence[int], points: Sequence[int]) -> ScoreDistribution:
    """The expected score, argmax and valid mass from next-token log-probs.

    ``log_probs[i, k]`` is the log-probability of ``token_ids[k]`` after judge prompt i (a
    full-vocabulary softmax); ``spellings[j]`` lists the tokens of ``points[j]``. Computed in log
    space, so a mass of 1e-30 still gives a finite, exact expectation.
    """
    column = {t: k for k, t in enumerate(token_ids)}
    lp = np.asarray(log_probs, dtype=np.float64)
    per_point = np.stack([np.logaddexp.reduce(lp[:, [column[t] for t in ids]], axis=1)
                          for ids in spellings], axis=1)  # (n, points)
    total = np.logaddexp.reduce(per_point, axis=1)
    weights = np.exp(per_point - total[:, None])
    values = np.asarray(points, dtype=np.float64)
    return ScoreDistribution(expected=weights @ values,
                             argmax=values[np.argmax(per_point, axis=1)],
                             mass=np.exp(total))


def cut_justification(text: str) -> str:
    """A generated justification up to (not including) the first verdict the judge wrote
    itself, so the forced prefix, not the judge's text, asks for the score."""
    import re

    match = re.search(r"\**score\**\s*[:=]", text, flags=re.IGNORECASE)
    return (text[:match.start()] if match else text).rstrip()
