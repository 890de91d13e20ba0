"""Forgetting checks: lm-eval tasks (MMLU, HellaSwag, any task) on base and adapters.

Imports lm-eval lazily: `from harness.evaluate.forgetting.runner import evaluate_benchmarks`.
"""
