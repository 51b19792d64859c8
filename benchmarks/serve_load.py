"""A bounded load run of ``sam2-jax serve`` on loopback: N browser-like sessions at once against one server process.

The server is ``sam2-jax serve`` started as a user starts it (its own process, warmed up, random weights); this
process plays the users, a thread each (``sam2_jax.serve.client.load_run``): open the clip by path, click two objects
(each user its own points), track the whole clip, download the masks. First every user runs alone, one after the
other (the solo masks and the solo click latency), then all at once. Reported: requests/s and tracked frames/s over
the concurrent run, p50/p95 of a click's latency (solo and concurrent), the server's peak RSS (VmHWM), and whether
every session's masks equal its solo run's, byte for byte (nothing mixed between sessions, nothing lost).

    .venv/bin/python benchmarks/serve_load.py                       # 8 sessions, bedroom (4 frames), 256 px
    .venv/bin/python benchmarks/serve_load.py --sessions 4 --image-size 512

Not a comparison with the official demo (its back end needs a GPU and a front-end build); a fixed, small load to
show that sessions do not interfere and what a click costs while others track.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import cpu_summary, environment_summary  # noqa: E402
from sam2_jax.serve.client import load_run  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--allow-dir", default=os.path.join(REPO, "examples"))
    p.add_argument("--video", default="bedroom", help="path under --allow-dir (default %(default)s)")
    p.add_argument("--json", help="write the figures here")
    return p.parse_args(argv)


def clicks_of(i: int) -> list[dict]:
    """User ``i``'s clicks on the 480x270 bedroom frame: two objects, at points of its own."""
    x = 40.0 + 50 * (i % 8)
    return [
        {"frame": 0, "obj_id": 1, "points": [[x, 150.0, 1]]},
        {"frame": 0, "obj_id": 2, "points": [[480 - x, 60.0, 1]]},
    ]


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> dict:
    args = parse_args(argv)
    cmd = [sys.executable, "-m", "sam2_jax.cli", "serve", "--random-weights", "--model", args.model]
    cmd += ["--image-size", str(args.image_size), "--port", "0", "--allow-dir", args.allow_dir]
    cmd += ["--max-sessions", str(args.sessions + 1)]
    t0 = time.perf_counter()
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("sam2-jax serve: http://"):
            raise SystemExit(f"the server did not start: {line!r}")
        base = line.split()[2].rstrip("/")
        start_s = time.perf_counter() - t0
        solo = [load_run(base, 1, args.video, lambda _, i=i: clicks_of(i))["results"][0] for i in range(args.sessions)]
        rss_solo = peak_rss_mb(server.pid)
        run = load_run(base, args.sessions, args.video, clicks_of)
        rss = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(60)
    equal = [r["masks"] == solo[i]["masks"] for i, r in enumerate(run["results"])]
    solo_lat = sorted(x for r in solo for x in r["latencies"])
    figures = {
        "sessions": args.sessions,
        "video": args.video,
        "image_size": args.image_size,
        "server_start_and_warm_up_s": round(start_s, 1),
        "requests_per_s": round(run["requests_per_s"], 2),
        "frames_per_s": round(run["frames_per_s"], 2),
        "click_p50_s": round(run["click_p50_s"], 3),
        "click_p95_s": round(run["click_p95_s"], 3),
        "solo_click_p50_s": round(statistics.median(solo_lat), 3),
        "wall_s": round(run["wall_s"], 2),
        "server_peak_rss_mb_after_solo_runs": round(rss_solo),
        "server_peak_rss_mb": round(rss),
        "every_session_equals_its_solo_run": all(equal),
        "distinct_solo_results": len({tuple(sorted(r["masks"].items())) for r in solo}),
        "cpu": cpu_summary(),
        "date": time.strftime("%Y-%m-%d"),
        "environment": environment_summary(),
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    if not all(equal):
        raise SystemExit(f"sessions {[i for i, e in enumerate(equal) if not e]} got other masks than alone")
    return figures


if __name__ == "__main__":
    main()
