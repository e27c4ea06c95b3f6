"""Sweep grids: a cross product or a list of named configs, each validated like `--config`."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from engine import Rung
from shell.grid import MAX_CONFIGS, GridError, load_grid

ROOT = Path(__file__).resolve().parents[2]


def _grid(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def _refused(tmp_path: Path, text: str) -> str:
    path = _grid(tmp_path, text)
    with pytest.raises(GridError) as info:
        load_grid(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


def test_a_cross_product_varies_the_last_axis_fastest(tmp_path):
    """[axes] expands to every combination, in file order, named by its choices."""
    grid = load_grid(
        _grid(
            tmp_path,
            """
[base.protection]
lot_step = "0.5"
[axes]
"protection.trail" = [false, true]
"goal.target" = [0, 250]
"goal.giveback" = ["0.3"]
""",
        )
    )
    names = [c.name for c in grid.configs]
    assert names == [
        "trail=false target=0 giveback=0.3",
        "trail=false target=250 giveback=0.3",
        "trail=true target=0 giveback=0.3",
        "trail=true target=250 giveback=0.3",
    ]
    assert [c.index for c in grid.configs] == [1, 2, 3, 4]
    last = grid.configs[-1]
    assert last.choices == (
        ("protection.trail", "true"),
        ("goal.target", "250"),
        ("goal.giveback", "0.3"),
    )
    config = last.settings.config
    assert config.protection.trail is True
    assert config.protection.lot_step == D("0.5")  # from [base]
    assert config.goal.target == D(250)
    assert config.goal.giveback == D("0.3")
    assert [a.key for a in grid.axes] == ["protection.trail", "goal.target", "goal.giveback"]


def test_named_values_carry_ladders_and_partial_schedules(tmp_path):
    """A table axis names each value: the ladder reaches the Config, the name the row."""
    grid = load_grid(
        _grid(
            tmp_path,
            """
[axes."protection.ladder"]
tight = [{ at_r = 0.5, lock_r = 0 }, { at_r = 1, lock_r = 0.5 }]
wide = [{ at_r = 2, lock_r = 0 }]
""",
        )
    )
    assert [c.name for c in grid.configs] == ["ladder=tight", "ladder=wide"]
    assert grid.configs[0].settings.config.protection.ladder == (
        Rung(D("0.5"), D(0)),
        Rung(D(1), D("0.5")),
    )


def test_listed_configs_lie_over_the_base(tmp_path):
    """[[configs]]: each named config is the base with its own keys laid over it."""
    grid = load_grid(
        _grid(
            tmp_path,
            """
[base.protection]
trail = true
lot_step = "1"
[[configs]]
name = "spec"
[[configs]]
name = "fractional"
protection.lot_step = "0.001"
""",
        )
    )
    assert [(c.index, c.name) for c in grid.configs] == [(1, "spec"), (2, "fractional")]
    assert grid.axes == ()
    second = grid.configs[1].settings.config.protection
    assert second.trail is True and second.lot_step == D("0.001")
    assert grid.configs[0].settings.config.protection.lot_step == D(1)


def test_the_bundled_grid_is_valid():
    """samples/grid.toml (the README's sweep) expands to 36 valid configs."""
    grid = load_grid(ROOT / "samples" / "grid.toml")
    assert len(grid.configs) == 36
    assert [a.key for a in grid.axes] == [
        "protection.ladder",
        "protection.partials",
        "protection.trail",
        "protection.take_profit",
    ]


def test_a_bad_value_names_the_file_the_config_and_the_key(tmp_path):
    """The config loader's own message, prefixed with the grid file and the config's name."""
    message = _refused(tmp_path, '[axes]\n"protection.lot_step" = ["1", "-1"]\n')
    assert message.endswith(
        "config 'lot_step=-1': protection.lot_step = '-1': allowed > 0 (1 for whole shares, "
        "e.g. 0.001 for fractions)"
    ), message


def test_a_bad_listed_config_is_named(tmp_path):
    """A listed config with an unknown key is refused with its name and the key."""
    message = _refused(tmp_path, '[[configs]]\nname = "x"\nprotection.ladderz = 1\n')
    assert "config 'x': unknown key(s) protection.ladderz" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[axis]\n", "unknown key(s) axis; allowed: axes, base, configs"),
        ("base = 1\n[axes]\n'goal.target' = [0]\n", "base = 1: expected a table"),
        ("", "give either [axes]"),
        ("[axes]\n'goal.target' = [0]\n[[configs]]\nname = 'a'\n", ", not both"),
        ("[axes]\n'goal.target' = []\n", 'axes."goal.target" = []: expected at least one value'),
        ("[axes]\ntrail = [true]\n", 'axes."trail": expected a dotted ratchet.toml key'),
        ("[axes]\n'goal.target' = 5\n", "expected a list of values or a table of named values"),
        ("[axes]\n'goal.target' = [0, 0]\n", "the value '0' appears twice"),
        (
            "[axes]\n'protection.ladder' = [[{ at_r = 1, lock_r = 0 }]]\n",
            "a list or table value needs a name",
        ),
        ("[[configs]]\nprotection.trail = true\n", "configs[0]: expected name = a non-empty"),
        ("[[configs]]\nname = 'a'\n[[configs]]\nname = 'a'\n", "the name 'a' is used twice"),
        ("[base]\nprotection = 3\n[axes]\n'protection.trail' = [true]\n", "not a table"),
        ("[axes\n", "not valid TOML"),
    ],
)
def test_bad_grids_are_refused_in_one_line(tmp_path, text, expected):
    """Every malformed grid is one line naming the file and what is wrong."""
    assert expected in _refused(tmp_path, text)


def test_a_grid_too_large_is_refused(tmp_path):
    """A product past the limit is refused before anything is built."""
    values = ", ".join(str(10 + i) for i in range(400))
    givebacks = ", ".join(f"'0.{i:02d}'" for i in range(10, 90))
    text = f"[axes]\n'goal.target' = [{values}]\n'goal.giveback' = [{givebacks}]\n"
    message = _refused(tmp_path, text + "'protection.lot_step' = ['1', '2', '5', '10']\n")
    assert f"allowed at most {MAX_CONFIGS:,}" in message


def test_a_missing_grid_file_is_one_line(tmp_path):
    """A grid file that is not there says so."""
    with pytest.raises(GridError, match=r"grid\.toml: cannot read: No such file"):
        load_grid(tmp_path / "grid.toml")
