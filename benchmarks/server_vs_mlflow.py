"""`keel server` vs `mlflow server` vs FastTrackML side by side, driven by the same MLflow client.

Each server starts fresh (new SQLite file, new artifact directory, a free
loopback port) in its own process group and is polled until /health answers
(the start-up time). It is then left until its process tree is quiet (MLflow's
job runner keeps ~1 core busy for 20-35 s after /health is up), and the shared
tracking benchmark (`../shared/bench/tracking_bench.py`, which uses only the
MLflow client) runs against it. Servers alternate order between repeats so
machine drift hits all of them. Throughout, a sampler reads VmRSS from
/proc/<pid>/status for every process in the server's tree and keeps the peak
of the sum.

Prints, per workload, each server's throughput and p50 latency and the ratios
Keel / each other server (Keel/MLflow, Keel/FastTrackML), then start-up time,
idle and peak RSS; appends every JSON line (plus one "server" line per server
run) to benchmarks/results/<date>-server.jsonl. A workload a server cannot do
(FastTrackML has no mlflow-artifacts proxy, so W7 is skipped by the driver) or
that fails shows as "n/a" with the reason under the table; the run goes on.

    UV_PROJECT_ENVIRONMENT=.venv-bench uv run --group bench python benchmarks/server_vs_mlflow.py \
        --servers keel,mlflow,fasttrackml --only W1,W3,W4,W4b,W5,W2raw,W5raw,W6raw,W7 --repeats 2

    # a quick smoke pass (a few minutes; the first start of each Python server is an
    # untimed bytecode warm-up, see --pycache):
    .venv-bench/bin/python benchmarks/server_vs_mlflow.py --scale tiny --only W1,W2raw,W5raw

Servers: `keel` (`keel server`, 1 worker), `mlflow` (`mlflow server --workers 1`)
and `fasttrackml` (`fml server`, the FastTrackML binary in the bench venv, or
--fml PATH). The MLflow server runs with `--workers 1` (as Keel does):
uvicorn's multi-worker mode leaves TCP_NODELAY off and adds ~40 ms per
keep-alive request (../shared/research/tracking-bench.md), which would flatter
Keel. `W5raw` in --only implies W5 (the driver logs the 10k-step metric in W5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_BENCH = ROOT.parent / "shared" / "bench" / "tracking_bench.py"
KNOWN = ("keel", "mlflow", "fasttrackml")
ALIASES = {"fml": "fasttrackml", "ftml": "fasttrackml", "mlflow-w1": "mlflow"}
TITLES = {"keel": "Keel", "mlflow": "MLflow", "fasttrackml": "FastTrackML"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- starting servers
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> Path:
    """An executable from the running venv, else Keel's dev venv, else PATH."""
    for candidate in (Path(sys.executable).parent / name, ROOT / ".venv" / "bin" / name):
        if candidate.exists():
            return candidate
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"no {name!r} executable in {Path(sys.executable).parent} or PATH")
    return Path(found)


def _command(
    name: str, work: Path, port: int, fml: Path | None, keel_workers: int = 1
) -> list[str]:
    db = work / f"{name}.db"
    artifacts = work / "artifacts"
    if name == "keel":
        keel = ROOT / ".venv" / "bin" / "keel"  # the dev venv has the code under test
        return [
            str(keel if keel.exists() else _bin("keel")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(keel_workers),
        ]
    if name == "mlflow":
        return [
            str(_bin("mlflow")),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(artifacts),
        ]
    # FastTrackML takes sqlite://<path>; with an absolute path that reads sqlite:///abs/path.
    # It has no artifact proxy: runs get file:// locations under --default-artifact-root.
    return [
        str(fml or _bin("fml")),
        "server",
        "--listen-address",
        f"127.0.0.1:{port}",
        "--database-uri",
        f"sqlite://{db}",
        "--default-artifact-root",
        str(artifacts),
    ]


def _version(name: str, cmd0: str) -> str:
    try:
        out = subprocess.run(
            [cmd0, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.split()[-1] if out else "?"


def _server_env(pycache: Path | None) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    if pycache is not None:
        # Byte-compiled modules in a cache of our own, as an installed server would
        # have them: with PYTHONDONTWRITEBYTECODE and no __pycache__ in the venvs,
        # every start compiles every imported module (seconds for keel and mlflow).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _start(
    cmd: list[str], work: Path, name: str, pycache: Path | None = None
) -> subprocess.Popen[bytes]:
    log = (work / f"{name}.log").open("wb")
    env = _server_env(pycache)
    return subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, env=env, cwd=work)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer /health within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# ---------------------------------------------------------------- /proc sampling
def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc/<pid>/task/<tid>/children."""
    pids, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        pids.append(pid)
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                frontier.extend(int(c) for c in (task / "children").read_text().split())
            except (OSError, ValueError):
                continue
    return pids


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0  # gone, or a zombie / kernel thread without VmRSS


def _cpu_s(pid: int) -> float:
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return 0.0


def tree_cpu(root: int) -> float:
    return sum(_cpu_s(p) for p in _tree(root))


@dataclass
class RssSampler:
    """Samples the VmRSS sum of a process tree in a thread; keeps the peak."""

    root: int
    interval: float = 0.25
    peak_kib: int = 0
    peak_processes: int = 0
    last_kib: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> int:
        pids = _tree(self.root)
        total = sum(_rss_kib(p) for p in pids)
        self.samples += 1
        self.last_kib = total
        if total > self.peak_kib:
            self.peak_kib, self.peak_processes = total, len(pids)
        return total

    def __enter__(self) -> RssSampler:
        def loop() -> None:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True, name="rss-sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


def _wait_quiet(root: int, max_s: float, threshold: float = 0.10, window: float = 2.0) -> float:
    """Seconds until the tree uses < ``threshold`` of a core over ``window`` s (<= ``max_s``)."""
    started = time.monotonic()
    before = tree_cpu(root)
    while time.monotonic() - started < max_s:
        time.sleep(window)
        now = tree_cpu(root)
        if (now - before) / window < threshold:
            break
        before = now
    return time.monotonic() - started


def _warm_bytecode(name: str, args: argparse.Namespace) -> None:
    """Start a Python server once, untimed, so its modules land in the bytecode cache."""
    if name == "fasttrackml" or args.pycache is None:
        return
    work = Path(tempfile.mkdtemp(prefix=f"keel-server-bench-warm-{name}-"))
    port = _free_port()
    proc = _start(_command(name, work, port, args.fml, args.keel_workers), work, name, args.pycache)
    try:
        took = _wait_healthy(f"http://127.0.0.1:{port}", proc)
        settle = _wait_quiet(proc.pid, args.settle_max) if args.settle_max > 0 else 0.0
        print(
            f"[{name}] bytecode warm-up start: healthy after {took:.1f}s (+{settle:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
    except Exception as exc:  # the timed start reports the real failure
        print(f"[{name}] warm-up start failed: {exc!r}", file=sys.stderr, flush=True)
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- one server run
def _normalise_only(only: str) -> str:
    names = [w.strip() for w in only.split(",") if w.strip()]
    if "W5raw" in names and "W5" not in names:
        names.append("W5")  # the driver runs W5raw right after W5, on W5's run
    return ",".join(names)


def _run_one(
    name: str, args: argparse.Namespace, repeat: int, only: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix=f"keel-server-bench-{name}-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = _command(name, work, port, args.fml, args.keel_workers)
    info: dict[str, Any] = {
        "workload": "server",
        "server": name,
        "repeat": repeat,
        "version": _version(name, cmd[0]),
        "command": " ".join(cmd),
        "scale": args.scale,
        "only": only,
        "bytecode": "cached" if args.pycache is not None else "as the environment has it",
    }
    records: list[dict[str, Any]] = []
    proc = _start(cmd, work, name, args.pycache)
    sampler = RssSampler(proc.pid, interval=args.rss_interval)
    try:
        with sampler:
            startup = _wait_healthy(url, proc)
            info["startup_s"] = round(startup, 2)
            info["rss_healthy_mib"] = round(sampler.sample() / 1024, 1)
            settle = _wait_quiet(proc.pid, args.settle_max) if args.settle_max > 0 else 0.0
            info["settle_s"] = round(settle, 1)
            info["rss_idle_mib"] = round(sampler.sample() / 1024, 1)
            print(
                f"[{name}] healthy after {startup:.2f}s, quiet {settle:.0f}s later "
                f"(RSS {info['rss_idle_mib']:.0f} MiB); running {only}",
                file=sys.stderr,
                flush=True,
            )
            records = _drive(name, args, repeat, only, url, proc.pid, work)
            info["rss_end_mib"] = round(sampler.sample() / 1024, 1)
            info["server_cpu_total_s"] = round(tree_cpu(proc.pid), 2)
    except Exception as exc:  # the other servers still run
        info["error"] = repr(exc)[:500]
        print(f"[{name}] FAILED: {exc!r}", file=sys.stderr, flush=True)
        log = work / f"{name}.log"
        if log.exists():
            print(log.read_text(errors="replace")[-2000:], file=sys.stderr)
    finally:
        _stop(proc)
        info["peak_rss_mib"] = round(sampler.peak_kib / 1024, 1)
        info["peak_rss_processes"] = sampler.peak_processes
        info["rss_samples"] = sampler.samples
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            info["work_dir"] = str(work)
    for record in records:
        record.setdefault("server", name)
        record["startup_s"] = info.get("startup_s")
    return records, info


def _drive(
    name: str, args: argparse.Namespace, repeat: int, only: str, url: str, pid: int, work: Path
) -> list[dict[str, Any]]:
    cmd = [
        sys.executable,
        str(args.bench),
        "--uri",
        url,
        "--scale",
        args.scale,
        "--label",
        name,
        "--server-pid",
        str(pid),
        "--db-path",
        str(work / f"{name}.db"),
        "--only",
        only,
        "--tag",
        f"repeat={repeat}",
    ]
    records: list[dict[str, Any]] = []
    err_path = work / "driver.stderr"
    with err_path.open("w") as err:
        driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        assert driver.stdout is not None
        deadline = time.monotonic() + 3600
        for raw in driver.stdout:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            records.append(record)
            if record.get("workload") not in ("meta", "resources"):
                print(f"[{name}] {_progress(record)}", file=sys.stderr, flush=True)
            if time.monotonic() > deadline:
                driver.kill()
                break
        rc = driver.wait(timeout=60)
    if rc != 0:
        tail = err_path.read_text(errors="replace")[-1500:]
        records.append(
            {"workload": "driver", "status": "failed", "error": f"exit {rc}: {tail[-400:]}"}
        )
        print(f"[{name}] driver exited {rc}:\n{tail}", file=sys.stderr, flush=True)
    return records


# Workloads whose ops/s would mislead, and what to compare instead. W4b counts
# pages: FastTrackML ends every listing with an extra, empty page, so it does
# more (cheaper) calls for the same 200 runs; runs listed per second and the
# time of one full listing compare the servers on equal work.
RATE = {"W4b": ("runs_per_s", "full_listing_p50_ms", "runs listed per second; p50 of a listing")}


def _rate(r: dict[str, Any]) -> tuple[float, float]:
    rate_key, p50_key, _ = RATE.get(r["workload"], ("ops_per_s", "p50_ms", ""))
    return float(r[rate_key]), float(r[p50_key])


def _progress(r: dict[str, Any]) -> str:
    if r.get("status") == "ok":
        extra = f", {r['errors']} errors" if r.get("errors") else ""
        rate, p50 = _rate(r)
        return f"{r['workload']}: {rate} /s, p50 {p50} ms{extra}"
    return f"{r['workload']}: {r.get('status')} ({r.get('reason') or r.get('error')})"


# ---------------------------------------------------------------- main and report
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH)
    parser.add_argument(
        "--only",
        default="W1,W3,W4,W4b,W5,W2raw,W5raw,W6raw,W7",
        help="driver workloads: W1 W2 W3 W4 W4b W5 (+W5raw) W2raw W6 W6raw W7",
    )
    parser.add_argument("--scale", default="small", help="tiny, small or medium (driver scales)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--servers",
        default="keel,mlflow,fasttrackml",
        help="comma list of keel, mlflow, fasttrackml (alias fml); ratios are the first "
        "server over each other one",
    )
    parser.add_argument("--fml", type=Path, default=None, help="FastTrackML's fml binary")
    parser.add_argument(
        "--keel-workers",
        type=int,
        default=1,
        help="keel server --workers (one per core lets Keel use the cores FastTrackML uses)",
    )
    parser.add_argument(
        "--settle-max",
        type=float,
        default=60.0,
        help="after /health, wait up to this many seconds for the server's processes to go "
        "quiet (< 10%% of a core); 0 skips",
    )
    parser.add_argument("--rss-interval", type=float, default=0.25, help="RSS sampling period (s)")
    parser.add_argument(
        "--pycache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "keel-server-bench-pycache",
        help="PYTHONPYCACHEPREFIX for the Python servers, warmed by one untimed start of "
        "each, so start-up is measured with byte-compiled modules as after a pip install",
    )
    parser.add_argument(
        "--cold-bytecode",
        action="store_true",
        help="no bytecode cache: servers run with the environment as it is (with "
        "PYTHONDONTWRITEBYTECODE=1 and no __pycache__ every start compiles from source)",
    )
    parser.add_argument("--keep", action="store_true", help="keep each server's work directory")
    parser.add_argument("--no-save", action="store_true", help="do not append to results/")
    args = parser.parse_args()
    if not args.bench.is_file():
        print(f"No benchmark driver at {args.bench}; pass --bench PATH.", file=sys.stderr)
        return 2
    servers = [ALIASES.get(s.strip(), s.strip()) for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in KNOWN]
    if unknown:
        print(f"Unknown server(s) {unknown}; known: {', '.join(KNOWN)}.", file=sys.stderr)
        return 2
    only = _normalise_only(args.only)
    if args.cold_bytecode:
        args.pycache = None
    for name in servers:
        _warm_bytecode(name, args)
    lines: list[dict[str, Any]] = []
    infos: list[dict[str, Any]] = []
    for repeat in range(1, args.repeats + 1):
        order = servers if repeat % 2 else list(reversed(servers))
        for name in order:
            records, info = _run_one(name, args, repeat, only)
            lines.extend(records)
            infos.append(info)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        with (RESULTS / f"{date.today().isoformat()}-server.jsonl").open("a") as fh:
            for record in [*infos, *lines]:
                fh.write(json.dumps(record) + "\n")
    _report(lines, infos, servers)
    return 0


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _report(lines: list[dict[str, Any]], infos: list[dict[str, Any]], servers: list[str]) -> None:
    ok: dict[tuple[str, str], list[dict[str, Any]]] = {}
    other: dict[tuple[str, str], dict[str, Any]] = {}
    order: list[str] = []
    for r in lines:
        w = r.get("workload")
        if w in (None, "meta", "resources"):
            continue
        if w not in order:
            order.append(w)
        if r.get("status") == "ok" and r.get("ops_per_s") is not None:
            ok.setdefault((w, r["server"]), []).append(r)
        else:
            other.setdefault((w, r["server"]), r)
    base, rest = servers[0], servers[1:]
    notes: list[str] = []
    head = f"{'workload':12s}" + "".join(
        f"{TITLES[s] + ' ops/s':>18s}{'p50 ms':>10s}" for s in servers
    )
    head += "".join(f"{TITLES[base] + '/' + TITLES[s]:>22s}" for s in rest)
    print()
    print(head)
    for w in order:
        rates: dict[str, float] = {}
        row = f"{w:12s}"
        for s in servers:
            runs = ok.get((w, s), [])
            if runs:
                rate = _median([_rate(r)[0] for r in runs])
                p50 = _median([_rate(r)[1] for r in runs])
                errs = sum(r.get("errors") or 0 for r in runs)
                rates[s] = rate
                row += f"{rate:18.1f}{p50:10.2f}"
                if errs:
                    notes.append(f"{w} on {s}: {errs} failed calls")
            else:
                bad = other.get((w, s))
                reason = (bad or {}).get("reason") or (bad or {}).get("error") or "not run"
                row += f"{'n/a':>18s}{'':10s}"
                notes.append(f"{w} on {s}: n/a, {(bad or {}).get('status', 'missing')}: {reason}")
        for s in rest:
            if base in rates and s in rates and rates[s] > 0:
                row += f"{rates[base] / rates[s]:21.2f}x"
            else:
                row += f"{'n/a':>22s}"
        print(row)
    print()
    print(
        f"{'server':12s}{'version':>10s}{'healthy s':>11s}{'settle s':>10s}"
        f"{'idle RSS MiB':>14s}{'peak RSS MiB':>14s}{'procs':>7s}{'CPU s':>8s}"
    )
    for s in servers:
        mine = [i for i in infos if i["server"] == s]
        version = mine[0].get("version", "?") if mine else "?"

        def med(key: str, rows: list[dict[str, Any]] = mine) -> float:
            return _median([i[key] for i in rows if i.get(key) is not None])

        peak = max((i.get("peak_rss_mib") or 0 for i in mine), default=math.nan)
        procs = max((i.get("peak_rss_processes") or 0 for i in mine), default=0)
        print(
            f"{s:12s}{version:>10s}{med('startup_s'):11.2f}{med('settle_s'):10.1f}"
            f"{med('rss_idle_mib'):14.1f}{peak:14.1f}{procs:7d}{med('server_cpu_total_s'):8.1f}"
        )
        notes.extend(f"{s}: {i['error']}" for i in mine if i.get("error"))
    print(
        "(peak RSS: max over the run of the VmRSS sum of the server's process tree; "
        "shared pages count once per process)"
    )
    for w, (_, _, unit) in RATE.items():
        if w in order:
            notes.append(f"{w}: {unit} (equal work on every server)")
    if notes:
        print()
        for note in dict.fromkeys(notes):
            print(f"  - {note}")


if __name__ == "__main__":
    raise SystemExit(main())
