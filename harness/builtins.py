"""The built-in plugins, registered on import like any third-party plugin module.

Metrics: exact_match, f1, rouge1, rouge2, rougeL, bleu, chrf. Judge backends: openai (any
OpenAI-compatible server), local (a model run in-process). Importing this module imports
no torch and opens no connection.
"""

import harness.evaluate.judges.local  # noqa: F401  registers the "local" judge backend
import harness.evaluate.judges.openai_client  # noqa: F401  registers the "openai" judge backend
import harness.evaluate.metrics  # noqa: F401  registers the built-in metrics
