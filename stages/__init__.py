"""Stage scripts: one thin `main()` per pipeline stage, run as `python -m stages.<name>`."""
