"""The phases of a reconcile pass, one module each, in the order controller.py runs them.

Each has one entry point taking the pass's context (context.py), the client adapter
(clients.py) and what the earlier phases handed on, and drives the pure module of the
same job (topics.py, autoscale.py, render.py and childdiff.py, disruption.py,
switches.py, status.py, rollback.py); I/O lives here, decisions there.
"""
