"""Dataset loaders producing typed `Sample`s, and the prompt templates of each task family."""

from cowest.tasks.base import TASKS, Task, get_task, load_samples

__all__ = ["TASKS", "Task", "get_task", "load_samples"]
