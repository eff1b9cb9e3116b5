"""One rank of tests/test_infonce_dist.py: python _infonce_dist_worker.py RANK WORLD PORT INPUTS OUT."""

import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
from lightly_compat import import_lightly_loss  # noqa: E402

import sslfast  # noqa: E402
from sslfast import functional as F  # noqa: E402


def grads(fn, *xs):
    xs = [x.detach().clone().requires_grad_() for x in xs]
    loss = fn(*xs)
    loss.backward()
    return loss.detach(), [x.grad for x in xs]


def main():
    rank, world, port, inputs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        LL = import_lightly_loss()
    except ImportError:  # machines without lightly (the GPU image): the lightly comparison is skipped
        LL = None
    data = torch.load(inputs)
    z, w, t = data["z"], data["w"], data["t"]  # the concatenated (V, world·B, D) batch
    b = z.shape[1] // world
    sl = slice(rank * b, (rank + 1) * b)
    res = {}
    for backend in ("torch", "triton", "reference"):
        loss, (g,) = grads(
            lambda x, backend=backend: F.multicrop_infonce_loss(
                x, w[:, sl], temperature=t, gather_distributed=True, backend=backend
            ),
            z[:, sl],
        )
        res[f"multicrop_{backend}"] = (loss, g)
        loss, g = grads(
            lambda a, c, backend=backend: sslfast.NTXentLoss(temperature=t, gather_distributed=True, backend=backend)(
                a, c
            ),
            z[0, sl],
            z[1, sl],
        )
        res[f"ntxent_{backend}"] = (loss, *g)
        bank_loss = sslfast.NTXentLoss(
            temperature=t, memory_bank_size=(data["k"], z.shape[2]), gather_distributed=True, backend=backend
        ).double()
        steps = []
        for step in range(3):
            o0, o1 = data["bank_steps"][step][0][sl], data["bank_steps"][step][1][sl]
            loss, g = grads(bank_loss, o0, o1)
            steps.append((loss, *g))
        res[f"bank_{backend}"] = (steps, bank_loss.bank.clone(), bank_loss.bank_ptr.clone())
    if LL is not None:
        loss, g = grads(lambda a, c: LL.NTXentLoss(temperature=t, gather_distributed=True)(a, c), z[0, sl], z[1, sl])
        res["ntxent_lightly"] = (loss, *g)
    torch.save(res, out)
    # Both ranks leave the group together, then the process ends without the interpreter's
    # teardown: gloo's threads could outlive the group there and abort the process
    # ("terminate called without an active exception", SIGABRT after the results were written;
    # about 1 run in 20 on a 2-core machine).
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
