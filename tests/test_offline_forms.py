"""The offline teacher asks each document sentence the ways a reader would, and every answer
states the fact (so a short document still teaches its facts several times)."""

from pipeline.eval.facts import extract
from pipeline.sdg import offline
from pipeline.sdg.prompts import render


def test_reader_questions_from_statements():
    assert offline.inverted("The Marrant Seawall was finished in 1711 to protect the harbour.")[0] == \
        "When was the Marrant Seawall finished to protect the harbour?"
    assert offline.inverted("Kelp paper has been made on the island since 1563.")[0] == \
        "Since when has Kelp paper been made on the island?"
    assert offline.inverted("Brenvik Isle is governed by the Council of Nine Wardens.")[0] == "By whom is Brenvik Isle governed?"
    assert offline.inverted("The wardens are elected every four years by every islander.")[0] == "How often are the wardens elected?"
    assert offline.negative("There are no cars on Brenvik Isle; islanders cycle.") == \
        ("Are there cars on Brenvik Isle?", "No. There are no cars on Brenvik Isle; islanders cycle.")
    assert offline.subject("The crossing takes three hours and forty minutes.")[0] == "What does the text say about the crossing?"
    assert offline.resolve("Its highest point is Mount Tollan.", "Brenvik Isle") == "Brenvik Isle's highest point is Mount Tollan."
    assert offline.topic_of("Brenvik Isle (a fictional island) > History") == "Brenvik Isle"


def test_every_fact_bearing_sentence_is_asked_and_answered_with_its_fact():
    doc = ("Brenvik Isle was first settled in 1487 by a band of herring fishers led by Oda Marrant. "
           "The crossing takes three hours and forty minutes. There are no cars on Brenvik Isle.")
    pairs = []
    for sample in (0, 1):
        text = offline.knowledge(render("knowledge_short", domain="d", document=doc, examples="", n=3,
                                        title="Brenvik Isle > History"), sample)
        pairs += [p.split("[Answer]\n") for p in text.split("[Question]\n")[1:]]
    answers = [a.replace("\n[End]", "").strip() for _, a in pairs]
    for fact in ("1487", "three hours and forty minutes", "no cars"):
        assert sum(fact in a for a in answers) >= 1, fact
    assert len(pairs) >= 5  # several forms, shared out between the two samples
    assert len({q for q, _ in pairs}) == len(pairs)
    assert all(extract(a) or "no cars" in a for a in answers)


def test_passages_survive_the_near_duplicate_filter():
    """The filter compares question and answer: forms that share one long answer collapse to
    about three, so a fact must also come back in answers that differ (passages)."""
    from pipeline.filter.minhash import MinHashConfig, near_dedup
    doc = ("A ferry called the Grey Heron sails from Saltreach to the mainland port of Dunmere. "
           "The crossing takes three hours and forty minutes. The ferry sails twice a week in winter and "
           "every day in summer. There are no cars on Brenvik Isle; islanders travel by bicycle, on foot or by pony cart.")
    records = []
    for task in ("knowledge_short", "knowledge_long"):
        for sample in (0, 1):
            text = offline.knowledge(render(task, domain="d", document=doc, examples="", n=2,
                                            title="Brenvik Isle (a fictional island) > Transport"), sample)
            for p in text.split("[Question]\n")[1:]:
                q, a = p.split("[Answer]\n")
                records.append({"id": str(len(records)), "leaf": "l", "question": q.strip(),
                                "answer": a.replace("[End]", "").strip()})
    kept = near_dedup(records, MinHashConfig()).kept
    answers = [r["answer"] for r in kept]
    for fact in ("Grey Heron", "three hours and forty minutes", "twice a week", "no cars"):
        assert sum(fact in a for a in answers) >= 4, (fact, sum(fact in a for a in answers))
    passages = [r for r in kept if r["question"].startswith(("Quote the passage", "In the text on Brenvik Isle"))]
    assert len(passages) >= 4 and all(r["answer"].count(".") >= 2 for r in passages)


def test_a_compound_sentences_later_fact_is_asked_of_its_own_clause():
    s = "The islanders rebuilt the town in stone, and the Marrant Seawall was finished in 1711 to protect the harbour."
    assert offline.clauses(s) == ["The Marrant Seawall was finished in 1711 to protect the harbour."]
    assert offline.clauses("Brenvik Isle is governed by the Council of Nine Wardens.") == []
    # a list of ways is not a clause of its own, nor is a part whose subject is a pronoun
    assert offline.clauses("There are no cars on Brenvik Isle; islanders travel by bicycle, on foot, and by pony cart.") == []
    assert offline.clauses("The mill burned in 1801, but it was rebuilt in 1803.") == []
    # a list is not a compound sentence, nor is a condition and what follows from it
    assert offline.clauses("Oda Marrant, Tomas Kell, and Ina Brenn were the first wardens of the isle.") == []
    assert offline.clauses("The ferry, the mail boat, and the launch are the only boats allowed.") == []
    assert offline.clauses("If the tide is high, and the Ferry is late, the Crossing is closed.") == []
    pairs = []
    for sample in (0, 1):
        text = offline.knowledge(render("knowledge_short", domain="d", document=s, examples="", n=3,
                                        title="Brenvik Isle > History"), sample)
        pairs += [tuple(x.replace("\n[End]", "").strip() for x in p.split("[Answer]\n"))
                  for p in text.split("[Question]\n")[1:]]
    assert ("When was the Marrant Seawall finished to protect the harbour?",
            "The Marrant Seawall was finished in 1711 to protect the harbour.") in pairs


def test_generic_questions_name_their_document():
    """"What does the text say about the ferry?" is the same question for every document with a
    ferry: it names the document when the chunk's title gives one."""
    assert offline.subject("The crossing takes three hours.", "Orrin Lake")[0] == \
        "What does the text on Orrin Lake say about the crossing?"
    assert offline.keywords("The ferry sails twice a week.", set(), topic="Brenvik Isle")[0][0] == \
        "What does the text on Brenvik Isle say about the ferry?"
