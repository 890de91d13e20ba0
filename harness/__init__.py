"""harness: evaluate LoRA adapters against their base model, item by item."""

__version__ = "0.1.0"


def load_run(out_dir):
    """Load a run folder (run.json + items.jsonl) as pandas DataFrames; see `harness.log.load.Run`."""
    from harness.log.load import load_run as _load

    return _load(out_dir)


__all__ = ["__version__", "load_run"]
