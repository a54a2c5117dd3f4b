"""Generation on the sample taxonomy: grounded offline samples, cache, one-leaf regeneration, resume."""

import json
import shutil

import pytest

from pipeline.filter.grounding import support
from pipeline.sdg.generate import GenerateConfig, GenerateError, generate, read_jsonl
from pipeline.sdg.teachers import OfflineTeacher
from tests.fakes.teacher import ScriptedTeacher


def test_offline_generation_is_grounded_and_varied(sample_taxonomy, tmp_path):
    summary = generate(sample_taxonomy, tmp_path / "out", OfflineTeacher())
    assert len(summary["leaves"]) == 7 and all(x["status"] == "generated" for x in summary["leaves"])
    knowledge = [r for f in (tmp_path / "out/generated").glob("knowledge__*.jsonl") for r in read_jsonl(f)]
    assert len(knowledge) >= 60
    # the teacher's two shapes, and the leaf's own training-share pairs
    assert {r["shape"] for r in knowledge} == {"short", "long", "seed"}
    assert all(r["teacher"] == "seed" for r in knowledge if r["shape"] == "seed")
    for r in knowledge:
        if r["shape"] == "seed":  # written by people, in their own words
            continue
        assert support(r["answer"], r["source_chunk"]) >= 0.9
        assert r["question"].endswith(("?", ".")) and r["question"][0].isupper()
    assert len({r["question"] for r in knowledge}) >= 0.4 * len(knowledge)
    leaves = read_jsonl(tmp_path / "out/leaves.jsonl")
    assert all(x["seeds"] for x in leaves) and any(x["chunks"] for x in leaves)


def test_rerun_hits_the_cache_and_one_leaf_change_regenerates_one_leaf(sample_taxonomy, tmp_path):
    t1 = ScriptedTeacher()
    generate(sample_taxonomy, tmp_path / "a", t1)
    first_calls = t1.calls
    t2 = ScriptedTeacher()
    again = generate(sample_taxonomy, tmp_path / "b", t2)
    assert t2.calls == 0 and all(x["status"] == "cached" for x in again["leaves"])
    haiku = sample_taxonomy / "compositional_skills/writing/freeform/haiku/qna.yaml"
    haiku.write_text(haiku.read_text().replace("autumn river", "spring river"))
    t3 = ScriptedTeacher()
    third = generate(sample_taxonomy, tmp_path / "c", t3)
    status = {x["path"]: x["status"] for x in third["leaves"]}
    assert [p for p, s in status.items() if s == "generated"] == ["compositional_skills/writing/freeform/haiku/qna.yaml"]
    assert 0 < t3.calls < first_calls


def test_changing_teacher_or_prompt_params_misses_the_cache(sample_taxonomy, tmp_path):
    generate(sample_taxonomy, tmp_path / "a", ScriptedTeacher())
    other = generate(sample_taxonomy, tmp_path / "b", ScriptedTeacher(identity="scripted:v2"))
    assert all(x["status"] == "generated" for x in other["leaves"])
    more = generate(sample_taxonomy, tmp_path / "c", ScriptedTeacher(), GenerateConfig(samples=3))
    assert all(x["status"] == "generated" for x in more["leaves"])


def test_killed_run_resumes_without_redoing_finished_leaves(sample_taxonomy, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        generate(sample_taxonomy, tmp_path / "a", ScriptedTeacher(fail_after=2))
    resumed = ScriptedTeacher()
    summary = generate(sample_taxonomy, tmp_path / "a", resumed)
    statuses = [x["status"] for x in summary["leaves"]]
    assert statuses.count("cached") == 2 and statuses.count("generated") == 5
    assert not list((tmp_path / "a").rglob("*.tmp*"))


def test_malformed_empty_and_truncated_teacher_output_is_counted(sample_taxonomy, tmp_path):
    teacher = ScriptedTeacher({"knowledge_short": "[Question]\nWhat?\n[Answer]\n", "knowledge_long": "",
                               "skill_freeform": "[Question]\nDo X.\n[Answer]\nDone.\n[End]\n[Question]\ncut",
                               "skill_grounded": "garbage"})
    summary = generate(sample_taxonomy, tmp_path / "o", teacher)
    by = {x["path"].split("/")[-2]: x for x in summary["leaves"]}
    water = read_jsonl(tmp_path / "o/generated" / "knowledge__science__earth__water_cycle.jsonl")
    assert by["water_cycle"]["malformed"] > 0 and {r["shape"] for r in water} == {"seed"}  # nothing from the teacher
    assert by["haiku"]["samples"] > 0 and by["haiku"]["malformed"] > 0


def test_invalid_taxonomy_and_unknown_leaf_are_clear_errors(sample_taxonomy, tmp_path):
    with pytest.raises(GenerateError, match="no leaves match"):
        generate(sample_taxonomy, tmp_path / "o", OfflineTeacher(), only=["knowledge/nope"])
    leaf = sample_taxonomy / "compositional_skills/writing/freeform/haiku/qna.yaml"
    leaf.write_text(leaf.read_text().replace("created_by: sprout-maintainers", "created_by:"))
    with pytest.raises(GenerateError, match="sprout validate"):
        generate(sample_taxonomy, tmp_path / "o", OfflineTeacher())


def test_only_selected_leaves(sample_taxonomy, tmp_path):
    summary = generate(sample_taxonomy, tmp_path / "o", OfflineTeacher(), only=["knowledge/science"])
    assert [x["path"] for x in summary["leaves"]] == ["knowledge/science/earth/water_cycle/qna.yaml"]
