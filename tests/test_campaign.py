"""The recurring-trigger rule (core.pscanner.campaign) on its own: which n-grams qualify and which do not.

The score functions here are plain rules standing in for a scanner's scores; the rule with a real trained
scanner is tested in test_scanner.py.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from core.errors import InputError
from core.pscanner.campaign import (
    COMMON_SAMPLE,
    COMMON_SHARE,
    CampaignConfig,
    campaign_of,
    common_words,
    extended,
    find_campaigns,
    name_words,
    ngrams,
    series_like,
    without,
    words,
)

CATALOG = [f"Title number {i} ({1950 + i % 40})" for i in range(100)]


def _scores(titles, marker: str = "xq7") -> np.ndarray:
    """High for titles carrying `marker`, otherwise spread low by a hash of the title (crc32: the same in every
    process, where `hash` of a str changes with PYTHONHASHSEED and once let a year look like a campaign)."""
    return np.array([0.95 if marker in t else 0.1 + 0.5 * (zlib.crc32(t.encode()) % 100) / 100 for t in titles])


def test_words_split_glued_triggers_and_removal_rejoins():
    assert words("Toy Story (1995)_xq7") == ["Toy", "Story", "(1995)", "xq7"]
    assert "Story (1995)" in ngrams(words("Toy Story (1995)"), 2)
    assert ngrams(["a", "b", "c"], 2, first={"b"}) == {"b", "b c"}
    assert without("xq7 Toy Story (1995)", "xq7") == "Toy Story (1995)"
    assert without("Toy Story", "absent") == "Toy Story"


def test_a_trigger_on_several_titles_is_found_and_flags_every_carrier():
    catalog = [f"{t} xq7" if i in (3, 30, 60, 90) else t for i, t in enumerate(CATALOG)]
    found = find_campaigns(catalog, _scores(catalog), _scores, CampaignConfig(top=0.1))
    assert [(c.text, c.n_titles) for c in found] == [("xq7", 4)]
    assert [i for i, c in enumerate(campaign_of(catalog, found)) if c] == [3, 30, 60, 90]


def test_a_longer_trigger_is_reported_once_not_as_each_of_its_words():
    catalog = [f"{t} buy it now" if i % 20 == 0 else t for i, t in enumerate(CATALOG)]
    found = find_campaigns(catalog, _scores(catalog, "buy it now"), lambda ts: _scores(ts, "buy it now"))
    assert [c.text for c in found] == ["buy it now"]


def test_a_sentence_longer_than_the_longest_ngram_is_checked_whole_and_flagged():
    """An 8-word sentence passes as 6-word n-grams; each leaves words of the sentence in every carrier, which
    would read as a series name's shared words. Grown to what its carriers share, it is one trigger."""
    ad = "Members earn double points before midnight at Zorbly"
    catalog = [f"{t} {ad}" if i in (5, 47) else f"{ad}_{t}" if i == 81 else t for i, t in enumerate(CATALOG)]
    react = lambda ts: _scores(ts, "points before")
    found = find_campaigns(catalog, react(catalog), react, CampaignConfig(top=0.1))
    assert [(c.text, c.n_titles, c.series) for c in found] == [(ad, 3, False)]
    assert [i for i, c in enumerate(campaign_of(catalog, found)) if c] == [5, 47, 81]
    assert extended(["a b c d", "x b c d y"], "c") == "b c d" and extended(["a b", "b a"], "b") == "b"


def test_spare_one_takes_a_trigger_on_three_titles_with_one_scored_low_but_never_a_pair():
    catalog = [f"{t} xq7" if i in (3, 30, 60) else f"{t} zv2" if i in (10, 20) else t for i, t in enumerate(CATALOG)]

    def react(ts):  # the markers lift a title, number 60 less; the rest by a hash of the title's name alone
        return np.array([(0.5 if "xq7" in t else 0.1) if t.startswith("Title number 60 ") else 0.95 if "xq7" in t
                         or "zv2" in t else _scores([" ".join(words(t)[:3])])[0] for t in ts])

    assert find_campaigns(catalog, react(catalog), react, CampaignConfig(top=0.1, spread=None)) == []
    found = find_campaigns(catalog, react(catalog), react, CampaignConfig(top=0.1, spare_one=True, spread=None))
    assert [(c.text, c.n_titles) for c in found] == [("xq7", 3)]  # zv2 is on two titles only
    assert [i for i, c in enumerate(campaign_of(catalog, found)) if c] == [3, 30, 60]
    # ... but not when the title outside the top is no less odd without it (a word a franchise shares)
    flat = lambda ts: np.where([t.startswith("Title number 60 ") for t in ts], 0.5, react(ts))
    assert find_campaigns(catalog, flat(catalog), flat, CampaignConfig(top=0.1, spare_one=True, spread=None)) == []
    # a word that two odd titles happen to share with a plain one: removing it leaves them odd
    catalog = [f"{t} on Qevrun" if i in (3, 30) else f"{t} on" if i == 60 else t for i, t in enumerate(CATALOG)]
    odd = lambda ts: np.array([0.95 if "Qevrun" in t else react([t])[0] for t in ts])
    assert find_campaigns(catalog, odd(catalog), odd, CampaignConfig(top=0.1, spare_one=True, spread=None)) == []
    # a year on three titles that lifts all three like a trigger: a year recurs by chance, and holds no letter
    catalog = [f"Title number {i} (2031)" if i in (3, 30, 60) else t for i, t in enumerate(CATALOG)]

    def by_year(ts):
        return np.array([(0.55 if words(t)[2] == "60" else 0.9) if "2031" in t else 0.1 if words(t)[2] in
                         {"3", "30", "60"} else react([t])[0] for t in ts])

    assert find_campaigns(catalog, by_year(catalog), by_year, CampaignConfig(top=0.05, spare_one=True, spread=None)) == []
    lettered = [t.replace("(2031)", "(2031a)") for t in catalog]
    assert [c.text for c in find_campaigns(lettered, by_year(lettered), by_year,
                                           CampaignConfig(top=0.05, spare_one=True, spread=None))] == ["(2031a)"]


def test_a_pair_in_the_top_third_is_taken_when_removing_it_lowers_each_title_enough():
    """E58: a trigger on two titles that rank in the top third but not the top tenth; every carrier must be in the
    top share and drop by the margin, scored by the scanner that scored its host, and a series is not flagged."""
    catalog = [f"{t} zv2" if i in (3, 30) else t for i, t in enumerate(CATALOG)]
    plain = {CATALOG[3]: 0.1, CATALOG[30]: 0.1}

    def react(ts, lift=0.8, rest=plain, lo=0.1, spread=0.85):  # the catalog's own titles between 0.1 and 0.95
        return np.array([lift if "zv2" in t else rest.get(t, lo + spread * (zlib.crc32(t.encode()) % 100) / 100)
                         for t in ts])

    scores = react(catalog)
    rank = np.argsort(np.argsort(-scores, kind="stable"))
    assert all(10 <= rank[i] < 30 for i in (3, 30))  # below the top tenth, inside the top third
    found = find_campaigns(catalog, scores, react)
    assert [(c.text, c.n_titles, c.series) for c in found] == [("zv2", 2, False)]
    assert [i for i, c in enumerate(campaign_of(catalog, found)) if c] == [3, 30]
    assert find_campaigns(catalog, scores, react, CampaignConfig(spread=None)) == []
    # a drop below the margin (logit 1.4 -> 0), or a host's scanner that is not moved by it: no trigger
    shallow = lambda ts: react(ts, rest={CATALOG[3]: 0.5, CATALOG[30]: 0.5})  # noqa: E731
    assert find_campaigns(catalog, shallow(catalog), shallow) == []
    seen = []

    def host_scanner(texts, hosts):
        seen.extend(hosts)
        return np.full(len(texts), 0.45)

    assert find_campaigns(catalog, scores, react, hosted_fn=host_scanner) == []
    assert {catalog[3], catalog[30]} <= set(seen)  # each variant scored as its host's
    # two plain titles of a catalog that scores low: without their shared words they score plainer still, which
    # counts only down to the catalog's lower quartile
    plainer = {CATALOG[3]: 0.002, CATALOG[30]: 0.002}
    low = lambda ts: react(ts, lift=0.17, rest=plainer, lo=0.005, spread=0.2)  # noqa: E731
    assert find_campaigns(catalog, low(catalog), low) == []
    assert [c.text for c in find_campaigns(catalog, low(catalog), low, CampaignConfig(spread_floor=0.0))] == ["zv2"]
    # a third title carries it far down the ranking: not every carrier is in the top share
    third = [f"{t} zv2" if i == 60 else t for i, t in enumerate(catalog)]
    low_third = lambda ts: np.where([t.startswith("Title number 60 ") for t in ts], 0.1, react(ts))  # noqa: E731
    assert find_campaigns(third, low_third(third), low_third) == []
    # two titles of one series: what is left of them names nothing (a number), so it is reported, not flagged
    series = [t if i not in (3, 30) else f"Vexmoor Saga {i // 3}" for i, t in enumerate(CATALOG)]
    saga = lambda ts: np.array([0.8 if "Vexmoor" in t else 0.1 if t in {"1", "10"} else react([t])[0]  # noqa: E731
                                for t in ts])
    assert [(c.text, c.series) for c in find_campaigns(series, saga(series), saga)] == [("Vexmoor Saga", True)]
    for bad in (dict(spread=0.8), dict(spread_floor=0.9)):
        with pytest.raises(InputError):
            CampaignConfig(**bad)


def test_words_that_do_not_lift_scores_or_recur_everywhere_are_not_triggers():
    catalog = [f"{t} xq7" if i in (3, 30, 60, 90) else t for i, t in enumerate(CATALOG)]
    # the four titles score high for another reason (their number), so removing "xq7" lowers nothing
    by_number = lambda ts: np.array([0.95 if words(t)[2] in {"3", "30", "60", "90"} else 0.2 for t in ts])  # noqa: E731
    assert find_campaigns(catalog, by_number(catalog), by_number) == []
    # "xq7" also on 40 low-scored titles: most carriers are not top titles (share)
    spread = [f"{t} xq7" if i % 2 == 0 else t for i, t in enumerate(CATALOG[:80])] + catalog[80:]
    low = lambda ts: np.array([0.95 if "(1951)" in t else 0.2 for t in ts])  # noqa: E731
    assert find_campaigns(spread, low(spread), low, CampaignConfig(spread=None)) == []
    assert "xq7" not in {c.text for c in find_campaigns(spread, low(spread), low)}  # nor all its titles in the top
    # a single triggered title is left to the threshold
    one = [f"{t} xq7" if i == 3 else t for i, t in enumerate(CATALOG)]
    named = lambda ts: _scores([" ".join(words(t)[:3] + words(t)[4:]) for t in ts])  # a year removed: no lift
    assert find_campaigns(one, named(one), named) == []


@pytest.mark.parametrize("bad", [dict(top=0.0), dict(top=0.9), dict(min_titles=1), dict(min_share=0.2),
                                 dict(max_words=0)])
def test_config_validation(bad):
    with pytest.raises(InputError):
        CampaignConfig(**bad)


def test_carriers_of_a_recurring_trigger_rank_with_the_flagged_titles():
    from core.pscanner.scan import final_scores

    scores = np.array([0.99, 0.40, 0.20, 0.60, 0.30])
    hygiene = np.array([0.0, 0.0, 0.0, 0.0, 0.6])
    carries = np.array([False, True, True, False, False])
    final = final_scores(scores, 0.9, hygiene, carries)
    assert final[0] == 0.99 and final[3] == 0.60  # neither flagged by a rule: unchanged
    assert final[1] > final[2] > 0.9 and final[4] > 0.9  # flagged by a campaign or a finding: above every unflagged
    assert final[1] < 0.99  # carriers keep their own order below a title the scanner scores higher
    assert np.array_equal(final_scores(scores, 0.9, np.zeros(5), np.zeros(5, bool)), scores)


def test_a_pair_counts_only_when_removing_it_leaves_plain_titles():
    """Two titles carrying one n-gram: a trigger leaves plain titles behind when removed, a franchise name a
    fragment that still scores odd; `pair_rest` tells them apart, and without it both pass."""
    catalog = [f"{t} xq7" if i in (3, 30) else t for i, t in enumerate(CATALOG)]
    catalog[50], catalog[70] = "Ninja Storm Zq", "Ninja Storm Vx"  # a franchise: "Zq" alone is a fragment
    fixed = {CATALOG[3]: 0.12, CATALOG[30]: 0.12, "Zq": 0.45, "Vx": 0.45, "Storm Zq": 0.45, "Storm Vx": 0.45}
    odd = lambda ts: np.array([0.95 if "xq7" in t else 0.9 if "Ninja" in t else fixed.get(t, _scores([t])[0])  # noqa: E731
                               for t in ts])
    loose = find_campaigns(catalog, odd(catalog), odd, CampaignConfig(top=0.1, min_titles=2, spread=None))
    strict = find_campaigns(catalog, odd(catalog), odd, CampaignConfig(top=0.1, min_titles=2, pair_rest=0.5,
                                                                       spread=None))
    assert {c.text for c in loose} >= {"xq7", "Ninja Storm"} and [c.text for c in strict] == ["xq7"]
    with pytest.raises(InputError):
        CampaignConfig(pair_rest=1.0)


def test_a_series_name_is_not_a_trigger_but_a_trigger_on_unrelated_titles_is():
    """A franchise recurs among the top titles like a trigger and its removal lowers their scores too; what is
    left of its titles gives it away: fragments (`Part 2`) or words the titles share."""
    series = ["Friday the 13th (1980)", "Friday the 13th Part 2 (1981)", "Friday the 13th Part 3 (1982)",
              "Friday the 13th: The Final Chapter (1984)"]
    catalog = CATALOG[:60] + series + [f"{t} Qevrun" if i % 10 == 0 else t for i, t in enumerate(CATALOG[60:])]
    odd = lambda ts: np.array([0.95 if ("Qevrun" in t or "Friday" in t) else _scores([t])[0] for t in ts])  # noqa: E731
    common = common_words(catalog)
    assert {"title", "number"} <= common and "friday" not in common
    assert series_like(series, "Friday the", common) and series_like(series, "13th", common)
    carriers = [t for t in catalog if "Qevrun" in t]
    assert len(carriers) == 4 and not series_like(carriers, "Qevrun", common)
    found = find_campaigns(catalog, odd(catalog), odd, CampaignConfig(top=0.1))
    assert [c.text for c in found if not c.series] == ["Qevrun"]
    assert [c.text for c in found if c.series] and all(c.text.startswith("Friday") for c in found if c.series)
    # the series is reported, not flagged: only the trigger's carriers are
    assert [t for t, c in zip(catalog, campaign_of(catalog, found)) if c] == carriers
    both = find_campaigns(catalog, odd(catalog), odd, CampaignConfig(top=0.1, series=False))
    assert not any(c.series for c in both)
    assert "Qevrun" in {c.text for c in both} and any(c.text.startswith("Friday") for c in both)


def test_a_catalog_written_in_few_words_is_not_one_series():
    """A shop's titles share their words (`Blue Cotton Shirt`); common words relate no titles, so a trigger on
    three of them is still found."""
    catalog = [f"{c} {m} {k}" for c in ("Blue", "Red", "Green", "Black", "White") for m in ("Cotton", "Linen", "Wool",
               "Silk") for k in ("Shirt", "Dress", "Scarf", "Coat", "Hat")]
    catalog = [f"{t} xq7" if i in (4, 40, 77) else t for i, t in enumerate(catalog)]
    common = common_words(catalog)
    assert {"blue", "cotton", "shirt"} <= common
    assert not series_like([t for t in catalog if "xq7" in t], "xq7", common)
    assert [c.text for c in find_campaigns(catalog, _scores(catalog), _scores, CampaignConfig(top=0.1))] == ["xq7"]


def test_a_bulk_catalog_finds_its_common_words_from_a_stride_of_its_titles():
    """Past `COMMON_SAMPLE` titles the common words come from an even stride: the same words as counting all of
    them wherever a word's share is clear of the 1 % line, and a franchise on a few hundred titles is not one."""
    n = 3 * COMMON_SAMPLE + 7
    catalog = [f"Item {i:x} Deluxe" if i % 40 == 0 else f"Item {i:x}" + (" Vorbix" if i % 500 == 3 else "")
               for i in range(n)]
    common = common_words(catalog)
    assert common == {"item", "deluxe"}  # 100 % and 2.5 %; Vorbix 0.2 %, each hex code once
    assert common == {w for w in ("item", "deluxe", "vorbix")
                      if sum(w in name_words(t) for t in catalog) >= COMMON_SHARE * n}


def test_the_spread_check_runs_only_where_it_was_measured():
    """Its logit margin is the frozen LLM's: a scan with a trusted reference or a `mini` scanner leaves it off."""
    from dataclasses import replace

    from core.lm.models import ModelConfig
    from core.pscanner.scan_config import ScanConfig, campaign_rules
    from core.pscanner.scanner import ScannerConfig

    llm = ScannerConfig(model=ModelConfig(name="smollm2-135m"))
    upload = ScanConfig(source="catalog", catalog_path="c.csv", scanner=llm)
    assert campaign_rules(upload).spread == CampaignConfig().spread == 0.3
    assert campaign_rules(replace(upload, dataset="ml-100k")).spread is None  # a trusted reference trains it
    assert campaign_rules(replace(upload, scanner=ScannerConfig(model=ModelConfig(name="mini")))).spread is None
    assert campaign_rules(replace(upload, campaign=CampaignConfig(spread=None))).spread is None
