"""Imported once by the job forkserver, so that each job process starts warm (see ``jobs.worker``)."""

import os
import warnings

# A job reports through the store; the libraries' bars and advisories would only fill the server's log.
for name, value in (("HF_HUB_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                    ("TRANSFORMERS_VERBOSITY", "error"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")):
    os.environ.setdefault(name, value)
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

import peft  # noqa: E402, F401
import torch  # noqa: E402, F401
import transformers  # noqa: E402, F401
import trl  # noqa: E402, F401

import tuneforge.jobs.runner  # noqa: E402, F401
from transformers.utils import logging as _hf_logging  # noqa: E402

_hf_logging.disable_progress_bar()
_hf_logging.set_verbosity_error()
import tuneforge.training.run  # noqa: F401
import tuneforge.training.tasks.preference  # noqa: F401
import tuneforge.training.tasks.sft  # noqa: F401
