"""The command line and the measurement tools: `gmlm` (cli), `gmlm bench` (benchmark), `gmlm eval` (evaluate)."""
