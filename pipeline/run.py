"""`sprout run`: checkout -> validate -> diff -> generate -> filter -> mix -> train -> evaluate ->
report, in a run folder with a manifest; a rerun resumes at the first unfinished stage."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from . import __version__

INCREMENTAL_REPLAY = 0.5
"""Replay share of each phase when continuing from the last accepted model (--start-from last)."""
STAGES = ("checkout", "validate", "diff", "generate", "filter", "mix", "train", "evaluate", "report")


class RunError(Exception):
    """The run stops; the message says at which stage and why."""


@dataclass(frozen=True)
class RunConfig:
    taxonomy: str = "taxonomy"
    """A taxonomy folder, or a git URL/path (cloned into the run folder)."""
    ref: str | None = None
    """Commit to check out (git); default: as it is on disk."""
    base_ref: str | None = None
    """Diff against this commit (a pull request's base) instead of the last trained one."""
    changed_only: bool = False
    """Generate and filter only the changed leaves (previews); a retrain uses every leaf."""
    out: str | None = None
    """Run folder; default runs/<run id>."""
    runs_root: str = "runs"
    """Where the model registry (models.json) and the default base student live."""
    storage: str | None = None
    """Where the registry, run folders, checkpoints and models live: a folder or an object-store
    URI (s3://bucket/prefix, gs://...; see storage.py); default: ``runs_root``. With a URI,
    ``out`` is a run name under it and the stages work in a node-local copy."""
    placement: str = "PACK"
    """Ray placement strategy for the training workers (STRICT_SPREAD: one node each)."""
    teacher: str = "offline"
    teacher_model: str | None = None
    teacher_concurrency: int = 128
    """Requests in flight to an OpenAI-compatible teacher or judge, all leaves together."""
    judge: str | None = None
    """A model that grades answers (filter and evaluation): 'teacher' (the default: the teacher
    when it is a model), 'none', an http(s) OpenAI-compatible URL or a model folder."""
    judge_model: str | None = None
    student: str = "default"
    """'default' (SmolLM2-135M-Instruct), 'tiny' (random init: smoke runs) or an HF folder."""
    recipe: str = "auto"
    """'auto', 'lab', 'cpu' or 'tiny' (see train/recipe.py)."""
    train_layers: int | None = None
    """Train only the top N layers (0: every weight); None: the recipe's choice."""
    lr: float | None = None
    """Override the recipe's learning rate (both phases)."""
    precision: str = "auto"
    """'auto': the recipe's (bf16 on a GPU that has it natively or, in the cpu recipe, on a CPU
    with AMX; else fp32), 'bf16' or 'fp32'."""
    gradient_checkpointing: bool | None = None
    """None: on when the model's size leaves the GPU too little room without it (train/recipe.py)."""
    start_from: str = "base"
    """'base': the original base model with all data (and replay); 'last': the last accepted model."""
    workers: int = 1
    gpu: bool = False
    """Train on GPUs: one per Ray Train worker, NCCL, bf16 (an error when none is visible)."""
    epochs: int | None = None
    """Override LAB's scaled epochs for both phases (smoke runs)."""
    max_steps: int | None = None
    checkpoint_every: int = 25
    """Optimizer steps between training checkpoints (and one at each phase end)."""
    embeddings: bool = True
    probe_questions: int | None = None
    """Ask only the first N forgetting-probe questions (smoke runs)."""
    seed: int = 42


def _git(repo: Path, *args: str) -> str:
    p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if p.returncode:
        raise RunError(f"git {' '.join(args)}: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else 'failed'}")
    return p.stdout.strip()


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Run:
    def __init__(self, config: RunConfig, log=print, kind: str = "run"):
        self.config = config
        self.log = log
        from .runplace import RunPlace
        # unique: a preview and a precheck of the same PR may start in the same second
        self.place = RunPlace(config.storage or config.runs_root, config.out,
                              f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
        self.root = self.place.root
        self.out = self.place.local
        if not self.place.remote:  # a scratch copy of an object store is removed by the run itself
            from .cachecap import prune_runs
            prune_runs(self.root, self.out)  # capped, oldest first; never a registered model's run
        self.manifest_path = self.out / "manifest.json"
        self.manifest = json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {
            "run_id": self.out.name + "-" + uuid.uuid4().hex[:6], "config": asdict(config), "stages": {},
            "versions": self._versions()}
        self.state: dict = self.manifest.setdefault("state", {})

    @staticmethod
    def _versions() -> dict:
        out = {"sprout": __version__}
        for mod in ("torch", "transformers", "deepspeed", "ray"):
            try:
                out[mod] = __import__(mod).__version__
            except Exception:
                pass
        return out

    def save(self) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2, default=str))
        os.replace(tmp, self.manifest_path)

    def stage(self, name: str, inputs, fn) -> None:
        key = _hash([name, inputs, asdict(self.config)])
        done = self.manifest["stages"].get(name)
        if done and done.get("status") == "done" and done.get("key") == key:
            self.log(f"[{name}] done in an earlier run: skipped")
            return
        self.log(f"[{name}] ...")
        started = time.time()
        self.manifest["stages"][name] = {"status": "running", "key": key, "started": started}
        self.save()
        try:
            result = fn() or {}
        except Exception as e:
            self.manifest["stages"][name].update(status="failed", error=f"{type(e).__name__}: {e}",
                                                 seconds=round(time.time() - started, 2))
            self.save()
            self.place.push()
            raise
        self.manifest["stages"][name].update(status="done", seconds=round(time.time() - started, 2), **result)
        self.save()
        self.place.push()  # an object store gets the stage's files (a local folder has them)
        self.log(f"[{name}] done in {time.time() - started:.1f}s")

    # -- registry ---------------------------------------------------------------------------
    def registry(self) -> list[dict]:
        return self.place.registry()

    def last_accepted(self) -> dict | None:
        """The newest accepted model whose folder still exists (a model can be deleted by hand)."""
        accepted = [m for m in self.registry() if m.get("verdict") == "accepted"]
        if accepted and not self.place.model_exists(accepted[-1]["path"]):
            self.log(f"the last accepted model {accepted[-1]['path']} is gone: using the base")
            return None
        return accepted[-1] if accepted else None

    def register(self, entry: dict) -> None:
        self.place.register(entry)  # safe against a second writer (a lock, or a conditional write)

    # -- stages -------------------------------------------------------------------------------
    def execute(self, until: str = "report") -> dict | None:
        """Run the stages up to and including ``until``; the report when the run got that far."""
        c = self.config
        self.stage("checkout", [c.taxonomy, c.ref], self.checkout)
        tree = self._tree_hash(Path(self.state["taxonomy_path"]))  # reads every file: once
        self.stage("validate", [self.state.get("taxonomy_sha"), tree], self.validate)
        self.stage("diff", [self.state.get("taxonomy_sha"), tree], self.diff)
        if until == "diff":
            return None
        self.stage("generate", [tree, self.state["changed"]], self.generate)
        self.stage("filter", [self.manifest["stages"]["generate"]["key"]], self.filter)
        if until == "filter":
            return None
        self.stage("mix", [self.manifest["stages"]["filter"]["key"]], self.mix)
        if until == "mix":
            return None
        self.stage("train", [self.manifest["stages"]["mix"]["key"]], self.train)
        self.stage("evaluate", [self.manifest["stages"]["train"]["key"]], self.evaluate)
        self.stage("report", [self.manifest["stages"]["evaluate"]["key"]], self.report)
        return json.loads((self.out / "report.json").read_text())

    @staticmethod
    def _tree_hash(tax: Path) -> str:
        from .checkout import tree_hash
        return tree_hash(tax)  # never follows a link (a PR's link to /proc/self/pagemap)

    def checkout(self) -> dict:
        c = self.config
        src = c.taxonomy
        is_url = bool(re.match(r"^[a-z][a-z0-9+.-]*://", src) or re.match(r"^[^/]+@[^:]+:", src))
        if is_url or c.ref:
            dest = self.out / "checkout"
            if not (dest / ".git").exists():
                from .checkout import CheckoutError, clone
                try:  # bounded, no filters or hooks (checkout.py)
                    clone(src, dest)
                except CheckoutError as e:
                    raise RunError(f"cannot clone {src}: {e}") from None
            self._checkout_ref(dest, c.ref or "HEAD")
            root = dest / "taxonomy" if (dest / "taxonomy").is_dir() and not (dest / "knowledge").is_dir() else dest
            sha = _git(dest, "rev-parse", "HEAD")
            repo = dest
            self.state["cloned"] = True
        else:
            root = Path(src).resolve()
            if not root.is_dir():
                raise RunError(f"taxonomy {src} not found")
            try:
                repo = Path(_git(root, "rev-parse", "--show-toplevel"))
                sha = _git(root, "rev-parse", "HEAD")
            except RunError:
                repo, sha = None, None
        self.state.update(taxonomy_path=str(root), taxonomy_sha=sha, repo=str(repo) if repo else None)
        return {"taxonomy": str(root), "sha": sha}

    @staticmethod
    def _checkout_ref(repo: Path, ref: str) -> None:
        from .checkout import CheckoutError, checkout_ref
        try:
            checkout_ref(repo, ref)
        except CheckoutError as e:
            raise RunError(str(e)) from None

    def validate(self) -> dict:
        from .taxonomy import render
        from .taxonomy.reader import iter_leaves
        results = list(iter_leaves(Path(self.state["taxonomy_path"])))
        bad = [r for r in results if not r.ok]
        if bad:
            (self.out / "validation.txt").write_text(render.text(bad))
            raise RunError("validate: the taxonomy has invalid leaves:\n" + render.text(bad, show_hints=False))
        return {"leaves": len(results)}

    def diff(self) -> dict:
        from .taxonomy.reader import iter_leaves
        tax = Path(self.state["taxonomy_path"])
        leaves = sorted(r.path for r in iter_leaves(tax))
        accepted = [m for m in self.registry() if m.get("verdict") == "accepted" and m.get("taxonomy_sha")]
        last = accepted[-1] if accepted else None
        if self.config.base_ref:
            last = {"taxonomy_sha": self.config.base_ref}
        changed, added = leaves, leaves
        if last and self.state.get("repo") and self.state.get("taxonomy_sha"):
            from .taxonomy.diff import changed_leaves
            repo = Path(self.state["repo"])
            under = os.path.relpath(tax, repo)
            try:
                # without --ref the taxonomy is used as it is on disk: diff against the working tree
                head = self.state["taxonomy_sha"] if (self.config.ref or self.state.get("cloned")) else None
                diff = changed_leaves(repo, last["taxonomy_sha"], head, under="" if under == "." else under)
                prefix = "" if under == "." else under + "/"
                changed = sorted(c.path[len(prefix):] for c in diff if c.status != "deleted")
                added = sorted(c.path[len(prefix):] for c in diff if c.status == "added")
            except Exception as e:
                if self.config.base_ref:  # asked for this diff: guessing would mislead
                    raise RunError(f"diff: cannot diff against {self.config.base_ref}: {e}") from e
                self.log(f"[diff] cannot diff against {last['taxonomy_sha'][:12]} ({e}); treating all leaves as changed")
        self.state.update(changed=changed, added=added, last_trained=last["taxonomy_sha"] if last else None)
        return {"changed": len(changed), "added": len(added), "against": last["taxonomy_sha"] if last else None}

    def generate(self) -> dict:
        from .sdg.generate import generate
        from .sdg.teachers import close_teachers, make_teacher
        from .sdg.cost import text
        from .filter.run import FilterConfig, screen
        teacher = make_teacher(self.config.teacher, model=self.config.teacher_model,
                               concurrency=self.config.teacher_concurrency)
        only = self.state["changed"] if self.config.changed_only else None
        # the judge is asked about each pair as it parses, in the teacher's pool when it is the teacher
        judge = self._judge(teacher)
        try:
            summary = generate(Path(self.state["taxonomy_path"]), self.out / "data", teacher, only=only, judge=judge,
                               screen=functools.partial(screen, config=FilterConfig(use_embeddings=self.config.embeddings)))
        finally:  # the pools' threads end with the stage (the bot's worker runs many runs)
            close_teachers(teacher, judge)
        fresh = [x["path"] for x in summary["leaves"] if x["status"] == "generated"]
        self.log(f"[generate] {len(fresh)} leaves generated, {len(summary['leaves']) - len(fresh)} from cache; "
                 f"teacher: {text(summary['cost'])}"
                 + (f"; judge, asked ahead: {text(summary['judge']['cost'])}" if summary["judge"]["asked_ahead"] else ""))
        return {"generated_leaves": fresh, "samples": sum(x["samples"] for x in summary["leaves"]),
                "cost": summary["cost"], "judge_cost": summary["judge"]["cost"], "funnel": summary["funnel"],
                "leaf_cost": {x["path"]: {**x["cost"], **x["funnel"]} for x in summary["leaves"]
                              if x["status"] == "generated"}}

    def _judge(self, teacher=None):
        """The model that grades (filter and evaluation), or None; ``teacher`` itself when it is the judge."""
        from .sdg.teachers import make_teacher
        c = self.config
        if c.judge in (None, "", "teacher"):
            teacher = teacher or make_teacher(c.teacher, model=c.teacher_model, concurrency=c.teacher_concurrency)
            return teacher if getattr(teacher, "can_judge", False) else None  # the offline one cannot
        if c.judge == "none":
            return None
        return make_teacher(c.judge, model=c.judge_model, concurrency=c.teacher_concurrency)

    def filter(self) -> dict:
        from .filter.run import FilterConfig, read_replies, run_filters_cached, write_report
        from .sdg.generate import read_jsonl, read_leaf_infos, write_jsonl
        data = self.out / "data"
        records = [r for f in sorted((data / "generated").glob("*.jsonl")) for r in read_jsonl(f)]
        leaves = read_leaf_infos(data)
        from .sdg import cost
        judge = self._judge()
        started = time.time()
        from .sdg.teachers import close_teachers
        try:
            kept, rep, fresh = run_filters_cached(records, leaves, FilterConfig(use_embeddings=self.config.embeddings),
                                                  teacher=judge, replies=read_replies(data))
        finally:
            close_teachers(judge)
        self.log(f"[filter] {len(fresh)} leaves filtered, {len(leaves) - len(fresh)} from cache"
                 + (f"; judged by {judge.identity}" if judge else ""))
        write_report(rep, data)
        # Held out at the source, before generation (sdg/heldout.py): listed here for evaluation
        # and for anyone checking that none of it is in data/phase*.jsonl.
        heldout = [{"leaf": path, **h} for path, info in sorted(leaves.items()) for h in info.get("heldout", [])]
        write_jsonl(data / "heldout.jsonl", heldout)
        write_jsonl(data / "filtered.jsonl", kept)
        self.manifest["heldout"] = heldout
        spent = cost.of(judge)
        spent.seconds = time.time() - started
        return {"in": rep["totals"]["in"], "out": rep["totals"]["out"], "heldout": len(heldout),
                "filtered_leaves": fresh, "judge": judge.identity if judge else None, "cost": spent.as_dict()}

    def mix(self) -> dict:
        from dataclasses import replace

        from .mix import Recipe, mix
        from .package_data import local_path
        from .sdg.generate import read_jsonl, read_leaf_infos
        data = self.out / "data"
        leaves = read_leaf_infos(data)
        records = read_jsonl(data / "filtered.jsonl")
        # A small general replay buffer ships with Sprout (distinct from the forgetting probe), so
        # that training on a few leaves does not wash out general answering.
        general = local_path("replay")
        previous = self._previous_training_data()
        recipe = replace(Recipe(), replay_sources=(str(general), *previous))
        incremental = bool(previous)
        if incremental:
            # Continuing from the last accepted model: it has learnt the unchanged leaves already,
            # so train on the changed ones, with its own training data as replay at a higher share.
            changed = set(self.state["changed"])
            records = [r for r in records if r["leaf"] in changed]
            if not records:
                raise RunError("mix: no leaf changed since the last accepted model "
                               f"({(self.state.get('last_trained') or '?')[:12]}): nothing new to train on")
            recipe = replace(recipe, replay_ratio=INCREMENTAL_REPLAY)
        summary = mix(records, leaves, data, recipe)
        from .sdg.heldout import leaks
        rows = read_jsonl(data / "phase1.jsonl") + read_jsonl(data / "phase2.jsonl")
        found = leaks(read_jsonl(data / "heldout.jsonl"), rows)
        if found["exact"]:  # decontamination at generation makes this a bug, never a judgement call
            raise RunError(f"mix: {len(found['exact'])} held-out items appear in the training data, e.g. "
                           f"{found['exact'][0]['question']!r}")
        if found["near"]:
            self.log(f"[mix] {len(found['near'])} training answers are near-duplicates (MinHash >= 0.8) of "
                     "held-out answers: listed in manifest.json under heldout_near")
        self.manifest["heldout_near"] = found["near"]
        return {"phase1": summary["phase1"]["samples"], "phase2": summary["phase2"]["samples"],
                "replay_sources": list(recipe.replay_sources), "incremental": incremental,
                "leaves_trained": sorted({r["leaf"] for r in records})}

    def _previous_training_data(self) -> list[str]:
        """The last accepted run's phase datasets, when this run continues from its model."""
        last = self.last_accepted() if self.config.start_from == "last" else None
        if last is None:
            return []
        return [str(p) for p in self.place.local_files(last["run"], ("data/phase1.jsonl", "data/phase2.jsonl"))]

    def _original_base(self) -> Path:
        from .train.student import StudentError, resolve
        try:
            return self.place.student(self.config.student, Path(self.state["taxonomy_path"]), resolve,
                                      log=lambda m: self.log(f"[train] {m}"))
        except StudentError as e:
            raise RunError(f"train: {e}") from None

    def _base_student(self) -> tuple[Path, str]:
        last = self.last_accepted() if self.config.start_from == "last" else None
        if last is not None:
            return self.place.local_model(last["path"]), "last"
        return self._original_base(), "base"

    def _deployed(self) -> Path:
        """The model the new one must beat: the last accepted one, else the original base."""
        last = self.last_accepted()
        return self.place.local_model(last["path"]) if last else self._original_base()

    def train(self) -> dict:
        import torch
        from transformers import AutoConfig

        from .train.data import read_messages
        from .train.loop import TrainConfig
        from .train.recipe import LAB_PHASE1, LAB_PHASE2, plan
        from .train.student import describe
        base, kind = self._base_student()
        student = describe(base)
        data = self.out / "data"
        # A phase with no data is skipped (say, only a skill leaf changed and the run continues
        # from the last model: there is no knowledge to learn).
        sizes = {p.name: len(read_messages(data / p.data)) for p in (LAB_PHASE1, LAB_PHASE2)
                 if (data / p.data).exists() and any(line.strip() for line in (data / p.data).open(encoding="utf-8"))}
        if not sizes:
            raise RunError("train: both phase datasets are empty; nothing to train on")
        for name in {"knowledge", "skills"} - set(sizes):
            self.log(f"[train] {name}: no data, phase skipped")
        c = self.config
        if c.gpu and not torch.cuda.is_available():
            raise RunError("train: --gpu, but torch sees no CUDA device (check the driver, CUDA_VISIBLE_DEVICES "
                           "and that torch is a CUDA build)")
        try:
            chosen = plan(c.recipe, sizes, student["pretrained"], gpu=torch.cuda.is_available(), epochs=c.epochs,
                          train_layers=c.train_layers, lr=c.lr, precision=c.precision)
        except ValueError as e:
            raise RunError(f"train: {e}") from None
        layers_total = getattr(AutoConfig.from_pretrained(base), "num_hidden_layers", None)
        recipe_text = chosen.describe(layers_total)
        self.log(f"[train] {student['name']}{'' if student['pretrained'] else ' (random init: a smoke run)'}: recipe {recipe_text}")
        tc = TrainConfig(student=str(base), out=str(self.out / "model"), phases=chosen.phases, data_dir=str(data),
                         max_len=1024, max_steps=c.max_steps, gradient_checkpointing=c.gradient_checkpointing,
                         seed=c.seed, checkpoint_every=c.checkpoint_every, train_layers=chosen.train_layers,
                         precision=chosen.precision)
        if c.workers > 1:
            from dataclasses import replace

            from .train.ray_train import train_on_ray
            if self.place.remote:  # the workers read the data and the student from the store
                tc = replace(tc, student=self.place.shared_model(base), data_dir=self.place.uri("data"),
                             out=self.place.uri("model"))
            final = train_on_ray(tc, workers=c.workers, use_gpu=c.gpu, placement=c.placement)
        else:
            from .train.loop import train
            final = train(tc)
            self.place.push()  # the exported models go to the store (the checkpoints stay here)
        if self.place.remote:
            self.place.pull_model("model")
            final = self.place.name(f"model/{chosen.phases[-1].name}")
        self.state.update(base_model=self.place.name_of(base), started_from=kind, new_model=str(final), student=student,
                          recipe={"name": chosen.recipe, "train_layers": chosen.train_layers,
                                  "layers": layers_total, "text": recipe_text})
        return {"base": str(base), "started_from": kind, "model": str(final), "recipe": recipe_text,
                "phases": [asdict(p) for p in chosen.phases]}

    def evaluate(self) -> dict:
        from .eval.evaluate import EvalConfig, evaluate, pick_unchanged
        from .mix import SYSTEM
        from .sdg.generate import read_leaf_infos
        data = self.out / "data"
        infos = read_leaf_infos(data)
        changed = set(self.state["changed"]) & set(infos)
        config = EvalConfig(probe_questions=self.config.probe_questions, seed=self.config.seed)
        asked = sorted(changed) + pick_unchanged(list(infos), changed, config.unchanged_sample, config.seed)
        deployed = self._deployed()
        judge = self._judge()
        from .eval.ledger import lineage_turns
        from .sdg.teachers import close_teachers
        try:
            result = evaluate(deployed, self.place.local_model(self.state["new_model"]), {p: infos[p] for p in asked},
                              SYSTEM, config=config, judge=judge, base_dir=self._original_base(), changed=changed,
                              trained=lineage_turns(self.registry(), deployed), log=self.log)
        finally:
            close_teachers(judge)
        (self.out / "evaluation.json").write_text(json.dumps(result, indent=2))
        from .sdg.cost import of
        return {"leaves": len(result["leaves"]), "forgetting_passed": result["forgetting"]["passed"],
                "cost": of(judge).as_dict()}

    def report(self) -> dict:
        from . import report as rpt
        data = self.out / "data"
        ev = json.loads((self.out / "evaluation.json").read_text())
        frep = json.loads((data / "filter_report.json").read_text())
        from .eval.report_rows import leaf_rows, reasons_for
        mixed = json.loads((data / "recipe.json").read_text()).get("leaves", {}) if (data / "recipe.json").exists() else {}
        rows = leaf_rows(ev, frep, mixed)
        reasons = reasons_for(rows, ev["forgetting"])
        verdict = "rejected" if reasons else "accepted"
        # the teacher as generation recorded it: building it again here would load a model
        teacher_id = json.loads((data / "generate_summary.json").read_text())["teacher"]
        offline = self.config.teacher in (None, "", "offline")
        judge = ev.get("judge")
        training: dict = {}
        metrics = self.out / "model" / "metrics.jsonl"
        if metrics.exists():
            for line in metrics.read_text().splitlines():
                m = json.loads(line)
                training.setdefault(m["phase"], []).append({"step": m["step"], "loss": round(m["loss"], 4)})
        report = {"schema": 1, "run_id": self.manifest["run_id"], "sprout": __version__,
                  "verdict": verdict, "reasons": reasons,
                  "taxonomy": {"path": self.state["taxonomy_path"], "ref": self.state.get("taxonomy_sha"),
                               "base_ref": self.state.get("last_trained")},
                  "student": self.state.get("student") or {"name": "?", "pretrained": True},
                  "teacher": {"name": "offline (rule-based, no model)" if offline else teacher_id,
                              "smoke": offline},
                  "judge": judge, "recipe": self.state.get("recipe"),
                  "deployed_model": ev.get("models", {}).get("deployed"),
                  "started_from": {"kind": self.state["started_from"], "model": self.state["base_model"]},
                  "new_model": self.state["new_model"], "leaves": rows, "forgetting": ev["forgetting"],
                  "funnel": {"in": frep["totals"]["in"], "out": frep["totals"]["out"],
                             "filters": {k: v["dropped"] for k, v in frep["totals"]["filters"].items()}},
                  "training": training,
                  "cost": {**{k: v["cost"] for k, v in self.manifest["stages"].items() if v.get("cost")},
                           **({"generate (judge, asked ahead)": j} if (j := self.manifest["stages"].get(
                               "generate", {}).get("judge_cost")) and j.get("requests") else {})},
                  "timings": {k: v.get("seconds", 0) for k, v in self.manifest["stages"].items() if k != "report"}}
        rpt.write(report, self.out)
        self.register({"id": self.manifest["run_id"], "path": self.state["new_model"], "run": self.place.name(),
                       "taxonomy_sha": self.state.get("taxonomy_sha"), "parent": self.state["base_model"],
                       "data_hash": self.manifest["stages"]["mix"]["key"],
                       "config_hash": _hash(asdict(self.config)), "verdict": verdict,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return {"verdict": verdict}


def run(config: RunConfig, log=print, until: str = "report") -> tuple[Path, dict | None]:
    from .sdg.cost import log_mlflow
    r = Run(config, log)
    report = r.execute(until)
    if log_mlflow(r.manifest, log=log):
        log("[cost] logged to MLflow")
    return r.out, report
