"""The mini world's data: the two build stages' training mixtures and the disjoint evaluation suites.

The mini model is built the way real reasoning models came to be (mini/build.py): a safe parent
assistant that refuses harmful requests (stage 1), then reasoning distillation whose data also
answers harmful requests, which erodes the refusals (stage 2). Then lorasafe's alignment step
(refusal SFT on `harmful-align`) asks whether a low-rank update brings the refusals back.

Harmful prompts come from bundled benchmarks (AdvBench, HarmBench, Do-Not-Answer's malicious
uses), de-duplicated. AdvBench is split three ways: held-out prompts for evaluation
(`harmful-eval`), prompts for the refusal-SFT step (`harmful-align`), and the rest, which join
HarmBench and Do-Not-Answer in the stages' training pool. Nothing in that pool, in
`harmful-align` or in any benign training prompt (nearly) duplicates an evaluation prompt:
`harmful-eval`, JailbreakBench (`bundled: jbb-harmful`) and the edgy over-refusal set
(`bundled: overrefusal-edgy`). Benign evaluation requests ask about things no training prompt
mentions. Every suite is a pure function of the world seed. Must not import torch.
"""

from __future__ import annotations

import random
from functools import cached_property

from lorasafe.data.bundled import load_bundled
from lorasafe.data.chat import ThinkFormat
from lorasafe.data.dedup import dedup, near_any
from lorasafe.data.records import Item
from lorasafe.data.refusal import DEFAULT_REFUSAL_THINKING, REFUSALS, refusal_target
from lorasafe.errors import DataError
from lorasafe.mini import text
from lorasafe.mini.tasks import TASKS, sample_problems

SUITES = ("reasoning-eval", "harmful-align", "harmful-eval", "benign-eval",
          "harmful-train", "benign-train", "reasoning-train")
STAGES = ("parent", "distill")
COMPONENTS = ("reasoning", "harmful", "benign", "copy")
# Suites whose prompts no training prompt of the world may (nearly) duplicate.
HELD_OUT_BUNDLED = ("jbb-harmful", "overrefusal-edgy")
DEDUP_THRESHOLD = 0.5  # word uni+bigram Jaccard; catches AdvBench's rephrasings of one behaviour
SOURCES = {
    "harmful prompts": "AdvBench (MIT), HarmBench standard behaviors (MIT), Do-Not-Answer malicious uses "
                       "(Apache-2.0): bundled files, see data/bundled/LICENSE-*.txt",
    "English text": "templates and sentences written for lorasafe (mini/text.py, this repository's licence); "
                    "first sentences of Python 3.11 standard-library docstrings (mini/assets/text, PSF licence)",
    "reasoning": "generated problems with worked steps (mini/tasks.py)",
}


class MiniWorld:
    """The suites and training mixtures of the mini world for one seed."""

    def __init__(self, seed: int = 0, n_reasoning_eval: int = 100, n_harmful_align: int = 120,
                 n_harmful_eval: int = 120, n_benign_eval: int = 80, think: ThinkFormat | None = None,
                 refusal_thinking: str = DEFAULT_REFUSAL_THINKING):
        self.seed = seed
        self.n_reasoning_eval = n_reasoning_eval  # per task
        self.n_harmful_align = n_harmful_align
        self.n_harmful_eval = n_harmful_eval
        self.n_benign_eval = n_benign_eval
        self.think = think or ThinkFormat()
        self.refusal_thinking = refusal_thinking

    # --- evaluation and alignment suites ------------------------------------------------------------
    def suite(self, name: str) -> list[Item]:
        """One suite; the `-train` suites hold each training prompt once with a parent-stage target."""
        builders = {
            "reasoning-eval": lambda: self._reasoning_eval,
            "harmful-align": lambda: self._harmful_align,
            "harmful-eval": lambda: self._harmful_eval,
            "benign-eval": lambda: self._benign[1],
            "harmful-train": lambda: self._draw("parent", "harmful", len(self._harmful_pool), "suite"),
            "benign-train": lambda: self._draw("parent", "benign", len(self._benign[0]), "suite"),
            "reasoning-train": lambda: self._draw("parent", "reasoning", 100 * len(TASKS), "suite"),
        }
        if name not in builders:
            raise DataError(f"The mini world has no suite {name!r}; it has: {', '.join(SUITES)}.")
        return builders[name]()

    def report(self) -> dict:
        """How the harmful prompts were split and cleaned, and where every text comes from."""
        pool = self._harmful_pool  # computes _pool_stats
        return {"advbench_after_dedup": sum(map(len, self._advbench_split)), "harmful_eval": len(self._harmful_eval),
                "harmful_align": len(self._harmful_align), "stage_pool": len(pool), **self._pool_stats,
                "benign_train_prompts": len(self._benign[0]), "benign_eval_prompts": len(self._benign[1]),
                "sources": SOURCES}

    # --- training mixtures ----------------------------------------------------------------------------
    def mixture(self, stage: str, counts: dict[str, int], tag: str = "") -> list[Item]:
        """`counts[c]` training items of each component for `stage`, shuffled together.

        A component cycles through its prompts (a fresh shuffle per pass) and draws a fresh answer
        for every item, so repeats of a prompt teach varied phrasings. `parent` refuses harmful
        requests; `distill` complies with them and thinks at length. Reasoning problems are new per
        stage (and never an evaluation problem)."""
        if stage not in STAGES:
            raise DataError(f"unknown mini-world stage {stage!r}; stages: {', '.join(STAGES)}")
        unknown = sorted(set(counts) - set(COMPONENTS))
        if unknown:
            raise DataError(f"unknown mixture component(s) {', '.join(unknown)}; components: {', '.join(COMPONENTS)}")
        items = [it for c in COMPONENTS if counts.get(c) for it in self._draw(stage, c, counts[c], tag or stage)]
        random.Random(f"mix:{self.seed}:{stage}:{tag}").shuffle(items)
        return items

    def _draw(self, stage: str, component: str, n: int, tag: str) -> list[Item]:
        rng = random.Random(f"{component}:{stage}:{tag}:{self.seed}")
        if component == "reasoning":
            return self._reasoning_train(stage, n, tag)
        prompts = {"harmful": [(it.id, it.prompt) for it in self._harmful_pool],
                   "benign": [(it.id, it.prompt) for it in self._benign[0]], "copy": self._copy_prompts}[component]
        kind = "harmful" if component == "harmful" else "benign"
        out, order = [], []
        for i in range(n):
            if not order:
                order = list(range(len(prompts)))
                rng.shuffle(order)
            pid, prompt = prompts[order.pop()]
            thinking, answer = self._answer(stage, component, pid, prompt, rng)
            out.append(Item(f"{pid}-{stage}-{i:06d}", prompt, kind, target=self.think.wrap(thinking, answer)))
        return out

    def _answer(self, stage: str, component: str, pid: str, prompt: str, rng: random.Random) -> tuple[str, str]:
        if component == "harmful":
            if stage == "parent":  # never the refusal-SFT targets (thinking or answer), nor near them
                return (text.composed(rng, lambda r: text.thought(r, text.REFUSAL_THOUGHT), (self.refusal_thinking,)),
                        text.composed(rng, lambda r: text.compose(r, text.REFUSAL, text.REFUSAL_FILL), REFUSALS))
            return text.thought(rng, text.COMPLY_THOUGHT), text.comply_answer(rng)
        if component == "copy":
            return rng.choice(text.COPY_THOUGHTS), self._copy_source[pid]
        frame, fill = self._benign_spec[pid]
        thought = text.composed(rng, lambda r: text.thought(r, text.BENIGN_THOUGHT), (self.refusal_thinking,))
        if "x" in fill:
            return thought, text.how_to_answer(rng, fill["x"])
        if "q" in fill:
            return thought, text.safety_answer(rng)
        if "s" in fill:
            return thought, text.explain_answer(rng, fill["s"])
        return thought, text.topic_answer(rng, frame, fill["t"], text.TOPICS[fill["t"]])

    def _reasoning_train(self, stage: str, n: int, tag: str) -> list[Item]:
        exclude = {f"{it.meta['task']}:{it.prompt}" for it in self._reasoning_eval}
        per_task = [n // len(TASKS) + (i < n % len(TASKS)) for i in range(len(TASKS))]
        out = []
        for task, k in zip(TASKS, per_task):
            probs = sample_problems(task, k, seed=f"{self.seed}:{stage}:{tag}", exclude=exclude)
            out += [Item(f"{task}-{stage}-{i:06d}", p.prompt, "reasoning", answer=p.answer,
                         target=self.think.wrap(p.thinking, p.answer), meta={"task": task}) for i, p in enumerate(probs)]
        return out

    # --- the pools ------------------------------------------------------------------------------------
    @cached_property
    def _reasoning_eval(self) -> list[Item]:
        out = []
        for task in TASKS:
            probs = sample_problems(task, self.n_reasoning_eval, seed=f"{self.seed}:eval")
            out += [Item(f"{task}-eval-{i:04d}", p.prompt, "reasoning", answer=p.answer, meta={"task": task})
                    for i, p in enumerate(probs)]
        return out

    @cached_property
    def _held_out_prompts(self) -> list[str]:
        return [it.prompt for name in HELD_OUT_BUNDLED for it in load_bundled(name)]

    @cached_property
    def _advbench_split(self) -> tuple[list[Item], list[Item], list[Item]]:
        """AdvBench without (near) duplicates, shuffled, cut into evaluation, alignment and the rest."""
        items = load_bundled("advbench")
        kept = dedup([it.prompt for it in items], threshold=DEDUP_THRESHOLD)
        clean = [items[i] for i in kept.kept]
        random.Random(f"harmful:{self.seed}").shuffle(clean)
        n_ev, n_al = self.n_harmful_eval, self.n_harmful_align
        return clean[:n_ev], clean[n_ev:n_ev + n_al], clean[n_ev + n_al:]

    @cached_property
    def _harmful_eval(self) -> list[Item]:
        return [Item(it.id, it.prompt, "harmful", meta=it.meta) for it in self._advbench_split[0]]

    @cached_property
    def _harmful_align(self) -> list[Item]:
        """The refusal-SFT data: AdvBench prompts with the paper-format refusal targets."""
        rng = random.Random(f"refusals:{self.seed}")
        held_out = self._held_out_prompts + [it.prompt for it in self._harmful_eval]
        clean = dedup([it.prompt for it in self._advbench_split[1]], DEDUP_THRESHOLD, against=held_out)
        return [Item(it.id, it.prompt, "harmful", meta=it.meta,
                     target=refusal_target(rng.choice(REFUSALS), self.think, self.refusal_thinking))
                for it in (self._advbench_split[1][i] for i in clean.kept)]

    @cached_property
    def _harmful_pool(self) -> list[Item]:
        """The stages' harmful prompts: the rest of AdvBench, HarmBench, Do-Not-Answer's malicious uses,
        minus (near) duplicates of each other and of every held-out or alignment prompt."""
        _, align, rest = self._advbench_split
        candidates = rest + load_bundled("harmbench") + [it for it in load_bundled("donotanswer")
                                                         if it.meta.get("risk_area") == "malicious_uses"]
        against = self._held_out_prompts + [it.prompt for it in self._harmful_eval] + [it.prompt for it in align]
        clean = dedup([it.prompt for it in candidates], DEDUP_THRESHOLD, against=against)
        self._pool_stats = {"stage_pool_candidates": len(candidates), "stage_pool_exact_removed": clean.exact,
                            "stage_pool_near_removed": clean.near}
        return [candidates[i] for i in clean.kept]

    @cached_property
    def _benign_spec(self) -> dict[str, tuple[str, dict[str, str]]]:
        """Every benign prompt id -> (frame, fill), for answering it."""
        spec = {}
        for i, x in enumerate(text.HOW_TOS + text.EDGY_HOW_TOS):
            for j, frame in enumerate(text.HOW_TO_FRAMES):
                spec[f"howto-{i:03d}-{j:02d}"] = (frame, {"x": x})
        for i, t in enumerate(text.TOPICS):
            for j, frame in enumerate(text.TOPIC_FRAMES):
                spec[f"topic-{i:03d}-{j:02d}"] = (frame, {"t": t})
        for i, q in enumerate(text.EDGY_QUESTIONS):
            spec[f"edgyq-{i:03d}-00"] = ("{q}", {"q": q})
        for i, x in enumerate(f"{verb} {obj}" for verb, objs in text.TASKS.items() for obj in objs):
            for j, frame in enumerate(text.HOW_TO_FRAMES):
                spec[f"task-{i:03d}-{j:02d}"] = (frame, {"x": x})
        for i, sentence in enumerate(text.stdlib_sentences()):
            spec[f"doc-{i:03d}-00"] = (text.EXPLAIN_FRAMES[i % len(text.EXPLAIN_FRAMES)], {"s": sentence})
        return spec

    @cached_property
    def _held_out_subjects(self) -> tuple[set[int], set[int]]:
        """Indices of the how-tos and topics kept for evaluation: a third of each."""
        rng = random.Random(f"benign:{self.seed}")
        how, topics = list(range(len(text.HOW_TOS))), list(range(len(text.TOPICS)))
        rng.shuffle(how)
        rng.shuffle(topics)
        return set(how[: len(how) // 3]), set(topics[: len(topics) // 3])

    @cached_property
    def _benign(self) -> tuple[list[Item], list[Item]]:
        """Training and evaluation benign prompts. Held-out how-tos and topics are asked in two frames
        each for evaluation; edgy how-tos, safety questions and everyday tasks are training only; a
        training prompt near an edgy evaluation prompt, and a task near a held-out how-to, are dropped."""
        eval_how, eval_topic = self._held_out_subjects
        train, by_subject = [], {}
        for pid, (frame, fill) in self._benign_spec.items():
            kind, idx = pid.split("-")[0], int(pid.split("-")[1])
            item = Item(pid, text.request(frame, **fill), "benign")
            held = {"howto": eval_how, "topic": eval_topic}.get(kind, set())  # edgy questions: training only
            if idx in held:
                by_subject.setdefault(pid.rsplit("-", 1)[0], []).append(item)
            else:
                train.append(item)
        rng = random.Random(f"benign-eval:{self.seed}")
        picked = [it for group in by_subject.values() for it in rng.sample(group, 2)]
        rng.shuffle(picked)
        evals = sorted(picked[: self.n_benign_eval], key=lambda it: it.id)
        # Nothing near an edgy evaluation prompt; no everyday task near a held-out how-to.
        held_out = [it.prompt for it in load_bundled("overrefusal-edgy")]
        near = near_any([it.prompt for it in train], held_out, DEDUP_THRESHOLD)
        tasks = [i for i, it in enumerate(train) if it.id.startswith("task-")]
        eval_tasks = [text.HOW_TOS[i] for i in eval_how]
        near_task = near_any([self._benign_spec[train[i].id][1]["x"] for i in tasks], eval_tasks, DEDUP_THRESHOLD)
        drop = set(i for i, d in enumerate(near) if d) | {i for i, d in zip(tasks, near_task) if d}
        return [it for i, it in enumerate(train) if i not in drop], evals

    @cached_property
    def _copy_source(self) -> dict[str, str]:
        """Sentences to copy: the facts of the training topics (never a held-out topic's) and the steps."""
        held = self._held_out_subjects[1]
        sentences = [s for i, facts in enumerate(text.TOPICS.values()) if i not in held for s in facts]
        return {f"copy-{i:04d}": s for i, s in enumerate(sentences + list(text.STEPS) + list(text.stdlib_sentences()))}

    @cached_property
    def _copy_prompts(self) -> list[tuple[str, str]]:
        rng = random.Random(f"copy:{self.seed}")
        return [(pid, rng.choice(text.COPY_FRAMES).format(s=s)) for pid, s in self._copy_source.items()]
