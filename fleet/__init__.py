"""A fleet of target devices on Dask distributed: the same run measured on every board, Mac and GPU server.

Lifecycle: `edgebench worker` on each device (a Dask worker whose resources name the device and its targets);
`make bench FLEET=tcp://scheduler:8786 DEVICES=a,b` on the workstation (`fleet.run`), which sends each device
one task (`fleet.device.measure_on_device`) that runs the ordinary harness there and streams its rows back.
`FLEET=local` starts a loopback scheduler and a worker per device on this machine (`fleet.cluster`).
"""
