#!/usr/bin/env python3
"""The GPU check: one command that measures pgolf on one GPU and writes every figure to one JSON file.

Run it through `bench/gpu_check.sh` (a thin wrapper that picks the Python and puts src/ on the path):

  bench/gpu_check.sh                                   # one GPU, about 8 minutes -> runs/gpu_check/
  bench/gpu_check.sh --out runs/gpu_check/h100 --only train,reference
  bench/gpu_check.sh --dry-run --out /tmp/gc           # the same path on CPU at tiny shapes (~1.5 min)

Sections, each guarded (a failure is recorded as "error" in the JSON and the next section runs; the
exit status is 1 when any section of this invocation failed):

  data           `pgolf data build` from ../shared/data (webtext sample + the official sp1024 tokenizer),
                 or the embedded corpus when ../shared is absent.
  train          `pgolf train` of the `baseline` preset and a record-like preset (default
                 `int5-qat-ttt`) at seq 1024 and 2048, 524,288 tokens a step in 8 micro-steps, bf16
                 autocast, torch.compile, a few warm-up (compile) steps and a few timed steps: ms/step,
                 tokens/s, peak memory (torch.cuda.max_memory_allocated) and MFU.
  reference      the challenge baseline's own train_gpt.py (../shared/reference/baseline, run in place
                 with its environment variables) at the same shapes: its step times from its log.
  eval           `pgolf quantize` + `pgolf pack` of the baseline at seq 1024, then the ttt-eval stage in
                 plain, sliding and TTT mode (bench/eval_throughput.py --pack): tokens/s and the
                 projected full-validation time on 8 GPUs.
  run            a short end-to-end `pgolf run` (data, train, quantize, pack, ttt-eval, verify, report)
                 from a pipeline TOML written at run time: 30 s of training, about a minute in all.
  parallel_muon  `torchrun --nproc_per_node=2 -m pgolf train ... --set optimizer=parallel_muon` (gloo on
                 CPU, unless there are 2 GPUs), against one process with the default optimizer.

Time: a global budget (--budget-s, 470 s on a GPU) and a cap per command; a command still running
when either runs out is stopped and its section is an error, as is every section the budget no
longer reaches. Rerun what was cut with --only (the JSON keeps the other sections' figures).

Formulas (also in the JSON, "formulas"):
  flops_per_token = 6 * params + 12 * layers * seq_len * model_dim
  mfu = flops_per_token * tokens_per_s / dense bf16 peak of the GPU (H100 SXM / H200 989 TFLOP/s, A100 312)
  projected_8gpu_full_val_s = 62,021,632 / (8 * tokens_per_s)

This is a benchmark, not a test; results go to docs/benchmarks.md ("GPU check").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PGOLF_SHARED", REPO.parent / "shared"))  # the reference records
SHARED_DATA = Path(os.environ.get("PGOLF_SHARED_DATA", SHARED / "data"))  # corpus and tokenizer, as the tests
FULL_VAL_TARGETS = 62_021_632  # scored targets of the sp1024 validation set, every record log since PR #65
SECTIONS = ("data", "train", "reference", "eval", "run", "parallel_muon")  # in this order, most wanted first
WORKER = "_train_worker"  # argv[1] of the process that runs `pgolf train` and records its peak memory
UNKNOWN_OPTIMIZER = "unknown config key 'optimizer'"
FORMULAS = {
    "flops_per_token": "6 * params + 12 * layers * seq_len * model_dim (params: every trainable parameter as "
                       "the train manifest counts it, the tied embedding once, as the output head; layers: the "
                       "blocks run per forward, recurrence included)",
    "mfu": "flops_per_token * tokens_per_s / peak_bf16_flops (dense bf16 of the GPU: H100 SXM 989.4e12, H200 "
           "989.4e12, H100 PCIe 756e12, A100 312e12); tokens_per_s over the timed steps after the first",
    "ms_per_step": "(elapsed_ms at the last timed step - elapsed_ms at the first) / (steps between them): the "
                   "first step after the warm-up, and the compile in the warm-up, are left out",
    "projected_8gpu_full_val_s": f"{FULL_VAL_TARGETS:,} / (8 * tokens_per_s): the sp1024 validation targets "
                                 "split evenly over 8 GPUs of this kind, scoring + adaptation only (model load, "
                                 "data check and compile warm-up excluded: load_s, data_s are given per mode)",
}

# --dry-run shapes: the tiny preset's sizes (4 layers x 96 for the baseline architecture; 64 wide with
# 16-dim heads for a record preset, whose layer-indexed switches need its layer count).
TINY_BASELINE = ["num_layers=4", "model_dim=96", "num_heads=4", "num_kv_heads=2"]
TINY_RECORD = ["model_dim=64", "num_heads=4", "num_kv_heads=2", "mlp_hidden=128", "bigram_buckets=256",
               "bigram_dim=32", "value_embed_dim=32"]


class SectionError(Exception):
    """A section cannot go on; the message is the JSON's "error"."""


@dataclass(frozen=True)
class Plan:
    """What one invocation runs: the challenge's shapes on a GPU, tiny ones for --dry-run."""

    dry: bool
    device: str
    seqs: tuple[int, ...]
    batch_tokens: int
    accum: int
    warmup: int
    steps: int
    compile: bool
    dtype: str
    val_docs: int
    run_train_s: float
    budget_s: float
    record: str

    @classmethod
    def make(cls, args) -> Plan:
        if args.dry_run:
            return cls(dry=True, device="cpu", seqs=(64, 128), batch_tokens=1024, accum=8,
                       warmup=args.warmup if args.warmup is not None else 1,
                       steps=args.steps if args.steps is not None else 4, compile=False, dtype="auto",
                       val_docs=args.val_docs or 20, run_train_s=args.run_train_seconds or 6.0,
                       budget_s=args.budget_s or 300.0, record=args.record_preset)
        return cls(dry=False, device="cuda", seqs=(1024, 2048), batch_tokens=524_288, accum=8,
                   warmup=args.warmup if args.warmup is not None else 2,
                   steps=args.steps if args.steps is not None else 6, compile=True, dtype="bf16",
                   val_docs=args.val_docs or 300, run_train_s=args.run_train_seconds or 30.0,
                   budget_s=args.budget_s or 470.0, record=args.record_preset)

    @property
    def micro_tokens(self) -> int:
        return self.batch_tokens // self.accum

    @property
    def val_batch_tokens(self) -> int:
        return max(self.micro_tokens, 4096)


# ----------------------------------------------------------------------------- processes


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    src = str(REPO / "src")
    if src not in env.get("PYTHONPATH", "").split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the command's process group (torchrun forwards it to its workers), SIGKILL after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(t.strip() for t in text[-lines:])


class Runner:
    """Runs commands with a log per command and a timeout within the check's budget."""

    def __init__(self, logs: Path, deadline: float):
        self.logs, self.deadline = logs, deadline

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def __call__(self, name: str, cmd: list[Any], cap_s: float, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> tuple[int, str, Path]:
        """Run `cmd`; returns (exit code, stdout, stderr log). Raises SectionError on a timeout."""
        timeout = min(cap_s, self.remaining())
        if timeout < 5:
            raise SectionError(f"not run: the check's time budget is spent ({name})")
        self.logs.mkdir(parents=True, exist_ok=True)
        log, out = self.logs / f"{name}.log", self.logs / f"{name}.stdout"
        cmd = [str(c) for c in cmd]
        with open(log, "w") as err_f, open(out, "w") as out_f:
            err_f.write(f"$ {shlex.join(cmd)}\n")
            err_f.flush()
            proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, cwd=cwd, env=env or _env(),
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(proc)
                raise SectionError(f"{name}: stopped after {timeout:.0f} s (the check's time limit); "
                                   f"last lines: {_tail(log)}") from None
        return rc, out.read_text(errors="replace"), log

    def ok(self, name: str, cmd: list[Any], cap_s: float, **kw) -> str:
        """Run `cmd` and return its stdout; a non-zero exit is a SectionError with the log's last lines."""
        rc, stdout, log = self(name, cmd, cap_s, **kw)
        if rc != 0:
            raise SectionError(f"{name}: exit {rc}: {_tail(log)} (log: {log})")
        return stdout


def _json_doc(stdout: str) -> dict[str, Any]:
    """The JSON document a `--json` command printed (the last one, should anything precede it)."""
    start = stdout.find("{")
    if start < 0:
        raise SectionError(f"no JSON on stdout: {stdout[-300:]!r}")
    return json.loads(stdout[start:])


# ----------------------------------------------------------------------------- reading artifacts


def _manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text())


def _events(directory: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    for line in (directory / "metrics.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == kind:
            out.append(event)
    return out


def _steady_ms(points: list[tuple[int, float]]) -> float | None:
    """ms per step between the first and the last timed step ((step, elapsed_ms) pairs)."""
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def _layers(model: dict[str, Any]) -> int:
    """Blocks run per forward: the layers plus the repeats of depth recurrence."""
    recur = model.get("recur_layers") or []
    return int(model["num_layers"]) + len(recur) * int(model.get("recur_loops") or 1)


def flops_per_token(params: int, layers: int, seq_len: int, model_dim: int) -> int:
    return 6 * params + 12 * layers * seq_len * model_dim


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


# ----------------------------------------------------------------------------- the check


class Check:
    def __init__(self, args, plan: Plan):
        self.args, self.plan = args, plan
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.file = self.out / "gpu_check.json"
        self.started = time.monotonic()
        self.run = Runner(self.out / "logs", self.started + plan.budget_s)
        self.py = sys.executable
        self.data = self.out / "data"
        self.official = None  # (corpus, tokenizer) when ../shared/data is there
        corpus = SHARED_DATA / "corpus" / "webtext_sample.jsonl.zst"
        tokenizer = SHARED_DATA / "tokenizers" / "fineweb_1024_bpe.model"
        if corpus.is_file() and tokenizer.is_file():
            self.official = (corpus.resolve(), tokenizer.resolve())
        self.reference = SHARED / "reference" / "baseline" / "train_gpt.py"
        self.env = self._environment()
        self.peak = self.env.get("peak_bf16_flops")
        previous = {}
        if args.only and self.file.is_file():  # a rerun of some sections keeps the others' figures
            try:
                previous = json.loads(self.file.read_text()).get("sections", {})
            except (OSError, ValueError):
                previous = {}
        self.doc: dict[str, Any] = {
            "format": "pgolf.gpu_check", "version": 1,
            "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": shlex.join(["bench/gpu_check.sh", *sys.argv[1:]]), "argv": sys.argv,
            "python_executable": sys.executable, "cwd": str(Path.cwd()), "dry_run": plan.dry,
            "env": self.env, "plan": {k: getattr(plan, k) for k in plan.__dataclass_fields__},
            "formulas": FORMULAS, "sections": previous, "sections_run": [], "failed": [],
        }

    # ------------------------------------------------------------------------- bookkeeping

    def _environment(self) -> dict[str, Any]:
        import torch

        env: dict[str, Any] = {
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "cuda_available": torch.cuda.is_available(),
            "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        }
        if self.plan.device == "cuda":
            if not torch.cuda.is_available():
                raise SystemExit("gpu_check: no CUDA GPU on this machine; `bench/gpu_check.sh --dry-run` runs the "
                                 "same path on CPU at tiny shapes")
            from pgolf.runtime import device as devmod

            props = torch.cuda.get_device_properties(0)
            env.update(device=f"cuda:0 ({props.name})", gpu=props.name,
                       gpu_memory_gib=round(props.total_memory / 2**30, 1),
                       peak_bf16_flops=devmod.peak_bf16_flops(torch.device("cuda", 0)))
            if env["peak_bf16_flops"] is None:
                env["peak_note"] = "no dense bf16 peak known for this GPU: MFU is null"
        else:
            env.update(device=f"cpu ({platform.processor() or platform.machine()})", gpu=None,
                       peak_bf16_flops=None, peak_note="CPU: no MFU")
        try:
            import pgolf

            env["pgolf"] = pgolf.__version__
        except (ImportError, AttributeError):
            env["pgolf"] = None
        try:
            commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10)
            status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "bench"],
                                    capture_output=True, text=True, timeout=10)
            env["git_commit"] = commit.stdout.strip() or None
            env["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            env["git_commit"] = env["git_dirty"] = None
        return env

    def write(self) -> None:
        self.doc["wall_s"] = round(time.monotonic() - self.started, 1)
        tmp = self.file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2) + "\n")
        tmp.replace(self.file)

    def say(self, text: str) -> None:
        print(f"gpu_check: {text}", file=sys.stderr, flush=True)

    def section(self, name: str, fn) -> None:
        t0 = time.monotonic()
        self.say(f"{name}: running ({self.run.remaining():.0f} s of the budget left)")
        try:
            body = fn()
            status = body.pop("status", "error" if body.get("error") else "ok")
        except SectionError as e:
            body, status = {"error": str(e)}, "error"
        except Exception as e:  # one section's bug must not stop the others
            body, status = {"error": f"{type(e).__name__}: {e}"}, "error"
        body = {"status": status, **body, "seconds": round(time.monotonic() - t0, 1)}
        self.doc["sections"][name] = body
        self.doc["sections_run"].append(name)
        if status == "error":
            self.doc["failed"].append(name)
        line = f"{name}: {status} in {body['seconds']} s"
        if status != "ok":
            line += f": {body.get('error') or body.get('reason') or body.get('note')}"
        self.say(line)
        self.write()

    # ------------------------------------------------------------------------- data

    def section_data(self) -> dict[str, Any]:
        return self.build_data()

    def build_data(self) -> dict[str, Any]:
        cmd = [self.py, "-m", "pgolf", "data", "build", "--out", self.data, "--force", "--json"]
        if self.official is not None:
            corpus, tokenizer = self.official
            cmd += ["--corpus", corpus, "--tokenizer", tokenizer, "--val-docs", self.plan.val_docs]
            source = {"corpus": str(corpus), "tokenizer": str(tokenizer), "official_tokenizer": True}
        else:
            cmd += ["--val-docs", min(self.plan.val_docs, 10 if self.plan.dry else 50)]
            source = {"corpus": "embedded", "tokenizer": "embedded (trained on the embedded corpus)",
                      "official_tokenizer": False,
                      "note": f"{SHARED_DATA} absent: the embedded corpus with its own tokenizer"}
        doc = _json_doc(self.run.ok("data", cmd, 300))
        return {**source, "dir": str(self.data), **{k: doc.get(k) for k in (
            "train_tokens", "val_tokens", "train_docs", "val_docs", "val_bytes", "vocab_size")}}

    def ensure_data(self) -> None:
        if not (self.data / "manifest.json").is_file():
            info = self.build_data()
            self.doc["sections"].setdefault("data", {"status": "ok", **info})

    # ------------------------------------------------------------------------- train

    def train_sets(self, preset: str, seq: int) -> list[str]:
        p = self.plan
        sets = [f"seq_len={seq}", f"batch_tokens={p.batch_tokens}", f"grad_accum_base={p.accum}",
                f"iterations={p.steps}", f"warmup_steps={p.warmup}", "max_seconds=0", "val_every=0",
                "log_every=1", "checkpoint_every_s=0", f"val_batch_tokens={p.val_batch_tokens}",
                f"device={p.device}", f"compile={'true' if p.compile else 'false'}", f"dtype={p.dtype}"]
        if preset != "baseline":
            # Late QAT runs in the last few % of a real run only; off, the warm-up compiles one graph,
            # not two (the timed steps never reach it either way).
            sets.append("qat_start_frac=-1")
        if p.dry:
            sets += TINY_BASELINE if preset == "baseline" else TINY_RECORD
        return sets

    def train_one(self, preset: str, seq: int) -> dict[str, Any]:
        name = f"{preset}-seq{seq}"
        out = self.out / "train" / name
        peak_file = self.out / "logs" / f"train-{name}.peak.json"
        peak_file.unlink(missing_ok=True)
        sets = self.train_sets(preset, seq)
        cmd = [self.py, Path(__file__).resolve(), WORKER, peak_file, "--", "train", "--preset", preset,
               "--data", self.data, "--out", out, "--force", "--json"]
        for s in sets:
            cmd += ["--set", s]
        self.run.ok(f"train-{name}", cmd, 180 if not self.plan.dry else 120)
        man = _manifest(out)
        m, model = man["metrics"], man["config"]["model"]
        points = [(e["step"], e["elapsed_ms"]) for e in _events(out, "step")]
        ms = _steady_ms(points)
        batch = man["config"]["batch_tokens"]
        tok_s = batch / (ms / 1000) if ms else None
        flops = flops_per_token(m["params"], _layers(model), seq, model["model_dim"])
        peak = json.loads(peak_file.read_text()) if peak_file.is_file() else {}
        row = {
            "preset": preset, "seq_len": seq, "batch_tokens": batch, "grad_accum": m["grad_accum"],
            "micro_batch_tokens": batch // m["grad_accum"], "warmup_steps": man["config"]["warmup_steps"],
            "timed_steps": m["steps"], "compile": man["config"]["compile"], "dtype": man["config"]["dtype"],
            "device": m["device"], "params": m["params"], "ms_per_step": _r(ms),
            "tokens_per_s": _r(tok_s, 0), "first_step_ms": _r(points[0][1] if points else None),
            "ms_per_step_all": _r(1000 * m["train_time_s"] / m["steps"]), "tokens_per_s_all": _r(m["tokens_per_s"], 0),
            "peak_mem_gib": _r(peak["max_memory_allocated"] / 2**30) if peak.get("max_memory_allocated") else None,
            "peak_reserved_gib": (_r(peak["max_memory_reserved"] / 2**30)
                                  if peak.get("max_memory_reserved") else None),
            "flops_per_token": flops, "mfu": _r(flops * tok_s / self.peak, 4) if (self.peak and tok_s) else None,
            "warmup_s": _r(man["timing"].get("warmup_s")), "wall_s": _r(man["timing"].get("wall_s")),
            "final_train_loss": m["final_train_loss"], "val_bpb": m["val_bpb"],
            # e.g. "torch.compile failed on this machine ...; training eagerly": the timings are then eager ones
            "warnings": [e.get("message") for e in _events(out, "warning")], "sets": sets, "out": str(out),
        }
        mem = f", peak {row['peak_mem_gib']} GiB" if row["peak_mem_gib"] is not None else ""
        mfu = f", MFU {row['mfu']:.3f}" if row["mfu"] is not None else ""
        rate = f"{row['tokens_per_s']:,.0f}" if row["tokens_per_s"] is not None else "?"
        self.say(f"train {name}: {row['ms_per_step']} ms/step, {rate} tok/s{mfu}{mem} "
                 f"(compile warm-up {row['warmup_s']} s){' WARNING: ' + row['warnings'][0] if row['warnings'] else ''}")
        return row

    def section_train(self) -> dict[str, Any]:
        self.ensure_data()
        rows, errors = [], []
        for preset in ("baseline", self.plan.record):
            for seq in self.plan.seqs:
                try:
                    rows.append(self.train_one(preset, seq))
                except Exception as e:  # the other shapes still run
                    msg = str(e) if isinstance(e, SectionError) else f"{type(e).__name__}: {e}"
                    rows.append({"preset": preset, "seq_len": seq, "error": msg})
                    errors.append(f"{preset} seq {seq}: {msg}")
        body: dict[str, Any] = {"runs": rows}
        if errors:
            body["error"] = f"{len(errors)} of {len(rows)} runs failed: " + "; ".join(errors)
        return body

    # ------------------------------------------------------------------------- reference

    def section_reference(self) -> dict[str, Any]:
        if self.plan.dry:
            return {"status": "skipped", "reason": "the challenge baseline's train_gpt.py needs CUDA ('CUDA is "
                                                   "required'); the dry run does not start it"}
        if not self.reference.is_file():
            return {"status": "skipped", "reason": f"{self.reference} absent (../shared is not here)"}
        if self.official is None:
            return {"status": "skipped", "reason": "needs the data built with the official sp1024 tokenizer"}
        self.ensure_data()
        rows, errors = [], []
        for seq in self.plan.seqs:
            try:
                rows.append(self.reference_one(seq))
            except Exception as e:
                msg = str(e) if isinstance(e, SectionError) else f"{type(e).__name__}: {e}"
                rows.append({"seq_len": seq, "error": msg})
                errors.append(f"seq {seq}: {msg}")
        body: dict[str, Any] = {"script": str(self.reference.resolve()), "runs": rows}
        train = self.doc["sections"].get("train", {}).get("runs", [])
        for row in rows:
            mine = next((r for r in train if r.get("preset") == "baseline" and r.get("seq_len") == row["seq_len"]
                         and r.get("ms_per_step")), None)
            if mine and row.get("ms_per_step"):
                row["pgolf_ms_per_step"] = mine["ms_per_step"]
                row["pgolf_over_reference"] = round(mine["ms_per_step"] / row["ms_per_step"], 3)
        if errors:
            body["error"] = "; ".join(errors)
        return body

    def reference_one(self, seq: int) -> dict[str, Any]:
        p = self.plan
        work = self.out / "reference" / f"seq{seq}"
        work.mkdir(parents=True, exist_ok=True)
        env = _env(DATA_PATH=str(self.data.resolve()), TOKENIZER_PATH=str(self.official[1]),
                   RUN_ID=f"gpu_check_seq{seq}", SEED="1337", TRAIN_SEQ_LEN=str(seq),
                   TRAIN_BATCH_TOKENS=str(p.batch_tokens), ITERATIONS=str(p.steps), WARMUP_STEPS=str(p.warmup),
                   MAX_WALLCLOCK_SECONDS="0", VAL_LOSS_EVERY="0", TRAIN_LOG_EVERY="1", VAL_BATCH_SIZE=str(
                       p.val_batch_tokens * p.accum))
        stdout = self.run.ok(f"reference-seq{seq}", [self.py, self.reference.resolve()], 180, cwd=work, env=env)
        steps = [(int(m[1]), float(m[2]), float(m[3])) for m in re.finditer(
            r"^step:(\d+)/\d+ train_loss:\S+ train_time:([\d.]+)ms step_avg:([\d.]+)ms", stdout, re.M)]
        if not steps:
            raise SectionError(f"reference seq {seq}: no step lines in its output (log: {work})")
        ms = _steady_ms([(s, t) for s, t, _ in steps])
        params = re.search(r"^model_params:(\d+)", stdout, re.M)
        mem = re.search(r"peak memory allocated: (\d+) MiB reserved: (\d+) MiB", stdout)
        tok_s = p.batch_tokens / (ms / 1000) if ms else None
        flops = flops_per_token(int(params[1]), 9, seq, 512) if params else None  # the baseline: 9 x 512
        row = {"seq_len": seq, "batch_tokens": p.batch_tokens, "warmup_steps": p.warmup, "timed_steps": steps[-1][0],
               "ms_per_step": _r(ms), "tokens_per_s": _r(tok_s, 0), "its_step_avg_ms": steps[-1][2],
               "first_step_ms": steps[0][1], "params": int(params[1]) if params else None,
               "peak_mem_gib": _r(int(mem[1]) / 1024) if mem else None,
               "peak_reserved_gib": _r(int(mem[2]) / 1024) if mem else None, "flops_per_token": flops,
               "mfu": _r(flops * tok_s / self.peak, 4) if (flops and tok_s and self.peak) else None,
               "dir": str(work)}
        rate = f"{row['tokens_per_s']:,.0f}" if row["tokens_per_s"] is not None else "?"
        self.say(f"reference seq {seq}: {row['ms_per_step']} ms/step, {rate} tok/s")
        return row

    # ------------------------------------------------------------------------- eval

    def section_eval(self) -> dict[str, Any]:
        self.ensure_data()
        seq = self.plan.seqs[-1] if self.plan.dry else self.plan.seqs[0]  # 1024 (its own), or 128 > stride 64
        train = self.out / "train" / f"baseline-seq{seq}"
        body: dict[str, Any] = {"train": str(train)}
        if not (train / "manifest.json").is_file():
            body["note"] = "trained the baseline here: the train section's artifact was missing"
            self.train_one("baseline", seq)
        quant, pack = self.out / "eval" / "quant", self.out / "eval" / "pack"
        dev = self.plan.device
        q = _json_doc(self.run.ok("quantize", [self.py, "-m", "pgolf", "quantize", train, "--scheme", "int6",
                                               "--out", quant, "--device", dev, "--force", "--json"], 300))
        rc, stdout, log = self.run("pack", [self.py, "-m", "pgolf", "pack", quant, "--out", pack, "--force",
                                            "--json"], 300)
        if rc not in (0, 3):  # 3: over the byte budget, still written
            raise SectionError(f"pack: exit {rc}: {_tail(log)}")
        pk = _json_doc(stdout)
        records_file = self.out / "eval" / "throughput.json"
        records_file.unlink(missing_ok=True)
        cmd = [self.py, REPO / "bench" / "eval_throughput.py", "--pack", pack, "--data", self.data,
               "--modes", "plain,sliding,ttt", "--device", dev, "--json", records_file]
        if self.plan.dry:
            cmd += ["--eval-set", "ttt.epochs=1", "--eval-set", "chunk_tokens=4096", "--threads", "1"]
        self.run.ok("eval-throughput", cmd, 300)
        modes = {}
        for rec in json.loads(records_file.read_text()):
            rate = rec["tok_s"]
            modes[rec["mode"]] = {
                "tokens_per_s": rate, "targets": rec["targets"], "seq_len": rec["seq_len"], "stride": rec["stride"],
                "chunk_tokens": rec["chunk_tokens"], "ttt_epochs": rec["ttt_epochs"],
                "eval_time_s": rec["eval_time_s"], "load_s": rec["load_s"], "data_s": rec["data_s"],
                "score_s": rec["score_s"], "adapt_s": rec["adapt_s"], "val_bpb": rec["val_bpb"],
                "projected_8gpu_full_val_s": _r(FULL_VAL_TARGETS / (8 * rate), 1) if rate else None,
            }
            self.say(f"eval {rec['mode']}: {rate:,.0f} tok/s, projected full val on 8 of this device "
                     f"{modes[rec['mode']]['projected_8gpu_full_val_s']} s")
        body.update({"scheme": "int6", "quant_rel_err": q.get("rel_err"), "codec": pk.get("codec"),
                     "model_bytes": pk.get("model_bytes"), "total_bytes": pk.get("total_bytes"),
                     "device": self.env["device"], "modes": modes,
                     "projection_devices": f"8 x {self.env['gpu'] or 'this CPU (not meaningful: CPU dry run)'}"})
        missing = {"plain", "sliding", "ttt"} - set(modes)
        if missing:
            body["error"] = f"modes missing from eval_throughput.py's output: {sorted(missing)}"
        return body

    # ------------------------------------------------------------------------- parallel muon

    def section_parallel_muon(self) -> dict[str, Any]:
        self.ensure_data()
        import torch

        cuda = not self.plan.dry and torch.cuda.device_count() >= 2
        device = "cuda" if cuda else "cpu"
        base = [f"device={device}", "grad_accum_base=2", "batch_tokens=1024", "iterations=6", "warmup_steps=0",
                "max_seconds=0", "val_every=0", "log_every=1", "checkpoint_every_s=0", "seq_len=128"]

        def train_cmd(out: Path, extra: list[str]) -> list[Any]:
            cmd: list[Any] = ["-m", "pgolf", "train", "--preset", "tiny", "--data", self.data, "--out", out,
                              "--force", "--json"]
            for s in [*base, *extra]:
                cmd += ["--set", s]
            return cmd

        two = self.out / "parallel_muon" / "two-ranks"
        env = _env(OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        cmd = [self.py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               *train_cmd(two, ["optimizer=parallel_muon"])]
        rc, _, log = self.run("parallel_muon-2ranks", cmd, 240, env=env)
        text = log.read_text(errors="replace")
        if rc != 0 and UNKNOWN_OPTIMIZER in text:
            return {"status": "unavailable", "available": False, "ranks": 2,
                    "note": "not available: `pgolf train --set optimizer=parallel_muon` fails with \"unknown config "
                            "key 'optimizer'\" (the TrainConfig switch has not landed yet); rerun "
                            "`bench/gpu_check.sh --only parallel_muon` once it has"}
        if rc != 0:
            raise SectionError(f"2 ranks with optimizer=parallel_muon: exit {rc}: {_tail(log)} (log: {log})")
        man = _manifest(two)
        one = self.out / "parallel_muon" / "one-process"
        self.run.ok("parallel_muon-1process", [self.py, *train_cmd(one, [])], 240, env=env)
        l2 = [(e["step"], e["train_loss"]) for e in _events(two, "step")]
        l1 = [(e["step"], e["train_loss"]) for e in _events(one, "step")]
        diffs = [abs(a - b) / abs(a) for (_, a), (_, b) in zip(l1, l2)]
        body = {"available": True, "ranks": man["env"]["world_size"], "backend": "nccl" if cuda else "gloo",
                "device": man["metrics"]["device"], "optimizer": man["config"].get("optimizer"),
                "steps": man["metrics"]["steps"], "tokens_per_s": _r(man["metrics"]["tokens_per_s"], 0),
                "final_train_loss": man["metrics"]["final_train_loss"],
                "one_process_final_train_loss": _manifest(one)["metrics"]["final_train_loss"],
                "max_rel_loss_diff_vs_one_process_muon": max(diffs) if diffs else None,
                "compared": "the same global batch on one process with the default optimizer (Muon): Parallel Muon "
                            "should match it up to float rounding"}
        if body["ranks"] != 2 or body["optimizer"] != "parallel_muon":
            body["error"] = f"expected 2 ranks with optimizer parallel_muon, the manifest says {body['ranks']} " \
                            f"and {body['optimizer']!r}"
        if len(l1) != len(l2):
            body["error"] = f"step counts differ: {len(l1)} on one process, {len(l2)} on two ranks"
        return body

    # ------------------------------------------------------------------------- pgolf run

    def pipeline_toml(self) -> str:
        p = self.plan
        if self.official is not None:
            corpus, tokenizer = self.official
            data = (f"corpus = [{json.dumps(str(corpus))}]\ntokenizer = {json.dumps(str(tokenizer))}\n"
                    f"val_docs = {p.val_docs}\n")
        else:
            data = f"val_docs = {min(p.val_docs, 10 if p.dry else 50)}   # the embedded corpus\n"
        model = ""
        if p.dry:
            model = "\n[train.model]\n" + "".join(f"{k} = {v}\n" for k, v in (s.split("=") for s in TINY_BASELINE))
        seq = p.seqs[-1] if p.dry else p.seqs[0]
        return f"""# gpu_check's end-to-end pipeline (written at run time): every stage of `pgolf run` on
# {'CPU at tiny shapes (--dry-run)' if p.dry else 'CUDA'}, {p.run_train_s:g} s of training.
[data]
{data}
[train]
preset = "baseline"
seq_len = {seq}
batch_tokens = {p.batch_tokens}
grad_accum_base = {p.accum}
max_seconds = {p.run_train_s}
warmdown_iters = {10 if p.dry else 30}   # the last ~30 steps, not the preset's 1,200 (longer than the run)
warmup_steps = {p.warmup}
val_every = 0
val_batch_tokens = {p.val_batch_tokens}
log_every = 50
checkpoint_every_s = 0.0
device = "{p.device}"
compile = {'true' if p.compile else 'false'}
dtype = "{p.dtype}"
{model}
[quantize]
scheme = "int6"
device = "{p.device}"

[pack]
codec = "rans"
limit_bytes = 16_000_000

[eval]
mode = "sliding"
time_budget_s = 600.0
device = "{p.device}"

[verify]                    # explicit limits: judged on any hardware
max_bytes = 16_000_000
max_train_seconds = 600.0
max_eval_seconds = 600.0
"""

    def section_run(self) -> dict[str, Any]:
        toml = self.out / "e2e.toml"
        toml.write_text(self.pipeline_toml())
        run_dir = self.out / "run"
        rc, stdout, log = self.run("run", [self.py, "-m", "pgolf", "run", toml, "--out", run_dir, "--force", "--json"],
                                   300 if not self.plan.dry else 240)
        if rc not in (0, 3):
            raise SectionError(f"pgolf run: exit {rc}: {_tail(log)} (log: {log})")
        doc = _json_doc(stdout)
        train = _manifest(run_dir / "train")
        stages = {s["stage"]: {"status": s["status"], "seconds": _r(s.get("seconds"), 1)} for s in doc["stages"]}
        body: dict[str, Any] = {
            "config": str(toml), "out": str(run_dir), "exit_code": rc, "stages": stages,
            "train_device": train["metrics"]["device"], "train_steps": train["metrics"]["steps"],
            "train_time_s": _r(train["metrics"]["train_time_s"]),
            "train_tokens_per_s": _r(train["metrics"]["tokens_per_s"], 0), "val_bpb": doc.get("val_bpb"),
            "total_bytes": doc.get("total_bytes"), "verify_ok": doc.get("verify_ok"), "report": doc.get("report"),
            "wall_s": _r(sum(s["seconds"] or 0 for s in stages.values()), 1),
        }
        report = run_dir / "verify" / "report.json"
        if report.is_file():
            body["verify"] = _verify_counts(json.loads(report.read_text()))
        expected = {"data", "train", "quantize", "pack", "eval", "verify", "report"}
        missing = sorted(expected - set(stages))
        if missing:
            body["error"] = f"stages missing from the run: {missing}"
        elif rc == 3:
            body["error"] = f"verify FAILs: {body.get('verify', {}).get('fail_ids')}"
        elif not self.plan.dry and "cuda" not in str(body["train_device"]):
            body["error"] = f"trained on {body['train_device']}, not CUDA"
        return body

    # ------------------------------------------------------------------------- main

    def main(self) -> int:
        wanted = SECTIONS if not self.args.only else tuple(self.args.only)
        for name in SECTIONS:
            if name in wanted:
                self.section(name, getattr(self, f"section_{name}"))
        self.write()
        print(json.dumps(self.doc, indent=2))
        failed = self.doc["failed"]
        self.say(f"{'FAILED: ' + ', '.join(failed) if failed else 'ok'}; {self.file} "
                 f"({self.doc['wall_s']} s)")
        return 1 if failed else 0


def _verify_counts(report: dict[str, Any]) -> dict[str, Any]:
    """verify's PASS/WARN/FAIL/INFO counts and the ids of the checks that WARN or FAIL."""
    checks = report.get("checks") or []
    return {**(report.get("counts") or {}), "ok": report.get("ok"),
            "fail_ids": [c["id"] for c in checks if c.get("verdict") == "FAIL"],
            "warn_ids": [c["id"] for c in checks if c.get("verdict") == "WARN"]}


# ----------------------------------------------------------------------------- the train worker


def train_worker(argv: list[str]) -> int:
    """`pgolf train` in this process, then its peak memory (torch.cuda.max_memory_allocated) to a file."""
    peak_file, rest = Path(argv[0]), argv[argv.index("--") + 1:]
    import torch

    sys.argv = ["pgolf", *rest]
    from pgolf.cli import main

    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        peak: dict[str, Any] = {"max_memory_allocated": None, "max_memory_reserved": None}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            peak = {"max_memory_allocated": torch.cuda.max_memory_allocated(),
                    "max_memory_reserved": torch.cuda.max_memory_reserved()}
        peak_file.parent.mkdir(parents=True, exist_ok=True)
        peak_file.write_text(json.dumps(peak))
    return code


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == WORKER:
        return train_worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/gpu_check", help="output directory (default runs/gpu_check); the JSON is "
                                                            "OUT/gpu_check.json, each command's log in OUT/logs/")
    ap.add_argument("--dry-run", action="store_true", help="the same path on CPU at tiny shapes (~1.5 min on 2 cores)")
    ap.add_argument("--only", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=None,
                    help=f"comma-separated sections to run ({', '.join(SECTIONS)}); the other sections' figures "
                         "already in OUT/gpu_check.json are kept")
    ap.add_argument("--record-preset", default="int5-qat-ttt", help="the record-like preset timed beside baseline")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (GPU 6, dry run 4)")
    ap.add_argument("--warmup", type=int, default=None, help="compile warm-up steps (GPU 2, dry run 1)")
    ap.add_argument("--val-docs", type=int, default=None, help="validation documents of the data (GPU 300, dry run 20)")
    ap.add_argument("--run-train-seconds", type=float, default=None,
                    help="training seconds of the end-to-end pgolf run (GPU 30, dry run 6)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="wall-clock budget of the whole check; a command is stopped when it runs out and the "
                         "sections left are errors (GPU 470, dry run 300)")
    args = ap.parse_args()
    for name in args.only or []:
        if name not in SECTIONS:
            ap.error(f"unknown section {name!r}; sections: {', '.join(SECTIONS)}")
    return Check(args, Plan.make(args)).main()


if __name__ == "__main__":
    sys.exit(main())
