"""Chat templates a run can choose (``data.chat_template``): the model's own, a named one, or a .jinja file.

Each named template renders a conversation turn by turn (a prefix of the conversation renders to a prefix of the
text), so the loss mask on assistant tokens works with all of them. The template a run trains with is set on its
tokenizer and saved with the adapter (``chat_template`` of the saved tokenizer), so eval, generate and serving use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.config.data import CHAT_TEMPLATE_NAMES
from tuneforge.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_HEADER_TURNS = (  # "<open>role<close>content<end>" per message, then the assistant header to generate
    "{% for message in messages %}{{ OPEN + message['role'] + CLOSE + message['content'] + END }}{% endfor %}"
    "{% if add_generation_prompt %}{{ OPEN + 'assistant' + CLOSE }}{% endif %}"
)


def _header_template(open_: str, close: str, end: str, *, prefix: str = "") -> str:
    set_vars = f"{{% set OPEN = {open_!r} %}}{{% set CLOSE = {close!r} %}}{{% set END = {end} %}}"
    return set_vars + prefix + _HEADER_TURNS


NAMED_TEMPLATES: dict[str, str] = {
    "chatml": _header_template("<|im_start|>", "\n", "'<|im_end|>\n'"),
    "llama3": _header_template("<|start_header_id|>", "<|end_header_id|>\n\n", "'<|eot_id|>'",
                               prefix="{{ bos_token or '' }}"),
    "phi3": _header_template("<|", "|>\n", "'<|end|>\n'"),
    "zephyr": _header_template("<|", "|>\n", "(eos_token or '') + '\n'"),
    "gemma": (  # gemma names the assistant 'model' and has no system role: a system turn is a user turn
        "{{ bos_token or '' }}{% for message in messages %}"
        "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
        "{{ '<start_of_turn>' + role + '\n' + message['content'] + '<end_of_turn>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
    "mistral": (  # [INST] user [/INST] answer</s>; a system message goes in [SYSTEM_PROMPT] (v7)
        "{{ bos_token or '' }}{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}{{ message['content'] + (eos_token or '') }}"
        "{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}"
        "{% else %}{{ '[INST]' + message['content'] + '[/INST]' }}{% endif %}{% endfor %}"
    ),
}
assert set(NAMED_TEMPLATES) == set(CHAT_TEMPLATE_NAMES) - {"auto"}, "config.data.CHAT_TEMPLATE_NAMES is out of step"


def chat_template_text(choice: str) -> str | None:
    """The Jinja text of ``data.chat_template``: ``None`` for 'auto' (keep the model's), a named one, or a file.

    Raises:
        ConfigError: A .jinja file that does not exist or is empty.
    """
    if choice == "auto":
        return None
    if choice in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[choice]
    path = Path(choice)
    if not path.is_file():
        raise ConfigError(f"chat template file not found: {path}", field="data.chat_template",
                          hint=f"give a .jinja file (relative to the current folder) or one of "
                          f"{', '.join(CHAT_TEMPLATE_NAMES)}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ConfigError(f"chat template file {path} is empty", field="data.chat_template")
    return text


def apply_chat_template_choice(tokenizer: PreTrainedTokenizerBase, choice: str) -> str:
    """Set ``data.chat_template`` on ``tokenizer`` (saved with it); returns the template now in use."""
    text = chat_template_text(choice)
    if text is not None:
        tokenizer.chat_template = text
    return tokenizer.chat_template
