"""Run in a subprocess by test_engine_release: train two phases in this process and report which
tensors of phase 1's engine are still reachable once phase 1 has returned."""

import gc
import json
import sys
import weakref

import deepspeed

from pipeline.train import loop, masters
from pipeline.train.loop import TrainConfig, train

refs: list[list] = []  # per phase: (what, weakref)
alive_after: list[list[str]] = []
original_initialize = deepspeed.initialize


def spy(*args, **kwargs):
    out = original_initialize(*args, **kwargs)
    engine, optimizer = out[0], out[1]
    mine = [("engine", weakref.ref(engine)), ("optimizer", weakref.ref(optimizer))]
    mine += [(f"param {n}", weakref.ref(p)) for n, p in engine.module.named_parameters()]
    for i, t in enumerate(getattr(optimizer, "single_partition_of_fp32_groups", [])):
        mine.append((f"fp32 master partition {i}", weakref.ref(t)))
    refs.append(mine)
    inner = getattr(optimizer, "optimizer", optimizer)  # torch's AdamW inside ZeRO's wrapper

    def states(opt, *_):  # Adam's moments exist once a step has run
        if not any(what.startswith("adam") for what, _ in mine):
            mine.extend((f"adam {k} {i}", weakref.ref(v)) for i, st in enumerate(opt.state.values())
                        for k, v in st.items() if hasattr(v, "data_ptr"))
    inner.register_step_post_hook(states)
    return out


original_phase = loop._train_phase


def phase(*args, **kwargs):
    result = original_phase(*args, **kwargs)
    gc.collect()
    alive_after.append([what for what, r in refs[-1] if r() is not None])
    return result


deepspeed.initialize = spy
loop._train_phase = phase
if sys.argv[2] == "leak":  # control: without the release the test must see the engine alive
    masters.release = lambda engine: None
train(TrainConfig.from_dict(json.loads(sys.argv[1])), progress=False)
print("ALIVE " + json.dumps(alive_after))
