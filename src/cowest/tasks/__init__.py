"""Dataset loaders producing typed `Sample`s, and the prompt templates of each task family."""

from cowest.tasks.base import get_task, load_samples
from cowest.tasks.task import TASKS, Task, TaskOptions

__all__ = ["TASKS", "Task", "TaskOptions", "get_task", "load_samples"]
