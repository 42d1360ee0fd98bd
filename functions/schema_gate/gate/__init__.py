"""The schema gate engine (pyarrow): contract checks over streamed record batches, drift profiles.

Shared by SchemaGateFunction and `stagewarden data validate|profile`.
"""
