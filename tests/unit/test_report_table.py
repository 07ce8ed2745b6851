"""The results table: per-suite safety columns appear exactly when several harmful suites ran."""

from lorasafe.reports.table import COLUMNS, columns, markdown_table


def _row(label: str, by_suite: dict[str, float]) -> dict:
    return {"label": label, "method": "lora", "learning_rate": 1e-3, "trainable_params": 1024,
            "safety": sum(by_suite.values()) / len(by_suite), "safety_by_suite": by_suite}


def test_one_harmful_suite_keeps_the_plain_columns():
    assert columns([_row("a", {"harmful-eval": 0.5})]) == list(COLUMNS)


def test_several_harmful_suites_get_a_column_each_after_safety():
    rows = [_row("a", {"harmful-eval": 0.5, "jbb-harmful": 0.25}), _row("b", {"harmful-eval": 1.0, "jbb-harmful": 0.0})]
    heads = [h for h, _ in columns(rows)]
    at = heads.index("safety")
    assert heads[at + 1:at + 3] == ["safety harmful-eval", "safety jbb-harmful"]
    table = markdown_table(rows)
    assert "| a | lora | 0.001 | 1,024 | 0.375 | 0.500 | 0.250 |" in table
    assert "| b | lora | 0.001 | 1,024 | 0.500 | 1.000 | 0.000 |" in table
