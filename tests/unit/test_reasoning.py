import pytest

from lorasafe.data.reasoning import split_think


@pytest.mark.parametrize("text,thinking,answer,closed", [
    ("<think>a step</think>42", "a step", "42", True),
    ("<think>\nlong\n</think>\n\n 42 ", "long", "42", True),
    ("<think>cut by the limit", "cut by the limit", None, False),
    ("no thinking at all", None, "no thinking at all", True),
    ("lost opening</think>answer", "lost opening", "answer", True),
    ("<think>a</think>b</think>c", "a", "b</think>c", True),
    ("<think></think>", "", "", True),
])
def test_split_think(text, thinking, answer, closed):
    s = split_think(text)
    assert (s.thinking, s.answer, s.closed) == (thinking, answer, closed)


def test_has_answer():
    assert not split_think("<think></think>  ").has_answer
    assert split_think("<think>x</think>y").has_answer
