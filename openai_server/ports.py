"""The ports serve and the servers it starts listen on by default, in one place.

A node group needs three beside the API port, on node 0: serve's own control channel, vLLM's
torch.distributed rendezvous (`master_port`, multiprocessing over nodes) or Ray's GCS (the Ray
backend). The control port is one below vLLM's 29501 so that it meets neither torchrun's 29400,
vLLM's master port nor Ray's 6379.
"""

CONTROL = 29_499  # serve's node-group channel on node 0 (--control-port)
MASTER = 29_501  # vLLM's --master-port default (torch.distributed's rendezvous over nodes)
RAY_GCS = 6379  # `ray start --head`'s default GCS port
