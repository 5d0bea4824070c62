"""Serving: a model or a flow as an HTTP service.

- `app`: the Starlette apps (`model_app`, `flow_app`); `commands`: `jupyter-flow serve`.
- `state`: what a served flow keeps (the flow and its reloads, recent runs, metrics).
- `guards`: what a client may send and see (body size and depth, uploads, confined paths).
- `codec`: the Open Inference Protocol's tensors both ways (also used by the ``inference`` node).
- `v2`: the Open Inference Protocol's routes on a served model.
- `ray_deploy`, `ray_replicas`, `ray_serve`: the same apps on Ray Serve (``--ray``): the
  deployments of a flow, the parts that run in Ray, and the driver that deploys them.

The package itself imports nothing, so that the ``inference`` node can use the codec
without loading Starlette.
"""
