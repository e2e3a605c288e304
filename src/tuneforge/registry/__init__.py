"""The registries over the Store: model versions, aliases and lineage (``models``); dataset versions (``datasets``)."""
