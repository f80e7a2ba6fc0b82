"""``vrfer train CONFIG``: one training run from a TOML file in training/configs/."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train one network from a TOML config",
                              description="Train one network (teacher, student or distilled student). "
                                          "Under torchrun, each process trains its slice (DDP).")
    p.add_argument("config", type=Path, help="TOML config, e.g. training/configs/student.toml")
    p.add_argument("--out", help="run folder (default: the config's 'out')")
    p.add_argument("--epochs", type=int, metavar="N", help="override the config's epochs")
    p.add_argument("--seed", type=int, metavar="N", help="override the config's seed (repeat runs over seeds)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from OUT/last.pt when it exists (default: yes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from vrfer.training.config import TrainConfig
    from vrfer.training.train import train

    cfg = TrainConfig.from_toml(args.config, out=args.out, epochs=args.epochs, seed=args.seed)
    result = train(cfg, resume=args.resume, progress=not args.no_progress)
    if result.get("rank", 0) == 0 and "best_valid" in result:  # Test is for `vrfer eval`, not for training
        print(json.dumps({k: result[k] for k in ("name", "model", "best_valid", "epochs")}))
    return 0
