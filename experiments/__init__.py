"""Studies built on rnnlab: sweeps and the reports they write (docs/)."""
