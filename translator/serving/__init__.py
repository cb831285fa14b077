"""An HTTP API and web page for a trained run: `make serve` (Starlette on uvicorn)."""
