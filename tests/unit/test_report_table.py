"""The results table: refused, complied and invalid side by side; per-suite columns appear exactly
when several harmful (or benign) suites ran."""

from lorasafe.reports.table import COLUMNS, columns, markdown_table


def _row(label: str, by_suite: dict[str, float], complied: float = 0.0, benign: dict[str, float] | None = None) -> dict:
    refused = sum(by_suite.values()) / len(by_suite)
    return {"label": label, "method": "lora", "learning_rate": 1e-3, "trainable_params": 1024, "refused": refused,
            "complied": complied, "invalid": 1 - refused - complied, "refused_by_suite": by_suite,
            "over_refusal_by_suite": benign or {"benign": 0.0}}


def test_one_harmful_suite_keeps_the_plain_columns():
    assert columns([_row("a", {"harmful-eval": 0.5})]) == list(COLUMNS)


def test_the_three_shares_stand_side_by_side():
    heads = [h for h, _ in COLUMNS]
    at = heads.index("refused")
    assert heads[at:at + 3] == ["refused", "complied", "invalid"] and "safety" not in heads


def test_several_harmful_suites_get_a_column_each_after_the_three_shares():
    rows = [_row("a", {"harmful-eval": 0.5, "jbb-harmful": 0.25}, complied=0.5),
            _row("b", {"harmful-eval": 1.0, "jbb-harmful": 0.0}, complied=0.25)]
    heads = [h for h, _ in columns(rows)]
    at = heads.index("invalid")
    assert heads[at + 1:at + 3] == ["refused harmful-eval", "refused jbb-harmful"]
    table = markdown_table(rows)
    assert "| a | lora | 0.001 | 1,024 | 0.375 | 0.500 | 0.125 | 0.500 | 0.250 |" in table
    assert "| b | lora | 0.001 | 1,024 | 0.500 | 0.250 | 0.250 | 1.000 | 0.000 |" in table


def test_several_benign_suites_get_an_over_refusal_column_each():
    rows = [_row("a", {"h": 1.0}, benign={"mini-benign-eval": 0.0, "overrefusal-edgy": 0.5})]
    heads = [h for h, _ in columns(rows)]
    at = heads.index("over-refusal")
    assert heads[at + 1:at + 3] == ["over-refusal mini-benign-eval", "over-refusal overrefusal-edgy"]
