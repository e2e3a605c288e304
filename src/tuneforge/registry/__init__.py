"""Dataset and model versions, aliases and lineage: functions over the Store."""
