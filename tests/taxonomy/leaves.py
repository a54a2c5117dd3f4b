"""Builders for leaf texts used across the taxonomy tests."""

import textwrap

SKILL = textwrap.dedent("""\
    version: 3
    created_by: tester
    task_description: Answer arithmetic questions with one short sentence.
    seed_examples:
      - question: What is 2 + 2?
        answer: 2 + 2 is 4.
      - question: What is 3 + 5?
        answer: 3 + 5 is 8.
      - question: What is 10 - 4?
        answer: 10 - 4 is 6.
      - question: What is 6 x 7?
        answer: 6 x 7 is 42.
      - question: What is 9 / 3?
        answer: 9 / 3 is 3.
    """)


def knowledge(seeds: int = 5, qnas: int = 3, commit: str = "a" * 40,
              patterns: str = "    - doc.md\n") -> str:
    out = ["version: 3", "created_by: tester", "domain: Testing",
           "document_outline: A document about testing.", "seed_examples:"]
    for i in range(seeds):
        out.append(f"  - context: Passage number {i} says that tests catch bugs early.")
        out.append("    questions_and_answers:")
        for j in range(qnas):
            out.append(f"      - question: Question {i}.{j} about the passage?")
            out.append(f"        answer: Answer {i}.{j}.")
    out += ["document:", "  repo: https://example.com/docs.git", f"  commit: {commit}",
            "  patterns:"]
    return "\n".join(out) + "\n" + patterns


ATTRIBUTION = b"Title of work: test\nLicense of the work: CC0\n"
