"""``vrfer bench``: measured speed, end-to-end accuracy and a soak, as a table or one JSON object.

::

    vrfer bench [--model PATH] [--frames N]     per-stage latency, fps, CPU/frame, peak RSS,
                                                model-only latency of each shipped model
    vrfer bench --e2e [--n N] [--causes]        accuracy on camera-like frames vs dataset crops: the
                                                training family and the held-out one (vrfer.evalframes)
    vrfer bench --e2e [--n N]                   accuracy on camera-like frames vs dataset crops, and the
                                                false-face rate on face-free frames (locate p50/p99 on both)
    vrfer bench --soak SECONDS                  memory growth, longest stall, dropped frames
    vrfer bench --refine [--n N | --all]        JSON: the face locator with refinement off and on
    vrfer bench --locate                        FaceLocator.process timings on a drifting FER+ face
    vrfer bench template|adapt|teacher-cache    the face template, personal calibration under camera
                                                shift, distillation's step time (cli/bench_verbs.py)
    vrfer bench --heldout [--split valid|test] [--heldout-n N] [--causes] [--figure FILE]
                                                the held-out family alone (vrfer.evalframes): choose
                                                on valid (the default), report on test

``--json`` prints one JSON object instead of the table. See docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vrfer.cli.argtypes import degrees_0_90, positive_int, positive_seconds
from vrfer.cli.bench_verbs import add_verbs
from vrfer.core.errors import VrferError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="measure latency, accuracy on camera-like frames, or soak",
                              description="Benchmarks on 640x480 frames built from FER+ Test faces (the demo "
                                          "source). Without --e2e or --soak: per-stage latency, sustained fps, "
                                          "CPU per frame, peak memory and model-only latency.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--model", type=Path, help="ONNX model (default: assets/models/student.onnx or $VRFER_MODEL)")
    p.add_argument("--frames", type=positive_int, default=600, metavar="N",
                   help="timed frames for the stream benchmark (default 600, after 20 warm-up frames)")
    p.add_argument("--threads", type=positive_int, default=1, help="ONNX Runtime threads in the pipeline (default 1)")
    p.add_argument("--hold", type=positive_int, default=30, metavar="N",
                   help="demo frames per face, so the tracker follows a still face as on a camera (default 30)")
    p.add_argument("--static", action="store_true", help="detect the face afresh in every frame (no tracking)")
    p.add_argument("--model-runs", type=positive_int, default=500, metavar="N",
                   help="timed runs per model and thread count for the model-only figures (default 500)")
    p.add_argument("--against", type=Path, metavar="B.onnx",
                   help="also time the model against B (say, the previous model), interleaved call by call "
                        "in this run, and print the ratio")
    p.add_argument("--e2e", action="store_true", help="end-to-end accuracy on camera-like frames")
    p.add_argument("--n", type=positive_int, default=1000, metavar="N",
                   help="FER+ Test faces for --e2e (default 1000; the Test set has 3152)")
    p.add_argument("--all", action="store_true", help="--e2e on every FER+ Test face with a majority label")
    p.add_argument("--mesh-only", action="store_true",
                   help="--e2e with the face mesh alone, without the runtime's fallbacks (headset locator)")
    p.add_argument("--max-yaw", type=degrees_0_90, metavar="DEG",
                   help="--e2e with this head-turn limit instead of the runtime's (60°)")
    p.add_argument("--heldout-n", type=positive_int, default=300, metavar="N",
                   help="--e2e, --heldout: FER+ faces for the held-out family (default 300; --all takes every one)")
    p.add_argument("--causes", action="store_true",
                   help="--e2e, --heldout: also the held-out family's cause table (each factor switched off in turn; slow)")
    p.add_argument("--face-free", type=positive_int, default=100, metavar="N",
                   help="--e2e: frames per kind of the face-free family (core.facefree) for the false-face rate "
                        "(default 100; 7 kinds)")
    p.add_argument("--locator", type=Path, metavar="FILE",
                   help="--e2e, --heldout: this headset locator instead of the shipped one (to compare finders "
                        "on the same frames)")
    p.add_argument("--heldout", action="store_true",
                   help="the held-out frame family alone (vrfer.evalframes), on --split faces")
    p.add_argument("--split", choices=("valid", "test"),
                   help="--heldout: FER+ faces, valid (default; for anything that chooses) or test (the report)")
    p.add_argument("--figure", type=Path, metavar="FILE",
                   help="--heldout: write a JPEG of 8 frame pairs (bare | headset) and stop")
    p.add_argument("--soak", type=positive_seconds, metavar="SECONDS", help="run the pipeline this long at full rate")
    p.add_argument("--source", default="demo", help="source for the stream and soak runs (default demo)")
    p.add_argument("--seed", type=int, default=0, help="seed for the demo order and the camera-like frames")
    p.add_argument("--refine", action="store_true",
                   help="JSON: the face locator with refinement off and on on the same frames (needs FER+; --n, --all)")
    p.add_argument("--locate", action="store_true", help="FaceLocator.process timings on a drifting FER+ Test face")
    p.set_defaults(func=run)
    add_verbs(p.add_subparsers(dest="verb", metavar="VERB", required=False))
    return p


def run(args: argparse.Namespace) -> int:
    from vrfer.bench import runtime as bench
    from vrfer.core.model import default_model_path

    if args.locator is not None:
        if not (args.e2e or args.heldout):
            raise VrferError("--locator goes with --e2e or --heldout")
        if args.mesh_only:
            raise VrferError("--locator and --mesh-only contradict each other (--mesh-only runs no locator)")
        from vrfer.core.face import HeadsetLocator

        HeadsetLocator(args.locator)  # a missing or broken file is refused now, not after minutes of frames
    if args.heldout:
        return _heldout(args)
    if args.against is not None and (args.e2e or args.soak is not None):
        raise VrferError("--against goes with the latency benchmark, not with --e2e or --soak")
    if args.against is not None:
        from vrfer.core.model import ExpressionModel

        ExpressionModel(args.against)  # vetted before the minutes of the stream benchmark, not after
    if args.split is not None or args.figure is not None:
        raise VrferError("--split and --figure go with --heldout")
    model = args.model if args.model is not None else default_model_path()
    if args.locate or args.refine:
        from vrfer.bench.face import locate_timings, refine_bench

        if args.locate:
            locate_timings(300)
        if args.refine:
            print(json.dumps(refine_bench(model, n=None if args.all else args.n, seed=args.seed), indent=1))
        return 0
    report: dict = {"machine": bench.machine()}
    live = sys.stderr.isatty()
    if args.e2e:
        def progress(done: int, total: int) -> None:
            if live and (done % 50 == 0 or done == total):
                print(f"\r  e2e {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        report["e2e"] = bench.e2e_accuracy(model, n=None if args.all else args.n, seed=args.seed,
                                           fallbacks=not args.mesh_only, max_yaw=args.max_yaw,
                                           locator=args.locator, progress=progress)
        # The held-out family (vrfer.evalframes) on the same number of Test faces: the headline.
        from vrfer.evalframes.bench import heldout_accuracy

        report["heldout"] = heldout_accuracy(model, split="test", n=None if args.all else args.heldout_n, seed=args.seed,
                                             causes=args.causes, locator=args.locator, progress=progress)
        from vrfer.bench.facefree import false_face_bench

        # In the same run as the faces, so the two latencies share the machine's load.
        report["face_free"] = false_face_bench(args.face_free, seed=args.seed, fallbacks=not args.mesh_only,
                                               max_yaw=args.max_yaw, locator=args.locator)
    if args.soak is not None:
        def soak_progress(elapsed: float, rec: dict) -> None:
            if live:
                print(f"\r  soak {elapsed:6.0f}/{args.soak:.0f} s, {rec['results']} results, longest stall "
                      f"{1e3 * rec['max_gap']:.1f} ms", end="", file=sys.stderr, flush=True)
        report["soak"] = bench.soak(model, args.soak, source=args.source, threads=args.threads, hold=args.hold,
                                    seed=args.seed, tracking=not args.static, progress=soak_progress)
        if live:
            print(file=sys.stderr)
    if not (args.e2e or args.soak is not None):
        report["stream"] = bench.bench_stream(model, frames=args.frames, threads=args.threads, hold=args.hold,
                                              tracking=not args.static, seed=args.seed, source=args.source)
        models = bench.shipped_models()
        if not any(Path(m).resolve() == Path(model).resolve() for m in models):
            models.append(Path(model))
        report["models"] = [bench.bench_model(m, threads=t, runs=args.model_runs)
                            for m in models for t in (1, 2)]
        if args.against is not None:
            report["against"] = bench.compare_models(model, args.against, threads=args.threads, runs=args.model_runs)
        report["preprocess"] = bench.bench_preprocess()
        report["peak_rss_mb"] = bench.peak_rss_mb()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(table(report)))
    return 0


def _heldout(args: argparse.Namespace) -> int:
    """``--heldout``: the held-out family's table (and cause table) on one split, or its figure."""
    from vrfer.core.model import default_model_path
    from vrfer.evalframes.bench import heldout_accuracy, table as heldout_table, write_figure

    if args.e2e or args.soak is not None:
        raise VrferError("--heldout runs alone: not with --e2e or --soak")
    split = args.split or "valid"
    if args.figure is not None:
        write_figure(args.figure, split=split, seed=args.seed)
        return 0

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and (done % 25 == 0 or done == total):
            print(f"\r  held-out {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    summary = heldout_accuracy(args.model or default_model_path(), split=split,
                               n=None if args.all else args.heldout_n, seed=args.seed, causes=args.causes,
                               locator=args.locator, progress=progress)
    print(json.dumps(summary, indent=1) if args.json else "\n".join(heldout_table(summary)))
    return 0


def table(report: dict) -> list[str]:
    """The report as aligned text lines."""
    m = report["machine"]
    out = [f"machine: {m['cpu']}, {m['cores']} cores, load {m['load_avg_1m']} (1 min)"]
    if "stream" in report:
        s = report["stream"]
        out += [f"stream: {s['source']}, model {s['model']}, {s['threads']} thread(s), "
                f"{'tracking' if s['tracking'] else 'static'}, each face held {s['hold']} frames",
                f"  {s['frames']} frames timed ({s['faces']} with a face) after {s['warmup']} warm-up",
                "  latency ms     p50      p99"]
        for stage, v in s["stages_ms"].items():
            name = "capture→result" if stage == "total" else stage
            out.append(f"  {name:<14} {v['p50']:7.3f}  {v['p99']:7.3f}")
        out += [f"  sustained: {s['fps']:.1f} frames/s flat out, {s['cpu_ms_per_frame']:.2f} ms CPU per frame, "
                f"{s['dropped']} dropped, {s['errors']} failed",
                "model only (batch 1)             threads   run p50   run p99  predict p50"]
        for r in report["models"]:
            predict = f"{r['predict_ms']['p50']:12.3f}" if r["predict_ms"] else f"{'-':>12}"
            out.append(f"  {r['name'][:30]:<30} {r['threads']:>7} {r['run_ms']['p50']:9.3f} "
                       f"{r['run_ms']['p99']:9.3f} {predict}")
        if "against" in report:
            c = report["against"]
            out.append(f"  against {Path(c['reference']).name}, interleaved ({c['runs']} calls each, load "
                       f"{c['load']:.1f}): predict p50 {c['predict_ms']['p50']:.3f} vs "
                       f"{c['reference_predict_ms']['p50']:.3f} ms, ratio p50 {c['ratio']['p50']:.2f}, "
                       f"p99 {c['ratio']['p99']:.2f}")
        pp = report["preprocess"]
        out.append(f"preprocess alone, 240 px face: v1 p50 {pp['v1']['p50']:.3f} ms, v2 p50 {pp['v2']['p50']:.3f} ms "
                   f"(v2/v1 {pp['ratio_p50_v2_v1']:.2f}, same run, interleaved)")
        out.append(f"peak resident memory: {report['peak_rss_mb']:.0f} MiB")
    if "e2e" in report:
        e = report["e2e"]
        a, g = e["accuracy"], e["gap"]
        out += [f"end-to-end: {e['frames']} camera-like frames from FER+ Test (seed {e['seed']}), model {e['model']}"
                + ("" if e.get("fallbacks", True) else ", face mesh only"),
                f"  face found in {e['found']}/{e['frames']} ({e['found_pct']:.1f}%)"
                + (f"; not found: {', '.join(f'{k} {v}' for k, v in e['not_found'].items())}"
                   if e["not_found"] else "")
                + f"; found by: {', '.join(f'{k} {v}' for k, v in e['found_by_path'].items())}",
                "  found by face size (px): " + ", ".join(f"{k} {v}" for k, v in e["found_by_face_size"].items()),
                "  accuracy %          all frames  found faces",
                f"  dataset crops         {a['crop_all']:7.2f}      {a['crop_found']:7.2f}",
                f"  placed (exact crop)   {a['placed_all']:7.2f}      {a['placed_found']:7.2f}",
                f"  pipeline (e2e)        {a['e2e_all']:7.2f}      {a['e2e_found']:7.2f}   (no face counts as wrong)",
                f"  gap: {g['all_frames']:.2f} points on all frames, {g['found_faces']:.2f} on found faces "
                f"({g['photometric']:.2f} light/noise/resampling + {g['alignment']:.2f} alignment)"]
        for path, b in e["by_path"].items():
            out.append(f"  found by {path}: {b['frames']} faces, crop {b['crop']:.2f}, placed {b['placed']:.2f}, "
                       f"pipeline {b['e2e']:.2f} %")
        out.append(f"  found faces by |yaw| (limit {e['max_yaw']:.0f}°): " + ", ".join(
            f"{k}° {b['frames']} faces, crop {b['crop']:.1f} / pipeline {b['e2e']:.1f} %"
            for k, b in e["found_by_yaw"].items()))
        if "face_free" in report:
            ff, lf = report["face_free"], e["locate_ms"]
            out += [f"face-free frames (core.facefree, benchmark side): false face in {ff['false_faces']}/"
                    f"{ff['frames']} ({ff['false_face_pct']:.1f}%)"
                    + (f"; by: {', '.join(f'{k} {v}' for k, v in ff['false_by_path'].items())}"
                       if ff["false_by_path"] else ""),
                    "  locate ms            p50      p99   false faces",
                    f"  face frames      {lf['p50']:7.2f}  {lf['p99']:7.2f}   (face found {e['found_pct']:.1f}%)",
                    f"  face-free frames {ff['locate_ms']['p50']:7.2f}  {ff['locate_ms']['p99']:7.2f}   "
                    f"{ff['false_face_pct']:.1f}%"]
            for kind, k in ff["by_kind"].items():
                out.append(f"    {kind:<15}{k['locate_ms']['p50']:7.2f}  {k['locate_ms']['p99']:7.2f}   "
                           f"{k['false_faces']}/{k['frames']}")
            out.append(f"  p99 face-free / face: {ff['locate_ms']['p99'] / max(lf['p99'], 1e-9):.2f} "
                       f"(same run; load {ff['load_avg_1m']} at the end)")
        if e["alignment_offset"]:
            o = e["alignment_offset"]
            out.append(f"  alignment vs placement (median): scale {o['scale']['median']:.3f}, "
                       f"angle {o['angle']['median']:.1f}°, dx {o['dx']['median']:.2f} px, "
                       f"dy {o['dy']['median']:.2f} px (48 px face)")
    if "heldout" in report:
        from vrfer.evalframes.bench import side_by_side, table as heldout_table

        e, a = report["e2e"], report["e2e"]["accuracy"]
        out += heldout_table(report["heldout"])
        out += side_by_side({"crop": a["crop_all"], "plain": a["e2e_all"], "found_plain": e["found_pct"]},
                            report["heldout"])
        out.append("  (training family headsets: vrfer headset bench)")
    if "soak" in report:
        k = report["soak"]
        r = k["rss_mb"]
        out += [f"soak: {k['seconds']:.0f} s on {k['source']}, model {k['model']}",
                f"  {k['results']} results ({k['fps']:.1f}/s, {k['faces']} with a face), "
                f"{k['dropped']} dropped, {k['errors']} failed, {k['cpu_ms_per_frame']:.2f} ms CPU per frame",
                f"  RSS MiB: {r['start']:.1f} after {r['warmup_s']:.0f} s warm-up, {r['end']:.1f} at the end "
                f"(growth {r['growth']:+.1f}), max {r['max']:.1f}",
                "  RSS curve (s: MiB): " + ", ".join(f"{t:.0f}: {r:.1f}" for t, r in r["curve"]),
                f"  longest stall between results: {k['longest_stall_ms']:.1f} ms "
                f"(at {k['longest_stall_at_s']:.0f} s); {k['stalls_over_50ms']} over 50 ms, "
                f"{k['stalls_over_100ms']} over 100 ms",
                f"  capture→result p50/p99 ms: first {k['window_s']:.0f} s {k['total_ms_first']['p50']:.2f}/"
                f"{k['total_ms_first']['p99']:.2f}, last {k['window_s']:.0f} s {k['total_ms_last']['p50']:.2f}/"
                f"{k['total_ms_last']['p99']:.2f}"]
        if k["last_error"]:
            out.append(f"  last error: {k['last_error']}")
    return out
