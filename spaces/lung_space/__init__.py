"""The lung-diffusers Space (``spaces/app.py``).

- :mod:`.mask_painting`: class colours, painted pictures back to label maps, nodules placed in mm.
- :mod:`.display`: what is shown: enlarged slices, overlays, difference maps, the SYNTHETIC stamp.
- :mod:`.uploads`: reading and checking uploaded label maps, real slices and nodule masks.
- :mod:`.model_service`: the models, loaded once per process; schedulers by name; one job per request.
- :mod:`.handlers`: event handlers: components to label maps and back, errors as one-line messages.
- :mod:`.layout`: the Gradio tabs, wired to the handlers, and the queue.
"""
