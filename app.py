"""The facekp Streamlit app: ``streamlit run app.py``.

This file sets up logging, the page list and the sidebar's model picker that every page
shares. Each page lives in ``pages/`` and only turns widgets into ``facekp`` calls.

Streamlit 1.67 treats an app with a ``pages/`` folder as an old-style multipage app until
the entry script first calls ``st.navigation``. A fresh server opened at a page URL such as
``/train`` would then run that page file alone, so every page first calls
``common.require_router()``, which sends such a run back through this file.
"""

from __future__ import annotations

import logging
import os

# Passive OpenMP waiting, as in facekp/__main__.py; it must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st  # noqa: E402

from pages import common

st.set_page_config(page_title="facekp", page_icon=":material/face:", layout="wide")
common.setup_logging()

navigation = st.navigation(
    [
        st.Page(
            "pages/predict.py", title="Predict", icon=":material/photo_camera:", default=True
        ),
        st.Page("pages/dataset.py", title="Dataset", icon=":material/grid_view:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("pages/gradcam.py", title="Grad-CAM", icon=":material/visibility:"),
    ]
)
common.model_sidebar()
common.mark_router_ran()
logging.getLogger(__name__).debug("running page %s", navigation.title)
navigation.run()
