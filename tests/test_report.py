import json
import math

from rollwise.report import ReproReport, from_jsonable, line_plot, markdown_table, to_jsonable


def test_repro_report_writes_markdown_and_json(tmp_path):
    rep = ReproReport(name="x", title="X", command="rollwise repro x --quick")
    rep.add("acc", 0.71, paper=0.77, target=">= 0.70", passed=True)
    rep.add("gap", 0.1, paper=0.24, target=">= 0.15", passed=False)
    fig = line_plot(tmp_path / "f.png", {"a": ([0, 1], [0.0, 1.0])}, "x", "y")
    rep.figures.append(str(fig))
    md = rep.write(tmp_path)
    text = md.read_text()
    assert "| acc | 0.710 | 0.770 | >= 0.70 | yes |" in text
    assert "**no**" in text
    assert not rep.all_passed
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["rows"][0]["ours"] == 0.71
    assert fig.exists() and fig.stat().st_size > 0


def test_markdown_table_union_of_columns():
    t = markdown_table([{"a": 1}, {"b": 2.5}])
    assert t.splitlines()[0] == "| a | b |"


def test_non_finite_floats_survive_a_json_round_trip():
    x = {"a": [float("nan"), 1.5, float("inf")], "b": {"c": float("-inf"), "d": "text"}}
    back = from_jsonable(json.loads(json.dumps(to_jsonable(x))))
    assert math.isnan(back["a"][0]) and back["a"][1:] == [1.5, math.inf]
    assert back["b"] == {"c": -math.inf, "d": "text"}
