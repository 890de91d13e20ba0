"""CLI command modules. Each module here defines `register(app: typer.Typer) -> None` and is
picked up by `harness.cli`; keep their top-level imports light (no torch)."""
