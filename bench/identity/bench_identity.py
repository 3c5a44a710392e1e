"""manage.py bench_identity: precision and recall of the master patient index on a synthetic
alliance with realistic identity errors (bench/identity/synthetic.py)."""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from bench.harness.command import BenchCommand

from .run import DEFAULT_LOWER, DEFAULT_UPPER, linkage_score, world_load, world_remove
from .synthetic import alliance_generate


class Command(BenchCommand):
    help = (
        "Link a synthetic alliance's patient records (typos, swapped names, missing IDs, "
        "pinyin/hanzi, transposed birth dates, resident numbers) and print precision/recall."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--persons", type=int, default=2000)
        parser.add_argument("--sites", type=int, default=5)
        parser.add_argument("--seed", type=int, default=16)
        parser.add_argument("--errors", type=float, default=0.05, help="rate of each error kind")
        parser.add_argument("--resident-ids", type=float, default=0.3)
        parser.add_argument("--upper", type=float, default=DEFAULT_UPPER)
        parser.add_argument("--lower", type=float, default=DEFAULT_LOWER)

    def run(self, **options: Any) -> None:
        synthetic = alliance_generate(
            persons=options["persons"],
            sites=options["sites"],
            seed=options["seed"],
            errors=options["errors"],
            with_resident_id=options["resident_ids"],
        )
        alliance, truth = world_load(synthetic, tag=uuid.uuid4().hex[:8])
        try:
            score = linkage_score(alliance, truth, upper=options["upper"], lower=options["lower"])
        finally:
            if not options["keep_data"]:
                world_remove(alliance)
        self.say(
            f"{options['persons']} persons, {score.records} records at {options['sites']} sites, "
            f"{score.true_pairs} true same-person pairs; thresholds "
            f"upper={options['upper']} lower={options['lower']}"
        )
        self.out.figure("identity precision", score.precision, "", "linked pairs that are true")
        self.out.figure("identity recall", score.recall, "", "true pairs linked")
        self.out.figure("identity linked pairs", score.linked_pairs, "pairs")
        self.out.figure("identity queued", score.proposed, "proposals", "for a person")
        self.out.figure(
            "identity queued true", score.proposed_true, "proposals", "that are the same person"
        )
        self.out.figure(
            "identity recall after review",
            score.recall_after_review,
            "",
            "if a reviewer accepts the true proposals",
        )
        self.out.figure("identity linker time", score.seconds, "s")
