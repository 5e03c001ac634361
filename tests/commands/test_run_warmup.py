"""``fla-check run --warmup on`` and ``background`` (forced on the interpreter, few buckets):
the warm-up is recorded and the run's results are those of a run without it."""
import json

from click.testing import CliRunner
from device import DEVICE

from fla_check.backend import get_backend
from fla_check.cli import main


def _run(tmp_path, name, *extra):
    report = tmp_path / f"{name}.json"
    out = CliRunner().invoke(main, ["run", "--op", "gla", "--modes", "recurrent,chunk", "--dtypes", "fp32",
                                    "--examples", "3", "--max-seq-len", "24", "--seed", "0", "--device", DEVICE,
                                    "--mask-fill=-0.1max", "--report", str(report), "--no-color", *extra])
    return out, json.loads(report.read_text())


def _facts(report: dict) -> dict:
    """The report without wall-clock times and the run's own options."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("seconds", "first_failure", "options")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(report)


def test_a_forced_warmup_is_recorded_and_changes_no_result(tmp_path):
    warm_out, warm = _run(tmp_path, "warm", "--warmup", "on", "--warmup-buckets", "1")
    cold_out, cold = _run(tmp_path, "cold", "--warmup", "off")
    # the -0.1max fill fails the chunk mode on the interpreter; on a GPU these 3 cases may pass
    assert warm_out.exit_code == cold_out.exit_code in (0, 1), warm_out.output + cold_out.output
    record = warm["options"]["warmup"]
    assert (record["buckets"], record["warmed"], record["failed"]) == (1, 1, [])
    assert "compile warm-up before the search: 1 of 1 buckets" in warm_out.output
    assert "warmup" not in cold["options"] and "compile warm-up" not in cold_out.output
    assert _facts(warm) == _facts(cold) and warm["cases"]
    ahead_out, ahead = _run(tmp_path, "ahead", "--warmup", "background", "--warmup-buckets", "3")
    assert ahead_out.exit_code == cold_out.exit_code and _facts(ahead) == _facts(cold)
    record = ahead["options"]["warmup"]  # the search compiles its first case's two buckets itself: one left
    assert record["background"] is True and record["failed"] == []
    assert (record["buckets"], record["warmed"], record["stopped"]) in (
        (1, 1, ""), (1, 0, "the search ended first: 1 bucket(s) not warmed"),
        (0, 0, "the search ended before the buckets were planned"))


def test_auto_is_off_in_the_interpreter_and_background_on_a_gpu(tmp_path):
    out, report = _run(tmp_path, "auto")
    assert out.exit_code in (0, 1)
    if get_backend(DEVICE).interpreter:
        assert "warmup" not in report["options"]
    else:
        assert report["options"]["warmup"]["background"] is True


def test_warmup_buckets_must_be_positive():
    out = CliRunner().invoke(main, ["run", "--op", "gla", "--modes", "chunk", "--warmup-buckets", "0"])
    assert out.exit_code == 2 and "--warmup-buckets must be >= 1" in out.output


def test_a_warmup_time_limit_needs_the_warmup_before_the_search():
    out = CliRunner().invoke(main, ["run", "--op", "gla", "--modes", "chunk", "--warmup-seconds", "5"])
    assert out.exit_code == 2 and "--warmup-seconds limits --warmup on" in out.output and "--warmup auto" in out.output


def test_the_table_view_says_what_the_warmup_did():
    from fla_check.commands.run.render import warmup_line

    record = {"buckets": 51, "warmed": 49, "failed": [], "jobs": 16, "seconds": 27.406, "background": True,
              "stopped": "the search ended first: 2 bucket(s) not warmed"}
    assert warmup_line(record) == ("compile warm-up beside the search: 49 of 51 buckets in 27.4 s on 16 processes; "
                                   "the search ended first: 2 bucket(s) not warmed")
    before = {"buckets": 2, "warmed": 1, "failed": ["chunk float32 H=1 K=16 V=16: ERROR: boom"], "jobs": 2,
              "seconds": 3.0, "stopped": ""}
    assert warmup_line(before) == ("compile warm-up before the search: 1 of 2 buckets in 3.0 s on 2 processes; "
                                   "1 failed (first: chunk float32 H=1 K=16 V=16: ERROR: boom)")


def test_the_warmup_runs_the_runs_invariance_checks(tmp_path, monkeypatch):
    from fla_check.engine import warmup

    asked = {}

    def fake_warm(buckets, device, **kwargs):
        asked.update(kwargs)
        return warmup.WarmupResult(len(buckets), 0, (), 1, 0.0, warmup.cache_dir())

    monkeypatch.setattr(warmup, "warm", fake_warm)
    for flags, checks in ((("--invariance", "batch,layout"), "batch,layout"), (("--invariance", "none"), "none")):
        out, _ = _run(tmp_path, "checks", "--warmup", "on", "--warmup-buckets", "1", *flags)
        assert out.exit_code in (0, 1), out.output
        assert asked["invariance"] == checks


def test_a_run_whose_plan_was_compiled_before_skips_its_warmup(tmp_path, monkeypatch):
    """On a GPU (here: the backend's answer patched), a run that compiled its whole plan records
    it in the cache's ledger; the same run again skips the warm-up and says why."""
    import dataclasses

    from fla_check.commands.run import engine
    from fla_check.engine import warm_ledger, warmup

    monkeypatch.setenv(warm_ledger.LEDGER_ENV, "on")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "cache"))
    real = engine.get_backend
    monkeypatch.setattr(engine, "get_backend", lambda device=None: dataclasses.replace(real(device), interpreter=False))
    warmed = []
    monkeypatch.setattr(warmup, "warm", lambda buckets, device, **kw: warmed.append(len(buckets)) or
                        warmup.WarmupResult(len(buckets), len(buckets), (), 1, 0.0, warmup.cache_dir()))
    first_out, first = _run(tmp_path, "first", "--warmup", "on")
    again_out, again = _run(tmp_path, "again", "--warmup", "on")
    other_out, _ = _run(tmp_path, "other", "--warmup", "on", "--seed", "1")  # another plan: warmed
    assert first_out.exit_code == again_out.exit_code in (0, 1), first_out.output + again_out.output
    assert len(warmed) == 2 and first["options"]["warmup"]["warmed"] == warmed[0]
    assert again["options"]["warmup"]["skipped"] == engine.WARMED_BEFORE
    assert "compile warm-up skipped: an earlier run with this plan" in again_out.output
    assert _facts(again) == _facts(first)
