"""Model references, the architecture table and loading."""

from tuneforge.models.architectures import ARCHITECTURES, Architecture, architecture_for
from tuneforge.models.resolve import BUILTINS, ResolvedModel, resolve_model

__all__ = ["ARCHITECTURES", "BUILTINS", "Architecture", "ResolvedModel", "architecture_for", "resolve_model"]
