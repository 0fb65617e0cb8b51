"""lung-diffusers Space: synthetic lung CT slices from label maps, scheduler comparison, nodule removal/insertion.

    python spaces/app.py               # what `make space` runs: http://127.0.0.1:7860
    LUNG_SPACE_PIPELINE=you/your-lung-sdm LUNG_SPACE_PRIOR=you/your-prior python spaces/app.py

Hugging Face Spaces runs this file from the Space's root (the folder `make space-bundle` writes). Settings come from
the environment: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Gradio's own; 127.0.0.1:7860 by default),
LUNG_SPACE_PIPELINE / LUNG_SPACE_PRIOR (model folders or Hub ids), LUNG_SPACE_CONCURRENCY (jobs sampling at once,
default 2) and LUNG_SPACE_QUEUE_SIZE (waiting jobs, default 64).
"""

import os

# The Space sends nothing anywhere (no usage analytics); set before gradio is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from lung_space.layout import build_app  # noqa: E402
from lung_space.model_service import get_service  # noqa: E402

# Load the models at start-up, once per process, so the first visitor does not wait and a broken checkpoint
# fails here rather than in a request.
service = get_service()
demo = build_app(service)

if __name__ == "__main__":
    import lung_diffusers

    print(
        f"lung-diffusers from {os.path.dirname(lung_diffusers.__file__)}; SDM: {service.sdm_source}; prior: {service.prior_source}"
    )
    demo.launch(max_file_size="256mb")
