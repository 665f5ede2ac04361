"""Shared by the exercise-check tests: a learner's unfinished answer, and what a check must say."""


def stub(*args, **kwargs):
    """An exercise as handed out: the body is still `raise NotImplementedError()`."""
    raise NotImplementedError()


def expect_pass(result):
    assert result.passed, str(result)


def expect_fail(result, *fragments):
    """The check fails, in one line, and its message contains every fragment."""
    assert not result.passed, "a wrong answer passed"
    assert "\n" not in str(result), str(result)
    for f in fragments:
        assert f in result.message, f"{f!r} not in {result.message!r}"
