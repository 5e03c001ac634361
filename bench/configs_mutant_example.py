from fla_check.cases import CaseConfig
from fla_check.commands.run.render import render_failure
from fla_check.commands.selftest.mutants import select
from fla_check.engine.configs import parse_policy
from fla_check.engine.runner import check_case
from fla_check.report.console import make_console

(mutant,) = select(ids=["simple_gla.chunk.config-specific"])
case = CaseConfig("simple_gla", "fp32", 1, 40, 1, 16, 64, seed=3)
for policy in ("first", "all"):
    r = check_case("simple_gla", mutant.mode_specs(), case, configs=parse_policy(policy))
    print(policy, "->", r.modes["mutant:chunk"].verdict.value)
render_failure(make_console(no_color=True, width=130), r, "mutant:chunk", 0, "--configs all", "run.json")
