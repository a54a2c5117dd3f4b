"""Key facts on every knowledge item of the sample taxonomy (and the unseen fixture leaf): the
reference is a hit, the bare facts are a hit, the question restated is not, and the reference
with one fact swapped is a wrong fact."""

import re

import pytest

from pipeline.eval.facts import check, extract, key_facts, restate
from pipeline.taxonomy.reader import iter_leaves
from tests.conftest import ROOT

FIXTURE = ROOT / "tests/fixtures/unseen_leaf"


def knowledge_items():
    out = []
    for root in (ROOT / "taxonomy", FIXTURE):
        for leaf in iter_leaves(root):
            if leaf.kind == "knowledge":
                for ex in leaf.data["seed_examples"]:
                    for qa in ex["questions_and_answers"]:
                        out.append((leaf.path.split("/")[-2], qa["question"].strip(), qa["answer"].strip()))
    return out


ITEMS = knowledge_items()
WITH_FACTS = [it for it in ITEMS if key_facts(it[1], it[2])]
OTHER_NAME = {"name": "Harold Pemberton"}


def swap(reference: str, fact) -> str:
    """The reference with one key fact replaced by another value of its kind."""
    if fact.kind == "polarity":
        return "Yes, there is." if fact.value == "no" else "No, not at all."
    if fact.kind == "year":
        return reference.replace(fact.text, str(int(fact.text) + 7), 1)
    if fact.kind == "date":
        return re.sub(r"\b\d{1,2}\b", lambda m: str(int(m.group()) % 27 + 2), reference.replace(fact.text, fact.text), 1) \
            if re.search(r"\b\d{1,2}\b", fact.text) else reference
    if fact.kind == "number":
        digits = re.search(r"\d[\d,]*", fact.text)
        new = fact.text.replace(digits.group(), str(int(digits.group().replace(",", "")) + 3), 1) if digits \
            else "thirteen " + fact.text.split()[-1] if len(fact.text.split()) > 1 else "thirteen"
        return reference.replace(fact.text, new, 1)
    return reference.replace(fact.text, OTHER_NAME["name"], 1)


def test_most_items_of_the_fictional_leaves_carry_key_facts():
    for leaf in ("brenvik_isle", "orrin_lake"):
        items = [it for it in ITEMS if it[0] == leaf]
        assert sum(bool(key_facts(q, a)) for _, q, a in items) >= 0.7 * len(items)


@pytest.mark.parametrize("leaf,question,reference", WITH_FACTS, ids=[q[:40] for _, q, _ in WITH_FACTS])
def test_every_knowledge_item(leaf, question, reference):
    facts = key_facts(question, reference)
    assert check(reference, facts, question)["hit"], "the reference must be a hit"
    bare = ", ".join("No" if f.kind == "polarity" and f.value == "no" else "Yes" if f.kind == "polarity" else f.text
                     for f in facts) + "."
    assert check(bare, facts, question)["hit"], f"the bare answer {bare!r} must be a hit"
    restated = restate(question)
    got = check(restated, facts, question)
    assert not got["hit"], f"restating the question ({restated!r}) must not be a hit"
    for f in facts:
        swapped = swap(reference, f)
        if swapped == reference:
            continue
        got = check(swapped, facts, question)
        assert not got["hit"] and got["wrong"], f"{swapped!r}: a swapped {f.kind} must be a wrong fact"


def test_the_issue_examples():
    q, ref = "When was the Marrant Seawall finished?", "The Marrant Seawall was finished in 1711."
    facts = key_facts(q, ref)
    assert [(f.kind, f.value) for f in facts] == [("year", "1711")]
    assert check("The Marrant Seawall was finished in 1805.", facts, q) == {"hit": False, "found": [], "wrong": ["year 1805"]}
    assert check("1711.", facts, q)["hit"] and not check(restate(q), facts, q)["hit"]
    q, ref = "What is the capital of Italy?", "The capital of Italy is Rome."
    facts = key_facts(q, ref)
    assert check("Rome.", facts, q)["hit"]
    assert check("The capital of Italy is Paris.", facts, q)["wrong"] == ["name Paris"]


def test_the_questions_own_words_capitalised_are_not_another_name():
    q = "Where does the Brenvik council meet?"
    facts = key_facts(q, "The council meets in the Tide Hall.")
    assert check("The Brenvik Council meets in the Tide Hall.", facts, q) == {"hit": True, "found": ["tide hall"], "wrong": []}
    assert check("The Brenvik Council meets in the Harbour Hall.", facts, q)["wrong"] == ["name Harbour Hall"]
    q = "Who founded Amberlow?"
    assert check("James Amberlow founded it.", key_facts(q, "Oda Marrant founded Amberlow."), q)["wrong"] == ["name James Amberlow"]
    q = "Who rebuilt the tide hall?"  # the phrase ends the question
    assert check("Ina Brenn rebuilt the Tide Hall.", key_facts(q, "Ina Brenn rebuilt it."), q)["wrong"] == []
    # a hedge whose second name is pieced together from the question's words is still a wrong fact
    q = "Who succeeded Oda Marrant after James Kell died?"
    got = check("Ina Brenn, or Oda Kell.", key_facts(q, "Ina Brenn succeeded her."), q)
    assert not got["hit"] and got["wrong"] == ["name Oda Kell"]


def test_numbers_words_units_and_dates_are_normalised():
    values = lambda text: sorted((f.kind, f.value) for f in extract(text))  # noqa: E731
    assert values("three hours and forty minutes") == values("220 minutes") == [("number", "220 time")]
    assert values("612 metres") == values("612 m") == values("0.612 kilometres")
    assert values("about 2,340 people") == values("2340 people") == [("number", "2340 count")]
    assert values("on 14 March") == values("on March 14th") == [("date", "03-14")]
    assert values("twice a week") == [("number", "2 count")] and values("seventeen")[0][1] == "17 count"
    assert values("Council of Nine Wardens")[0] == ("name", "council of nine wardens")


def test_polarity_needs_the_answer_to_say_it():
    q = "Are there cars on Brenvik Isle?"
    facts = key_facts(q, "No, there are no cars on Brenvik Isle.")
    assert check("There are no cars there.", facts, q)["hit"]
    assert not check("There are cars on Brenvik Isle.", facts, q)["hit"]  # the question restated
    assert check("Yes, there are many cars.", facts, q)["wrong"]
