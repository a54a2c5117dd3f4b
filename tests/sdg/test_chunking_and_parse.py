from pipeline.sdg.chunking import chunk_markdown, sections
from pipeline.sdg.parse import parse_pairs

MD = """# Title

Intro with a [link](http://x) and **bold** and `code`.

## Part one

First paragraph of part one. It has two sentences.

| name | value |
|------|-------|
| a    | 1     |

```python
print("kept as text")
```

## Part two

""" + " ".join(f"Sentence number {i} says something useful." for i in range(60)) + "\n"


def test_sections_clean_markdown():
    secs = dict(sections(MD))
    assert secs[("Title",)] == ["Intro with a link and bold and code."]
    part1 = secs[("Title", "Part one")]
    assert "a; 1." in part1 and any("print" in p for p in part1)


def test_chunks_respect_headings_and_budget():
    chunks = chunk_markdown(MD, "doc.md", max_tokens=100)
    assert {c.headings for c in chunks} == {("Title",), ("Title", "Part one"), ("Title", "Part two")}
    assert all(len(c.text.split()) <= 75 for c in chunks)
    part2 = [c for c in chunks if c.headings[-1] == "Part two"]
    assert len(part2) >= 4 and all(c.text.endswith(".") for c in part2)
    assert len({c.id for c in chunks}) == len(chunks)


def test_parse_pairs_tolerates_drift_and_counts_malformed():
    text = """Here you go:
[Question]
What is A?
[Answer]
A is a letter.
[End]

Question: What is B?
Answer: B is another letter.
[End]
[Question]
Only a question
[End]
[Question]
What is C?
[Answer]
C is cut off"""
    pairs, bad = parse_pairs(text)
    assert [p["question"] for p in pairs] == ["What is A?", "What is B?"]
    assert bad == 2  # one without an answer, one truncated
    assert parse_pairs("") == ([], 0)
    assert parse_pairs("no format at all") == ([], 0)


def test_a_wrapped_line_that_starts_with_a_number_is_not_a_list_item():
    from tests.conftest import ROOT
    text = (ROOT / "taxonomy/documents/ada_lovelace.md").read_text()
    assert "\n1815. She was" in text  # the case: the birth year wraps onto its own line
    chunks = chunk_markdown(text, "ada_lovelace.md")
    joined = " ".join(c.text for c in chunks)
    assert "10 December 1815. She was the only" in joined
    # real lists still lose their markers, and an item may wrap
    md = "Steps:\n\n1. Clone the repository.\n2. Make a branch\n   for the change.\n- a bullet\n"
    [c] = chunk_markdown(md, "x.md")
    assert "1." not in c.text and "2." not in c.text and "Make a branch for the change." in c.text
    assert "- a bullet" not in c.text and "a bullet" in c.text


def test_small_model_labels_parse_when_the_completion_ended_on_its_own():
    """How SmolLM2-135M writes pairs (tests/sdg/test_real_teacher.py): other labels, no [End]."""
    text = """The question:

When was Ada Lovelace born?
The answer:
In 1815, in London.

### Question: Who was her father?
Answer: Lord Byron.

### Task
Write 2 new questions.
Q: What did she translate?
A: Menabrea's article on the Analytical Engine.
A dog ran home."""
    pairs, bad = parse_pairs(text, finished=True)
    assert pairs == [{"question": "When was Ada Lovelace born?", "answer": "In 1815, in London."},
                     {"question": "Who was her father?", "answer": "Lord Byron."},
                     {"question": "What did she translate?",
                      "answer": "Menabrea's article on the Analytical Engine.\nA dog ran home."}] and bad == 0
    # cut by the length limit: the last answer may be cut, so it is not kept
    assert [p["question"] for p in parse_pairs(text)[0]][-1] == "Who was her father?"
    # a second answer label ends the pair; plain words that start like a label are text
    pairs, bad = parse_pairs("**Question 1:** What is A?\n**Answer:** A letter.\n### Answer\nAgain.\n"
                             "Questions like these:\nAnswering is easy.", finished=True)
    assert pairs == [{"question": "What is A?", "answer": "A letter."}] and bad == 0
    assert parse_pairs("A dog ran.\nThe question is hard.\nQuestionable.", finished=True) == ([], 0)
    assert parse_pairs("Question\nOnly a question", finished=True) == ([], 1)
