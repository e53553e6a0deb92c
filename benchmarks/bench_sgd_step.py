"""float32 SGD step of a 784-512-512-10 MLP, minisgd against a plain torch.nn loop, ReLU and tanh, batch 256 and 4096.

    .venv-bench/bin/python benchmarks/bench_sgd_step.py

Alternating rounds (minisgd, then PyTorch, six times) and the best time per step of each: on a shared machine this
is fairer than timing one side after the other. 2 threads for both. Same parameters on both sides.
"""
import os, sys, time
sys.path.insert(0, os.path.dirname(__file__))
from _common import set_threads, load_torch, torch_sequential
set_threads(2)
import numpy as np, minisgd as ms
torch = load_torch(2)
sizes=[784,512,512,10]
for act in ["relu", "tanh"]:
    net=ms.MLP(sizes, activation=act); rng=np.random.default_rng(0)
    for B in [256, 4096]:
        X=rng.random((B,784),dtype=np.float32); y=rng.integers(0,10,B)
        th=net.init(seed=0,dtype="float32")
        model=torch_sequential(torch, th.astype(np.float64), sizes, act).float()
        opt=torch.optim.SGD(model.parameters(), lr=0.05); lossf=torch.nn.CrossEntropyLoss()
        tX=torch.from_numpy(X); ty=torch.from_numpy(y.astype(np.int64))
        def ours():
            global th
            l,g=net.loss_and_grad(th,X,y); th-=np.float32(0.05)*g
        def theirs():
            opt.zero_grad(); l=lossf(model(tX),ty); l.backward(); opt.step()
        steps = 20 if B==256 else 4
        best={"ours":1e9,"torch":1e9}
        for r in range(6):
            for name,fn in [("ours",ours),("torch",theirs)]:
                fn(); t=time.perf_counter()
                for _ in range(steps): fn()
                best[name]=min(best[name],(time.perf_counter()-t)/steps)
        print(act, B, "minisgd %.2f ms  torch %.2f ms  torch/minisgd %.2f" % (best["ours"]*1e3, best["torch"]*1e3, best["torch"]/best["ours"]))
