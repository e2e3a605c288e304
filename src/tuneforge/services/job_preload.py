"""Imported once by the job forkserver, so that each job process starts warm (see ``jobs.worker``).

The forkserver inherits the environment of the shell that started the worker (``settings.quiet_environment``
ran there): offline, no progress bars. A job reports through the store instead.
"""

import signal
import warnings

from tuneforge.settings import quiet_library_logs

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
quiet_library_logs()  # said at every worker start, about nothing a job uses

import peft  # noqa: E402, F401
import torch  # noqa: E402, F401
import transformers  # noqa: E402, F401
import trl  # noqa: E402, F401

from transformers.utils import logging as _hf_logging  # noqa: E402

import tuneforge.jobs.process  # noqa: E402, F401
import tuneforge.services.job_kinds  # noqa: E402, F401
import tuneforge.training.run  # noqa: E402, F401
import tuneforge.training.tasks.preference  # noqa: E402, F401
import tuneforge.training.tasks.sft  # noqa: E402, F401

_hf_logging.disable_progress_bar()
_hf_logging.set_verbosity_error()

# transformers, PEFT and TRL import their parts lazily: resolve the ones every job uses, once, here.
import datasets  # noqa: E402, F401
import jinja2  # noqa: E402, F401
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402, F401
from transformers import (  # noqa: E402, F401
    AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer,
    PreTrainedTokenizerFast, Trainer, TrainingArguments,
)
from transformers.models.llama import modeling_llama  # noqa: E402, F401
from trl import DPOConfig, DPOTrainer  # noqa: E402, F401

import tuneforge.data  # noqa: E402, F401
import tuneforge.training.methods  # noqa: E402, F401
import tuneforge.training.tasks  # noqa: E402, F401


def _warm_up() -> None:
    """One training step of a throwaway 1-layer model: torch's lazy initializations happen here, once.

    On one thread: an OpenMP thread team started here would deadlock the forked job processes.
    """
    torch.set_num_threads(1)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1)
    model = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(r=2, target_modules=["q_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    ids = torch.randint(0, 64, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()


_warm_up()
signal.signal(signal.SIGUSR1, tuneforge.jobs.process.on_pause_signal)  # inherited by every job process
# Objects made so far are shared by every job process: keep the collector from walking them in each job.
import gc  # noqa: E402

gc.collect()
gc.freeze()
