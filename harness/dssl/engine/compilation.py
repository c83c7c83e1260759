"""``compile: true``: compile the parts of an objective worth compiling, for the duration of training.

Compiling the whole objective (``torch.compile(objective)``) traces Python that is no model: schedule
look-ups (``float(schedule[step])``, a graph break), the step number (an int argument the graph depends
on), multi-crop grouping, random masks, data-dependent branches. What costs time in a step is the
backbone and, for methods with wide heads (DINO: 65 536 prototypes), the loss. So the engine compiles

* the **transformer block stack** of every backbone in the objective (student and EMA teacher): the
  blocks are where a ViT spends its time, and the stack is what ``forward``, ``run_blocks`` (UDI) and
  masked forwards (STELLAR) all go through. The stack is one unit (not each block: blocks differ in their
  stochastic-depth rate, a float the compiled code guards on, so each block would recompile);
* the modules an objective lists in :meth:`~dssl.objectives.base.Objective.compile_modules` (DINO's and
  UDI's losses; CoTAP inherits DINO's).

Each module is compiled with ``dynamic=False``: each crop resolution (global, local, masked) gets its own
static graph, compiled once at the first step that meets it; no later step recompiles. Schedules, the step
number and random draws stay in eager Python. A value that changes from step to step must reach compiled code
as a tensor (the teacher temperature: :func:`~dssl.layers.schedules.schedule_scalar`): a Python float is a
constant of a static graph, so each new value would compile it again.

All compiled modules share dynamo's cache of ``nn.Module._call_impl``, which holds ``torch._dynamo.config.
recompile_limit`` (8) graphs: an objective with more (module, input shape, grad mode) combinations than that
runs the rest eager, with dynamo's warning. The six first-party objectives need 3 to 4.

After training the modules are returned to eager mode, so that evaluation (other sizes, no gradient) does
not compile again.

Example:
    >>> with compiled(objective):                       # doctest: +SKIP
    ...     loss = objective(batch, step=0)["loss"]     # blocks and losses run compiled
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from torch import nn

__all__ = ["compile_targets", "compiled"]


def compile_targets(objective: nn.Module) -> list[nn.Module]:
    """The modules :func:`compiled` compiles: the objective's :meth:`compile_modules`, without duplicates.

    Args:
        objective: An :class:`~dssl.objectives.base.Objective` (or any module; a plain module without
            ``compile_modules`` gets its backbones' blocks).

    Returns:
        The modules in order of first appearance.
    """
    from dssl.objectives.base import backbone_blocks

    listed = objective.compile_modules() if hasattr(objective, "compile_modules") else backbone_blocks(objective)
    unique: dict[int, nn.Module] = {}
    for module in listed:
        unique.setdefault(id(module), module)
    return list(unique.values())


@contextlib.contextmanager
def compiled(objective: nn.Module, *, backend: str = "inductor") -> Iterator[list[nn.Module]]:
    """Run the ``with`` body with :func:`compile_targets` compiled (``nn.Module.compile``), then undo it.

    Parameters, buffers and state-dict keys are untouched (``Module.compile`` compiles the module's call in
    place, unlike ``torch.compile(module)``'s wrapper with ``_orig_mod.`` keys), so checkpoints written while
    compiled are the same as eager ones.

    Args:
        objective: The objective to train.
        backend: ``torch.compile`` backend (``inductor``; tests use ``aot_eager`` to check tracing cheaply).

    Yields:
        The compiled modules.
    """
    targets = compile_targets(objective)
    if not targets:
        logging.getLogger(__name__).warning(
            "compile: true found nothing to compile in %s (no backbone with a 'blocks' stack, no compile_modules()); "
            "training runs eager",
            type(objective).__name__,
        )
    for module in targets:
        module.compile(backend=backend, dynamic=False)
    try:
        yield targets
    finally:
        for module in targets:
            # What Module.compile sets; None restores the eager __call__ (there is no public "uncompile").
            module._compiled_call_impl = None
