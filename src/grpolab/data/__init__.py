"""Tasks, prompt samplers and data transforms.

Importing this package registers every module's entries: the built-in tasks (``arith``), tasks from files
(``file``) and the prompt samplers (``grpolab.data.sampler.SAMPLERS``) of every module here.
"""

import importlib
import pkgutil

from grpolab.data.files import file_task, load_rows
from grpolab.data.task import TASKS, RewardFn, Task

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["TASKS", "RewardFn", "Task", "file_task", "load_rows"]
