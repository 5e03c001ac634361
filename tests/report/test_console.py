"""Console helpers: compact numbers, NO_COLOR."""
from fla_check.report.console import fmt, make_console


def test_fmt():
    assert [fmt(x) for x in (0.0, 1.234e-7, 0.5, 12345.0, float("inf"), float("nan"), None)] == \
        ["0", "1.2e-07", "0.5", "1.2e+04", "inf", "nan", "-"]


def test_no_color_env_turns_colour_off(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert make_console().no_color
    monkeypatch.delenv("NO_COLOR")
    assert not make_console(width=80).no_color and make_console(no_color=True).no_color
