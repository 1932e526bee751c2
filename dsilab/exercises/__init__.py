"""Exercise checkers: every notebook's exercises end in `check("NN.k", answer, **context)`.

A checker recomputes the expected result on its own and says, helpfully, what is off. An answer left as `None` is
"not attempted" (the notebook still runs). With `strict=True` (the notebooks pass `strict=SOLUTIONS`, and CI runs with
SOLUTIONS = True) a failing answer raises, so every reference solution is checked on every CI run;
tests/test_exercises.py feeds each checker a wrong answer too. Each chapter's checkers live in the module named after
its topic (`baselines.py` holds "01.k"); `check` imports them on first use. A "predict, then run" exercise's checker
compares the learner's prediction with the measurement (`compare_prediction`) and explains the difference.
"""
from ._registry import CHECKERS, check, checker, compare_prediction, load_all

__all__ = ["CHECKERS", "check", "checker", "compare_prediction", "load_all"]
