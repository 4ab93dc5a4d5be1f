"""Phase `disruption`: the router's PodDisruptionBudget exists exactly when it runs more
than one replica (disruption.py plans it), with the replica count the children phase
settled on."""

from __future__ import annotations

from ..childdiff import DELETE
from ..clients import Clients
from ..components import ROUTER
from ..disruption import pdb_name, plan_pdb, router_pdb
from ..model import Pipeline
from ..pause import PauseState
from .children import write_child
from .context import RECHECK_DELETED_CHILD, Pass


async def reconcile(ctx: Pass, clients: Clients, p: Pipeline, pause: PauseState) -> None:
    name = pdb_name(ctx.name)
    desired = router_pdb(ctx.resource, p, pause.replicas[ROUTER.spec_field])
    if desired is None and ctx.memory.pdb_absent:
        return
    actual = await clients.call(clients.kube.get_pdb, ctx.namespace, name)
    pplan = plan_pdb(ctx.resource, name, desired, actual)
    ctx.problems.extend(pplan.blocked)
    if pplan.waiting:
        ctx.again_in(RECHECK_DELETED_CHILD)
    written = [await write_child(ctx, clients, action) for action in pplan.actions]
    # Absent: none found, or ours deleted just now. One being deleted or owned by
    # someone else is looked at again (it may go, or become ours to delete).
    deleted = [a.verb for a in pplan.actions] == [DELETE] and all(written)
    ctx.memory.pdb_absent = desired is None and (actual is None or deleted)
