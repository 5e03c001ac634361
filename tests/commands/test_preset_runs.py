"""One run per model preset on the built-in kernels (``fla-check run --preset NAME --examples 3``):
exit 0, the preset recorded, every case inside it. Small caps (T <= 16; on CPU TP 8's heads only),
since each case runs K = V = 128 in the Triton interpreter."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from device import DEVICE

from fla_check.cases import CaseConfig
from fla_check.cli import main
from fla_check.presets import PRESETS


# One preset per distinct space (qwen3.5-35b-a3b draws what qwen3-next does; the 397b one is ratio 4 of
# the same family); kda's chunk mode at K = V = 128 costs ~90 s in the interpreter, so kimi-linear runs
# its recurrent mode here (tests/kernels cover kda chunk).
DISTINCT = {"qwen3-next": "recurrent,chunk", "qwen3.5-27b": "recurrent,chunk", "kimi-linear": "recurrent"}


@pytest.mark.parametrize("name", sorted(DISTINCT))
def test_a_preset_run_on_the_builtins_is_consistent(name, tmp_path):
    assert name in PRESETS
    report = tmp_path / "run.json"
    out = CliRunner().invoke(main, ["run", "--preset", name, "--modes", DISTINCT[name], "--examples", "3",
                                    "--max-seq-len", "16", "--seed", "0", "--device", DEVICE,
                                    "--report", str(report), "--no-color"])
    assert out.exit_code == 0, out.output
    assert f"preset {name}: " in out.stdout and "verdict: OK" in out.stdout
    data = json.loads(report.read_text())
    assert data["options"]["preset"] == name and len(data["cases"]) == 3
    configs = [CaseConfig.from_json(c["config"]) for c in data["cases"]]
    assert all(PRESETS[name].admits(c) for c in configs)
    assert all(m["verdict"] == "OK" for c in data["cases"] for m in c["modes"].values())
