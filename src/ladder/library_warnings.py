"""Library warnings a ladder user cannot act on, filtered exactly where they are raised.

Each filter names the message, the category and the module that raises it, and the library
versions that cause it, so it can go when they are fixed; a blanket filter would also hide the
warnings a user can act on.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["quiet_library_warnings"]


@contextlib.contextmanager
def quiet_library_warnings() -> Iterator[None]:
    """Run the body without the library warnings ladder's users cannot act on.

    - transformers 5.x deprecates ``PreTrainedModel.is_gradient_checkpointing`` (a
      ``FutureWarning`` from ``transformers.modeling_utils``, the attribute goes in v6). ladder
      never reads it; PEFT 0.21 does for every adapter it wraps (``PeftModel.__init__``) and TRL
      1.16 around every generation and reference pass (``disable_gradient_checkpointing``,
      ``unwrap_model_for_generation``), so it printed once per stage.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning, module=r"transformers\.modeling_utils")
        yield
