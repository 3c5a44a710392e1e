"""A scripted working day against a running hub, then a soak (`make soak`, `python -m bench.day`).

journeys.py walks each role's day in Chromium (clinic upload and send, a radiologist's read
with a critical result, a senior's co-sign, the clinic's acknowledgement, an MDT room, the
commission's figures), timing every page action and how long another user's open page
takes to show it. soak.py then keeps simulated clinics uploading over STOW-RS, readers
claiming, reporting and signing over the API, and an MDT room chatting over its socket,
counting server errors and live events expected against received. stack.py starts the
stack the way `make run` does (or finds a running one) and checks its processes and logs.

Everything talks to the hub over HTTP and WebSocket only: no Django settings, no database.
"""
