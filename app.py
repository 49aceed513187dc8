"""The facekp Streamlit app: ``streamlit run app.py``.

This file sets up logging, the page list and the sidebar's model picker that every page
shares. Each page lives in ``app_pages/`` and only turns widgets into ``facekp`` calls.

NOTE: the folder is not called ``pages/`` on purpose. Streamlit 1.67 treats an app with a
``pages/`` folder as an old-style multipage app until the entry script first calls
``st.navigation``. A fresh server opened at a page URL such as ``/train`` would then run that
page file alone, without this file's sidebar, and list every module as a page.
"""

from __future__ import annotations

import logging

import streamlit as st

from app_pages import common

st.set_page_config(page_title="facekp", page_icon=":material/face:", layout="wide")
common.setup_logging()

navigation = st.navigation(
    [
        st.Page(
            "app_pages/predict.py", title="Predict", icon=":material/photo_camera:", default=True
        ),
        st.Page("app_pages/dataset.py", title="Dataset", icon=":material/grid_view:"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("app_pages/gradcam.py", title="Grad-CAM", icon=":material/visibility:"),
    ]
)
common.model_sidebar()
logging.getLogger(__name__).debug("running page %s", navigation.title)
navigation.run()
