"""Tasks: prompts with reference columns, and the reward functions that score completions of them.

Importing this package registers the built-in tasks (``arith``) and tasks from files (``file``).
"""

from grpolab.data.task import TASKS, RewardFn, Task  # noqa: I001  (the registry first: the tasks below fill it)
from grpolab.data import arith, files  # noqa: F401
from grpolab.data.files import file_task, load_rows

__all__ = ["TASKS", "RewardFn", "Task", "file_task", "load_rows"]
